"""Card-side UMTS AKA (tre/_aka.py) against a network-side helper built here."""

from __future__ import annotations

import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tre._aka import (
    AUTS_LEN,
    SQN_MAX,
    AmfRejected,
    MacFailure,
    Resync,
    Success,
    authenticate,
)
from tre._milenage import Milenage

# TS 35.208 test set 1.
K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")
RAND = bytes.fromhex("23553cbe9637a89d218ae64dae47bf35")
SQN = int("ff9bb4d0b607", 16)
AMF = bytes.fromhex("b9b9")


# --- network side (HE/AuC), written independently of aka.py -----------------------------


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def make_autn(k: bytes, opc: bytes, rand: bytes, sqn: int, amf: bytes) -> bytes:
    """AUTN = (SQN xor AK) || AMF || MAC-A (TS 33.102 clause 6.3.2)."""
    m = Milenage(k, opc)
    sqn_b = sqn.to_bytes(6, "big")
    return _xor(sqn_b, m.f5(rand)) + amf + m.f1(rand, sqn_b, amf)


def open_auts(k: bytes, opc: bytes, rand: bytes, auts: bytes) -> int:
    """Network side of resynchronisation: recover SQN_MS with f5* and check MAC-S, which
    f1* computes over the dummy AMF 0x0000. Returns SQN_MS; fails the test on a bad MAC-S."""
    assert len(auts) == AUTS_LEN
    m = Milenage(k, opc)
    sqn_ms = _xor(auts[:6], m.f5_star(rand))
    assert hmac.compare_digest(m.f1_star(rand, sqn_ms, b"\x00\x00"), auts[6:])
    return int.from_bytes(sqn_ms, "big")


# --- tests -------------------------------------------------------------------------------


def test_correct_autn_gives_f2_f3_f4() -> None:
    result = authenticate(K, OPC, RAND, make_autn(K, OPC, RAND, SQN, AMF), SQN - 1)
    assert isinstance(result, Success)
    m = Milenage(K, OPC)
    assert result.res == m.f2(RAND) == bytes.fromhex("a54211d5e3ba50bf")
    assert result.ck == m.f3(RAND) == bytes.fromhex("b40ba9a3c58b2a05bbf0d987b21bf8cb")
    assert result.ik == m.f4(RAND) == bytes.fromhex("f769bcd751044604127672711c6d3441")
    assert result.sqn == SQN


def test_autn_of_test_set_1_is_as_expected() -> None:
    # SQN xor AK || AMF || MAC-A with the TS 35.208 set 1 values (AK = aa689c648370).
    expected = bytes.fromhex("55f328b43577" + "b9b9" + "4a9ffac354dfafb3")
    assert make_autn(K, OPC, RAND, SQN, AMF) == expected


