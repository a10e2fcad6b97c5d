"""Scaffolding for the end-to-end attestation tests (tests/tre/test_attest_cli.py and
tests/hostile/test_attestation_attacks.py).

- :func:`tre_cli` runs ``tre`` in-process and returns (exit code, stdout, stderr) without
  needing pytest's ``capsys`` (so module-scoped fixtures can use it too);
- :func:`attest`, :func:`take_reference`, :func:`appraise` are the verifier's side of the
  CLI flow: evidence from ``tre attest``, reference values from ``tre reference``, the
  appraisal by :func:`attestation.verify_evidence`;
- the ``cose_*`` / :func:`check_token` helpers read evidence with **cbor2 and cryptography
  only** (no code of this project), as "any COSE/CWT library" would: tag 18, the 4-array,
  the Sig_structure of RFC 9052 section 4.4, the x5chain of RFC 9360 (label 33);
- :func:`resign` plays a compromised TRE: it holds the DeviceID key (read from the state
  folder's device secret) and signs claims of its choosing;
- :func:`copy_plugin` / :func:`plugin_config` install a folder plugin (a copy of
  ``examples/plugins/hello``) whose code a test may then change.

Tests that open a TRE on a real state folder do their SQLite I/O in worker threads: they
run on the real clock (no ``autojump_clock``), bounded with ``trio.fail_after``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import cbor2
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import attestation
from tre._cli import main

__all__ = [
    "HELLO",
    "NONCE",
    "NONCE_HEX",
    "SignedToken",
    "appraise",
    "attest",
    "check_token",
    "copy_plugin",
    "cose_sign1",
    "device_key",
    "load_ca",
    "plugin_config",
    "resign",
    "set_svn",
    "submods",
    "take_reference",
    "tre_cli",
]

ROOT = Path(__file__).resolve().parents[1]
HELLO = ROOT / "examples" / "plugins" / "hello"
#: The verifier's nonce of most tests (16 bytes).
NONCE = bytes(range(0xA0, 0xB0))
NONCE_HEX = NONCE.hex()


# --- the CLI in-process ----------------------------------------------------------------------


def tre_cli(*argv: str | Path) -> tuple[int, str, str]:
    """Run ``tre ARGV`` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's own exits (--help)
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def attest(state: Path, nonce: bytes = NONCE, out: Path | None = None) -> bytes:
    """``tre attest`` for ``nonce``; the evidence bytes (also left in ``out``)."""
    out = out or state.with_name(f"{state.name}-{nonce.hex()[:8]}.cbor")
    code, stdout, err = tre_cli("attest", "--state", state, "--nonce", nonce.hex(), "--out", out)
    assert code == 0, err
    assert str(out) in stdout
    return out.read_bytes()


def take_reference(state: Path, out: Path | None = None) -> attestation.Reference:
    """``tre reference`` of a known-good device, read back as the verifier would."""
    out = out or state.with_name(f"{state.name}-reference.json")
    code, _, err = tre_cli("reference", "--state", state, "--out", out)
    assert code == 0, err
    return attestation.parse_reference(json.loads(out.read_text()))


def load_ca(factory: Path) -> x509.Certificate:
    return attestation.load_cert_pem((factory / "ca.pem").read_bytes())


def appraise(
    evidence: bytes,
    ca: x509.Certificate,
    nonce: bytes = NONCE,
    reference: attestation.Reference | None = None,
    last_bootcount: int | None = None,
) -> attestation.Appraisal:
    return attestation.verify_evidence(
        evidence,
        ca=ca,
        nonce=nonce,
        now=dt.datetime.now(dt.UTC),
        reference=reference,
        last_bootcount=last_bootcount,
    )


# --- reading evidence with cbor2 and cryptography only ---------------------------------------


@attrs.frozen
class SignedToken:
    """One COSE_Sign1, as a generic COSE library sees it, signature checked."""

    protected: dict[Any, Any]
    claims: dict[Any, Any]
    #: the x5chain of the protected header (label 33), leaf first
    chain: list[x509.Certificate]


