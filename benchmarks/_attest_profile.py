"""``attest --profile``: where the time of evidence, verification and sessions goes.

Run after the timed rounds, on the same two TREs, never mixed with them. Two views:

1. **cProfile** of each TRE loop next to its raw loop: ``t.attest``, the raw sign,
   ``verify_evidence``, the raw signature checks, the 64 B session round trip (the whole
   trio thread: both domains, the kernel, the scheduler) and the bare AEAD round trip. C
   calls are grouped by library (cryptography, cbor2, msgpack). cProfile slows Python code
   several times over and not C code, so its shares overstate the Python parts: read them
   with (2).
2. **Anatomy**: each step timed on its own without cProfile (best of 3 loops), built only
   from the public ``attestation`` and ``ipc`` APIs so that the steps can be compared with
   the whole: the evidence as claims encoding + COSE framing + the signature; the
   verification as parsing, the chain, the claims, the nested tokens and the signature
   checks; a session message as ``SecureSession.seal``/``open`` against the bare AEAD
   calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cbor2
import trio
from cryptography import x509
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding

import attestation
import ipc
import tre

from ._attest_loops import (
    TAG,
    Fixture,
    RawKeys,
    bare_aead_round,
    evidence_round,
    now,
    payload,
    raw_sign_round,
    raw_verify_round,
    session_round,
    verify_round,
)
from ._attest_measure import Settings
from ._profile import profile_report, profiled, profiled_sync, stack_group, us_per_call
from ._report import progress, render_table

__all__ = ["profile_attest"]

_Key = tuple[str, int, str]


#: C calls split by library, then Python files by where they live
_C_GROUPS = (
    ("cbor2", "cbor2 (C)"),
    ("msgpack", "msgpack (C)"),
    ("Packer", "msgpack (C)"),
    ("Ed25519", "cryptography (C/Rust): Ed25519"),
    ("ChaCha20", "cryptography (C/Rust): ChaCha20Poly1305"),
    ("x509", "cryptography (C/Rust): X.509"),
    ("cryptography", "cryptography (C/Rust): other"),
    ("hashlib", "hashlib / hmac (C)"),
)
_PY_GROUPS = (
    ("cryptography/", "cryptography (py wrappers)"),
    ("attestation/", "attestation (py)"),
    ("cbor2/", "cbor2 (py)"),
    ("attr/", "attrs (py)"),
    ("attrs/", "attrs (py)"),
    ("hmac.py", "stdlib (py)"),
)


def _group(key: _Key) -> str:
    """Which part of the stack a profiled function belongs to, C calls split by library."""
    return stack_group(key, _C_GROUPS, _PY_GROUPS, generated="attrs (generated)")


# --- anatomy ----------------------------------------------------------------------------------


def _step(steps: dict[str, float | None], name: str, fn: Callable[[], object], n: int) -> None:
    """Time one step; None if it no longer runs (the API it uses changed)."""
    try:
        fn()
    except Exception as exc:  # an API changed under us: say so, keep going
        progress(TAG, f"profile: step {name!r} skipped: {type(exc).__name__}: {exc}")
        steps[name] = None
        return
    steps[name] = us_per_call(fn, n)


def _evidence_anatomy(t: tre.TRE, fx: Fixture, raw: RawKeys, n: int) -> dict[str, float | None]:
    device = t._kernel.device
    nonce, evidence = fx.pool[0]
    outer = attestation.parse_sign1(evidence)
    claims = attestation.TreClaims.from_wire(outer.payload)
    sig = cbor2.dumps(["Signature1", outer.protected_bytes, b"", outer.payload])
    key, cert = device.device_key, device.device_cert
    steps: dict[str, float | None] = {}
    _step(steps, "t.attest(nonce) (the whole)", lambda: t.attest(nonce), n)
    _step(steps, "claims.to_wire(): encode the claims", claims.to_wire, n)
    _step(
        steps,
        "attestation.sign1(payload, key, x5chain): COSE framing + sign",
        lambda: attestation.sign1(outer.payload, key, x5chain=[cert]),
        n,
    )
    _step(steps, "key.sign(Sig_structure): the signature alone", lambda: key.sign(sig), n)
    # What if the payload were a per-boot template with only the nonce spliced in (what
    # EvidenceMaker could keep, since everything but nonce and iat is fixed per boot)?
    head, tail = outer.payload.split(nonce, 1)
    nonces = [n for n, _ in fx.pool]
    turn = iter(range(1 << 62))
    _step(
        steps,
        "what-if: sign1(payload template + nonce spliced in)",
        lambda: attestation.sign1(
            head + nonces[next(turn) % len(nonces)] + tail, key, x5chain=[cert]
        ),
        n,
    )
    _step(
        steps,
        "raw sign of a payload-size message (the compared)",
        lambda: raw.ed25519.sign(raw.message),
        n,
    )
    return steps


def _verify_anatomy(fx: Fixture, n: int) -> dict[str, float | None]:
    nonce, evidence = fx.pool[0]
    when = now()
    outer = attestation.parse_sign1(evidence)
    device = outer.x5chain[0]
    claims = attestation.TreClaims.from_wire(outer.payload)
    nested = [attestation.unwrap_nested(claims.submods[d]) for d in sorted(claims.submods)]
    messages = [attestation.parse_sign1(token) for token in nested]
    checks = [(c.public.verify, c.signature, c.data) for c in fx.checks]

    def parse_nested() -> None:
        for token in nested:
            attestation.parse_sign1(token)

    def nested_claims() -> None:
        for msg in messages:
            attestation.DomainClaims.from_wire(msg.payload)

    def tcb_infos() -> None:
        for msg in messages:
            attestation.read_tcb_info(msg.x5chain[0])

    def raw_checks() -> None:
        for verify, signature, data in checks:
            verify(signature, data)

    steps: dict[str, float | None] = {}
    _step(
        steps,
        "verify_evidence (the whole)",
        lambda: attestation.verify_evidence(
            evidence, ca=fx.ca, nonce=nonce, now=when, reference=fx.reference
        ),
        n,
    )
    _step(
        steps,
        "parse_sign1(outer): CBOR + x5chain load",
        lambda: attestation.parse_sign1(evidence),
        n,
    )
    _step(
        steps,
        "verify_chain(DeviceID, [], CA, now): 2 cert signatures + rules",
        lambda: attestation.verify_chain(device, [], fx.ca, when),
        n,
    )
    _step(
        steps,
        "TreClaims.from_wire(payload)",
        lambda: attestation.TreClaims.from_wire(outer.payload),
        n,
    )
    _step(steps, f"parse_sign1 x {len(nested)} nested tokens", parse_nested, n)
    _step(steps, f"DomainClaims.from_wire x {len(messages)}", nested_claims, n)
    _step(steps, f"read_tcb_info x {len(messages)} alias certs", tcb_infos, n)
    _step(steps, f"{len(checks)} raw signature checks (the compared)", raw_checks, n)
    alias = messages[0].x5chain[0]
    link = next(c for c in fx.checks if c.data == alias.tbs_certificate_bytes)
    _step(
        steps,
        "one alias link: alias.verify_directly_issued_by(DeviceID)",
        lambda: alias.verify_directly_issued_by(device),
        n * 10,
    )
    _step(
        steps,
        "the same link as a raw Ed25519PublicKey.verify(sig, TBSCertificate)",
        lambda: link.public.verify(link.signature, link.data),
        n * 10,
    )
    _step(
        steps,
        "CA self-signature: ca.verify_directly_issued_by(ca) (made, not required)",
        lambda: fx.ca.verify_directly_issued_by(fx.ca),
        n * 10,
    )
    ders = [device.public_bytes(Encoding.DER)]
    ders += [msg.x5chain[0].public_bytes(Encoding.DER) for msg in messages]

    def load_certs() -> None:
        for der in ders:
            cert = x509.load_der_x509_certificate(der)
            cert.issuer, cert.subject, cert.signature_algorithm_oid, cert.extensions  # noqa: B018
            cert.not_valid_before_utc, cert.not_valid_after_utc, cert.serial_number  # noqa: B018

    _step(steps, f"load + read the fields of the {len(ders)} x5chain certificates", load_certs, n)
    return steps


def _session_anatomy(size: int, n: int) -> dict[str, float | None]:
    initiator, responder = ipc.Handshake.initiator(), ipc.Handshake.responder()
    ours = initiator.finish(responder.nonce, responder.public)
    theirs = responder.finish(initiator.nonce, initiator.public)
    data = payload(size)
    aead = ChaCha20Poly1305(ChaCha20Poly1305.generate_key())
    iv = 0x0123456789ABCDEF01234567
    counter = iter(range(1 << 62))
    header = (0).to_bytes(8, "big")
    nonce = (iv ^ 0).to_bytes(12, "big")
    sealed = header + aead.encrypt(nonce, data, header)

    def raw_seal() -> bytes:
        c = next(counter)
        h = c.to_bytes(8, "big")
        return h + aead.encrypt((iv ^ c).to_bytes(12, "big"), data, h)

    def raw_open() -> bytes:
        h = sealed[:8]
        c = int.from_bytes(h, "big")
        return aead.decrypt((iv ^ c).to_bytes(12, "big"), sealed[8:], h)

    steps: dict[str, float | None] = {}
    _step(steps, f"SecureSession.seal ({size} B)", lambda: ours.seal(data), n)
    # open needs fresh counters (the replay window refuses repeats): seal them first
    total = 3 * n + 1
    messages = iter([ours.seal(data) for _ in range(total)])
    _step(steps, f"SecureSession.open ({size} B)", lambda: theirs.open(next(messages)), n)
    _step(steps, f"bare AEAD seal: counter header + encrypt ({size} B)", raw_seal, n)
    _step(steps, f"bare AEAD open: header + decrypt ({size} B)", raw_open, n)
    return steps


def _anatomy_table(title: str, steps: dict[str, float | None]) -> str:
    rows = [
        (name, "skipped" if us is None else f"{us:.2f}", "" if us is None else f"{1e6 / us:.0f}")
        for name, us in steps.items()
    ]
    return render_table((title, "us/call", "calls/s"), rows)


# --- the whole profile ---------------------------------------------------------------------------


async def profile_attest(
    evidence_tre: tre.TRE, session_tre: tre.TRE, fx: Fixture, raw: RawKeys, s: Settings
) -> tuple[str, dict[str, Any]]:
    """Profile and dissect the scenario's loops; returns the report (for stderr) and the
    anatomy figures (for the JSON)."""
    progress(TAG, "profile: cProfile of every TRE loop and its raw loop")
    ev, ver, ses = s.evidence_calls, s.verify_calls, s.session_calls
    size = s.payloads[0]
    checks = len(fx.checks)
    report = ""
    for title, fn, calls, top in (
        (
            f"t.attest(nonce) ({fx.payload_bytes} B payload)",
            lambda: evidence_round(evidence_tre, fx, ev),
            ev,
            20,
        ),
        (
            f"raw Ed25519PrivateKey.sign ({fx.payload_bytes} B)",
            lambda: raw_sign_round(raw, raw.message, ev),
            ev,
            5,
        ),
        (
            f"verify_evidence ({len(fx.domains)} domains, reference values)",
            lambda: verify_round(fx, ver),
            ver,
            30,
        ),
        (
            f"raw signature checks ({checks} per verification)",
            lambda: raw_verify_round(fx, ver),
            ver,
            5,
        ),
    ):
        report += profile_report(profiled_sync(fn), title, calls, top, _group)

    async def session() -> None:
        await session_round(session_tre, size, ses)

    async def bare() -> None:
        await bare_aead_round(size, ses, s.baseline_capacity)

    title = f"attested session round trip ({size} B), the whole trio thread"
    report += profile_report(await profiled(session), title, ses, 30, _group)
    title = f"bare channel + AEAD round trip ({size} B), both tasks"
    report += profile_report(await profiled(bare), title, ses, 12, _group)

    progress(TAG, "profile: step timings (no cProfile)")
    await trio.lowlevel.checkpoint()
    n_ev = max(200, ev // 4)
    n_ver = max(20, ver // 4)
    n_ses = max(1000, ses // 4)
    evidence_steps = _evidence_anatomy(evidence_tre, fx, raw, n_ev)
    verify_steps = _verify_anatomy(fx, n_ver)
    session_steps = {str(z): _session_anatomy(z, n_ses) for z in s.payloads}
    report += "\n=== anatomy: each step timed on its own, best of 3 loops, no cProfile ===\n"
    tables = [
        _anatomy_table("evidence anatomy", evidence_steps),
        _anatomy_table("verification anatomy", verify_steps),
        *(_anatomy_table(f"session message anatomy, {z} B", st) for z, st in session_steps.items()),
    ]
    report += "\n\n".join(tables) + "\n"
    anatomy = {
        "evidence_us": evidence_steps,
        "verify_us": verify_steps,
        "session_us": session_steps,
    }
    return report, anatomy
