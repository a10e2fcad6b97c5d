"""MILENAGE (tre/_milenage.py) against the 3GPP TS 35.208 conformance test sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tre import _milenage as milenage
from tre._milenage import Milenage, compute_opc

# The shared checkout sits beside the repository (../shared), locally and in CI.
SHARED_SET_1 = Path(__file__).parents[2].parent / "shared" / "vectors" / "milenage-test-set-1.json"
TS35208 = Path(__file__).parent / "vectors" / "ts35208.json"


def _h(s: str) -> bytes:
    return bytes.fromhex(s)


def _check_set(v: dict[str, Any]) -> None:
    k, rand, sqn, amf, opc = _h(v["K"]), _h(v["RAND"]), _h(v["SQN"]), _h(v["AMF"]), _h(v["OPc"])
    assert compute_opc(k, _h(v["OP"])) == opc
    m = Milenage(k, opc)
    assert m.f1(rand, sqn, amf) == _h(v["f1_MAC_A"])
    assert m.f1_star(rand, sqn, amf) == _h(v["f1star_MAC_S"])
    assert m.f2(rand) == _h(v["f2_RES"])
    assert m.f3(rand) == _h(v["f3_CK"])
    assert m.f4(rand) == _h(v["f4_IK"])
    assert m.f5(rand) == _h(v["f5_AK"])
    assert m.f5_star(rand) == _h(v["f5star_AK"])
    vec = m.f2345(rand)
    assert (vec.res, vec.ck, vec.ik, vec.ak) == (
        _h(v["f2_RES"]),
        _h(v["f3_CK"]),
        _h(v["f4_IK"]),
        _h(v["f5_AK"]),
    )
    # The one-shot module functions agree with the object.
    assert milenage.f1(k, opc, rand, sqn, amf) == _h(v["f1_MAC_A"])
    assert milenage.f1_star(k, opc, rand, sqn, amf) == _h(v["f1star_MAC_S"])
    assert milenage.f2(k, opc, rand) == _h(v["f2_RES"])
    assert milenage.f3(k, opc, rand) == _h(v["f3_CK"])
    assert milenage.f4(k, opc, rand) == _h(v["f4_IK"])
    assert milenage.f5(k, opc, rand) == _h(v["f5_AK"])
    assert milenage.f5_star(k, opc, rand) == _h(v["f5star_AK"])


@pytest.mark.skipif(
    not SHARED_SET_1.is_file(),
    reason=f"shared vectors not checked out beside the repository ({SHARED_SET_1} is absent)",
)
def test_shared_test_set_1() -> None:
    _check_set(json.loads(SHARED_SET_1.read_text()))


def _ts35208_sets() -> list[dict[str, Any]]:
    sets: list[dict[str, Any]] = json.loads(TS35208.read_text())["sets"]
    return sets


@pytest.mark.parametrize("v", _ts35208_sets(), ids=lambda v: f"set{v['set']}")
def test_ts35208_test_sets(v: dict[str, Any]) -> None:
    _check_set(v)


def test_ts35208_file_holds_sets_1_to_6() -> None:
    assert [v["set"] for v in _ts35208_sets()] == [1, 2, 3, 4, 5, 6]


def test_verify_helpers_accept_right_and_refuse_wrong_macs() -> None:
    v = _ts35208_sets()[0]
    m = Milenage(_h(v["K"]), _h(v["OPc"]))
    rand, sqn, amf = _h(v["RAND"]), _h(v["SQN"]), _h(v["AMF"])
    assert milenage.verify_mac_a(m, rand, sqn, amf, _h(v["f1_MAC_A"]))
    assert milenage.verify_mac_s(m, rand, sqn, amf, _h(v["f1star_MAC_S"]))
    bad = bytes([_h(v["f1_MAC_A"])[0] ^ 1]) + _h(v["f1_MAC_A"])[1:]
    assert not milenage.verify_mac_a(m, rand, sqn, amf, bad)
    assert not milenage.verify_mac_s(m, rand, sqn, amf, _h(v["f1_MAC_A"]))


@pytest.mark.parametrize(
    ("k", "opc", "rand", "sqn", "amf"),
    [
        (bytes(15), bytes(16), bytes(16), bytes(6), bytes(2)),
        (bytes(16), bytes(17), bytes(16), bytes(6), bytes(2)),
        (bytes(16), bytes(16), bytes(8), bytes(6), bytes(2)),
        (bytes(16), bytes(16), bytes(16), bytes(5), bytes(2)),
        (bytes(16), bytes(16), bytes(16), bytes(6), bytes(3)),
    ],
)
def test_wrong_sizes_are_refused(k: bytes, opc: bytes, rand: bytes, sqn: bytes, amf: bytes) -> None:
    with pytest.raises(ValueError, match="must be"):
        Milenage(k, opc).f1(rand, sqn, amf)


def test_str_input_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Milenage("00" * 16, bytes(16))  # type: ignore[arg-type]


def test_repr_does_not_leak_key_material() -> None:
    v = _ts35208_sets()[0]
    m = Milenage(_h(v["K"]), _h(v["OPc"]))
    assert v["K"] not in repr(m) and v["OPc"] not in repr(m)
    assert v["f3_CK"] not in repr(m.f2345(_h(v["RAND"])))