def cose_sign1(item: Any) -> tuple[bytes, Mapping[Any, Any], bytes, bytes]:
    """The four items of a COSE_Sign1_Tagged (RFC 9052 section 4.2) decoded by cbor2:
    ``item`` is the tagged value or its encoding."""
    if isinstance(item, bytes):
        item = cbor2.loads(item)
    assert isinstance(item, cbor2.CBORTag), type(item)
    assert item.tag == 18, item.tag
    message = item.value
    # cbor2 gives an array inside a tag as a tuple (tag values are immutable), else a list
    assert isinstance(message, list | tuple) and len(message) == 4
    protected, unprotected, payload, signature = message
    assert isinstance(protected, bytes)
    assert isinstance(unprotected, Mapping)
    assert isinstance(payload, bytes)
    assert isinstance(signature, bytes) and len(signature) == 64
    return protected, unprotected, payload, signature


def check_token(item: Any) -> SignedToken:
    """Decode a COSE_Sign1 and verify its Ed25519 signature with the key of the leaf
    certificate of its x5chain, rebuilding ``["Signature1", protected, h'', payload]``
    (RFC 9052 section 4.4) with cbor2: exactly what any COSE implementation does."""
    protected_bytes, unprotected, payload, signature = cose_sign1(item)
    protected = cbor2.loads(protected_bytes)
    assert protected[1] == -8  # alg: EdDSA (RFC 9053 section 2.2)
    assert dict(unprotected) == {}
    x5chain = protected[33]  # RFC 9360: one bstr, or an array of them, leaf first
    ders = [x5chain] if isinstance(x5chain, bytes) else list(x5chain)
    chain = [x509.load_der_x509_certificate(der) for der in ders]
    public = chain[0].public_key()
    assert isinstance(public, Ed25519PublicKey)
    to_be_signed = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
    public.verify(signature, to_be_signed)  # raises InvalidSignature
    claims = cbor2.loads(payload)
    assert isinstance(claims, Mapping)
    return SignedToken(dict(protected), dict(claims), chain)


# --- a compromised TRE: holds the DeviceID key -------------------------------------------------


def device_key(state: Path) -> Any:
    """The DeviceID private key of the device in ``state`` (derived from its secret)."""
    secret = attestation.Secret((state / "uds.bin").read_bytes())
    return attestation.device_id_key(secret)


def resign(state: Path, evidence: bytes, **changes: Any) -> bytes:
    """``evidence`` with its outer claims changed (``attrs.evolve`` of
    :class:`attestation.TreClaims`; ``submods`` holds Nested-Token bytes as carried) and
    signed again with the DeviceID key of ``state``: what a TRE holding that key can do."""
    message = attestation.parse_sign1(evidence)
    claims = attrs.evolve(attestation.TreClaims.from_wire(message.payload), **changes)
    cert = attestation.load_cert_pem((state / "device.pem").read_bytes())
    return attestation.sign1(claims.to_wire(), device_key(state), x5chain=[cert])


def submods(evidence: bytes) -> dict[str, bytes]:
    """The Nested-Token bytes of each domain, as carried in the evidence."""
    payload = attestation.parse_sign1(evidence).payload
    return dict(attestation.TreClaims.from_wire(payload).submods)


# --- folder plugins ------------------------------------------------------------------------------


def copy_plugin(folder: Path, svn: int | None = None) -> Path:
    """A copy of examples/plugins/hello in ``folder`` (its manifest's svn changed if given)."""
    shutil.copytree(HELLO, folder, ignore=shutil.ignore_patterns("__pycache__"))
    if svn is not None:
        set_svn(folder, svn)
    return folder


def set_svn(folder: Path, svn: int) -> None:
    manifest = folder / "domain.toml"
    lines = manifest.read_text().splitlines()
    lines = [f"svn = {svn}" if line.startswith("svn = ") else line for line in lines]
    manifest.write_text("\n".join(lines) + "\n")


def plugin_config(folder: Path, plugin: Path) -> Path:
    """A config in ``folder`` booting the reference domains and the folder plugin."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tre.toml"
    path.write_text(
        "\n".join(
            [
                "[tre]",
                'name = "attest-test"',
                "[domains]",
                'enable = ["oem", "meter", "mno", "vault"]',
                f"paths = [{json.dumps(str(plugin))}]",
                "[[host.calls]]",
                'domain = "hello"',
                'methods = ["greet"]',
            ]
        )
        + "\n"
    )
    return path