@pytest.mark.parametrize("bit", [0, 7, 42, 48, 63, 64, 100, 127])
def test_flipped_autn_bit_is_a_mac_failure(bit: int) -> None:
    autn = bytearray(make_autn(K, OPC, RAND, SQN, AMF))
    autn[bit // 8] ^= 0x80 >> (bit % 8)
    with pytest.raises(MacFailure):
        authenticate(K, OPC, RAND, bytes(autn), 0)


def test_mac_failure_even_when_sqn_is_stale() -> None:
    """A bad MAC is refused before any SQN logic: no AUTS for an unauthenticated AUTN."""
    autn = bytearray(make_autn(K, OPC, RAND, 5, AMF))
    autn[-1] ^= 1
    with pytest.raises(MacFailure):
        authenticate(K, OPC, RAND, bytes(autn), 10)


def test_wrong_key_or_rand_is_a_mac_failure() -> None:
    autn = make_autn(K, OPC, RAND, SQN, AMF)
    with pytest.raises(MacFailure):
        authenticate(bytes(16), OPC, RAND, autn, 0)
    with pytest.raises(MacFailure):
        authenticate(K, OPC, bytes(16), autn, 0)


def test_replayed_autn_gives_a_verifiable_auts() -> None:
    autn = make_autn(K, OPC, RAND, 1000, AMF)
    first = authenticate(K, OPC, RAND, autn, 999)
    assert isinstance(first, Success)
    highest = first.sqn  # the caller persists this

    again = authenticate(K, OPC, RAND, autn, highest)
    assert isinstance(again, Resync)
    assert len(again.auts) == AUTS_LEN
    assert open_auts(K, OPC, RAND, again.auts) == highest == 1000


def test_auts_mac_uses_amf_0000_not_the_autn_amf() -> None:
    again = authenticate(K, OPC, RAND, make_autn(K, OPC, RAND, 7, AMF), 7)
    assert isinstance(again, Resync)
    m = Milenage(K, OPC)
    sqn_ms = (7).to_bytes(6, "big")
    assert again.auts[6:] == m.f1_star(RAND, sqn_ms, b"\x00\x00")
    assert again.auts[6:] != m.f1_star(RAND, sqn_ms, AMF)


def test_older_sqn_is_stale_too() -> None:
    result = authenticate(K, OPC, RAND, make_autn(K, OPC, RAND, 41, AMF), 50)
    assert isinstance(result, Resync)
    assert open_auts(K, OPC, RAND, result.auts) == 50


def test_sqn_going_forward_is_accepted() -> None:
    highest = 0
    for sqn in (1, 2, 32, 33, 1 << 40, SQN_MAX):
        result = authenticate(K, OPC, RAND, make_autn(K, OPC, RAND, sqn, AMF), highest)
        assert isinstance(result, Success)
        assert result.sqn == sqn
        highest = result.sqn
    # At the top nothing is fresh any more: SQN does not wrap.
    stale = authenticate(K, OPC, RAND, make_autn(K, OPC, RAND, SQN_MAX, AMF), highest)
    assert isinstance(stale, Resync)


def test_resync_then_network_resumes_above_sqn_ms() -> None:
    highest = 500
    stale = authenticate(K, OPC, RAND, make_autn(K, OPC, RAND, 3, AMF), highest)
    assert isinstance(stale, Resync)
    sqn_he = open_auts(K, OPC, RAND, stale.auts) + 1  # the HE resets SQN_HE to SQN_MS + 1
    fresh = authenticate(K, OPC, RAND, make_autn(K, OPC, RAND, sqn_he, AMF), highest)
    assert isinstance(fresh, Success) and fresh.sqn == 501


def test_amf_check_sees_the_amf_and_can_refuse() -> None:
    seen: list[bytes] = []

    def separation_bit_set(amf: bytes) -> bool:
        seen.append(amf)
        return bool(amf[0] & 0x80)

    ok = authenticate(
        K, OPC, RAND, make_autn(K, OPC, RAND, 9, b"\x80\x00"), 0, amf_check=separation_bit_set
    )
    assert isinstance(ok, Success)
    with pytest.raises(AmfRejected):
        authenticate(
            K, OPC, RAND, make_autn(K, OPC, RAND, 9, b"\x00\x00"), 0, amf_check=separation_bit_set
        )
    assert seen == [b"\x80\x00", b"\x00\x00"]


def test_amf_check_is_not_called_on_a_mac_failure() -> None:
    autn = bytearray(make_autn(K, OPC, RAND, 9, AMF))
    autn[8] ^= 1

    def never(amf: bytes) -> bool:
        raise AssertionError("amf_check called before the MAC was verified")

    with pytest.raises(MacFailure):
        authenticate(K, OPC, RAND, bytes(autn), 0, amf_check=never)


@pytest.mark.parametrize(
    ("rand", "autn", "highest", "exc"),
    [
        (bytes(15), bytes(16), 0, ValueError),
        (bytes(16), bytes(15), 0, ValueError),
        (bytes(16), bytes(16), -1, ValueError),
        (bytes(16), bytes(16), SQN_MAX + 1, ValueError),
        (bytes(16), bytes(16), True, TypeError),
    ],
)
def test_malformed_inputs(rand: bytes, autn: bytes, highest: int, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        authenticate(K, OPC, rand, autn, highest)


def test_success_repr_hides_keys() -> None:
    result = authenticate(K, OPC, RAND, make_autn(K, OPC, RAND, SQN, AMF), 0)
    assert isinstance(result, Success)
    assert result.ck.hex() not in repr(result) and result.ik.hex() not in repr(result)


keys = st.binary(min_size=16, max_size=16)
sqns = st.integers(min_value=0, max_value=SQN_MAX)


@settings(max_examples=200, deadline=None)
@given(k=keys, opc=keys, rand=keys, sqn=sqns, highest=sqns, amf=st.binary(min_size=2, max_size=2))
def test_round_trip(k: bytes, opc: bytes, rand: bytes, sqn: int, highest: int, amf: bytes) -> None:
    m = Milenage(k, opc)
    result = authenticate(k, opc, rand, make_autn(k, opc, rand, sqn, amf), highest)
    if sqn > highest:
        assert isinstance(result, Success)
        assert (result.res, result.ck, result.ik, result.sqn) == (
            m.f2(rand),
            m.f3(rand),
            m.f4(rand),
            sqn,
        )
    else:
        assert isinstance(result, Resync)
        assert open_auts(k, opc, rand, result.auts) == highest


@settings(max_examples=100, deadline=None)
@given(k=keys, opc=keys, rand=keys, sqn=sqns, bit=st.integers(min_value=0, max_value=127))
def test_any_flipped_bit_is_a_mac_failure(
    k: bytes, opc: bytes, rand: bytes, sqn: int, bit: int
) -> None:
    autn = bytearray(make_autn(k, opc, rand, sqn, b"\x80\x00"))
    autn[bit // 8] ^= 0x80 >> (bit % 8)
    with pytest.raises(MacFailure):
        authenticate(k, opc, rand, bytes(autn), 0)
