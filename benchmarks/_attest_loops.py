"""What the ``attest`` scenario times: the evidence fixture, the session domains, the loops.

**Evidence and verification** run on a TRE booted with ``tre.open_tre()``: the embedded
default config (the reference domains ``oem``, ``meter``, ``mno``, ``vault``) on a throw-away
in-memory device with its own manufacturer CA. :func:`make_fixture` makes, untimed,
:data:`EVIDENCE_POOL` pieces of evidence for as many random nonces, the CA certificate, the
reference values a verifier would hold for this build (every domain's measurement, owner
hash and svn, the TRE measurement and the policy hash, so every check of step 9 runs), and
the signature checks a verifier must make (:func:`required_checks`).

* ``evidence``: ``t.attest(nonce)`` in the host task, the nonce cycling through the pool
  (the verifier's nonce is an input, not part of the cost);
* ``raw_sign``: ``Ed25519PrivateKey.sign(message)`` with ``message`` random bytes of exactly
  the length of the outer token's payload (the CWT claims, nested tokens included);
* ``raw_sign_sig`` (extra, no target): the same with a message of the length of the outer
  Sig_structure, what COSE really signs (the payload plus the protected header with the
  DeviceID certificate): the difference to ``raw_sign`` is the cost of hashing more bytes;
* ``verify``: ``attestation.verify_evidence(evidence, ca=..., nonce=..., now=...,
  reference=...)`` of the pool's evidence in turn, each with its own nonce, ``now`` taken
  once per round; the last appraisal must be ``affirming`` with no problem;
* ``raw_verify``: per verification, one ``Ed25519PublicKey.verify(signature, data)`` for
  each check in :func:`required_checks`, with the real keys, signatures and signed bytes
  taken from the evidence (so the data are not only the same size, they are the same).

**Sessions** run on a second TRE booted alongside (``tre.testing.open_test_tre``) holding
two domains, ``sclient`` and ``sserver`` (rate limits at the manifest maxima, as in the
``ipc`` scenario, so no token bucket throttles). Before the rounds the host has ``sclient``
open an attested session with ``sserver`` (``ctx.open_session("sserver",
expect=tre.Expect(measurements={sserver's measurement}))``; ``sserver`` answers with
``ctx.accept_session``). One *message* in the rates below is one round trip: one sealed
request and one sealed reply.

* ``session_{size}``: inside ``sclient``, N x ``s.open(await ctx.call("sserver", "echo",
  s.seal(data)))``; ``sserver.echo`` does ``s = ctx.session(caller); return
  s.seal(s.open(body))``. Timed inside ``sclient``: one host call per round, not timed;
* ``bare_aead_{size}`` (the baseline): two plain trio tasks over two trio memory channels
  of capacity :data:`~benchmarks._loops.BASELINE_CAPACITY`, each direction its own
  ``ChaCha20Poly1305`` key (the AEAD ``ipc.SecureSession`` uses) and 12-byte IV, the same
  framing: ``header = counter.to_bytes(8, "big")``, ``nonce = (iv ^ counter).to_bytes(12,
  "big")``, ``message = header + encrypt(nonce, data, header)``; the receiver reads the
  counter from the header and decrypts. No replay window, no state machine, no kernel;
* ``bare_session_{size}`` (extra): the same two trio tasks and channels, sealing and
  opening with a pair of real ``ipc.SecureSession`` objects (a local ``ipc.Handshake``):
  the difference to ``bare_aead`` is the session state machine, to ``session`` the kernel;
* ``plain_call_{size}`` (extra): the same round trip through the kernel with the plaintext
  bytes and no session (``sserver.plain`` returns its body).
"""

from __future__ import annotations

import cProfile
import datetime as dt
import os
import pstats
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import cbor2
import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

import attestation
import ipc
import tre
from tre.testing import spec

from ._loops import BASELINE_CAPACITY, DEADLINE, QUOTAS

__all__ = [
    "BENCH_TIMEOUT",
    "CLIENT_ID",
    "EVIDENCE_POOL",
    "HOST_CALLS",
    "NONCE_BYTES",
    "PAYLOADS",
    "SERVER_ID",
    "TAG",
    "Check",
    "Fixture",
    "Loop",
    "RawKeys",
    "bare_aead_round",
    "bare_session_round",
    "count_signature_checks",
    "evidence_round",
    "make_fixture",
    "payload",
    "plain_call_round",
    "prepare_session",
    "raw_sign_round",
    "raw_verify_round",
    "required_checks",
    "session_round",
    "session_specs",
    "verify_round",
]

#: The scenario's tag in progress lines.
TAG = "attest"
#: Session payload sizes (plaintext bytes, each direction).
PAYLOADS = (64, 1024)
#: The verifier's nonces: 16 random bytes each (RFC 9711 allows 8 to 64).
NONCE_BYTES = 16
#: Pieces of evidence made (untimed) before the rounds, one per nonce; the loops cycle.
EVIDENCE_POOL = 16
#: The session domains.
CLIENT_ID = "sclient"
SERVER_ID = "sserver"
#: The host's timeout for one round (a kernel call).
BENCH_TIMEOUT = 600.0
#: ChaCha20-Poly1305 key and IV sizes, and the counter header (as ipc.SecureSession).
_KEY, _IV, _HEADER = 32, 12, 8

#: loop(n) -> seconds
Loop = Callable[[int], Awaitable[float]]


def payload(size: int) -> bytes:
    """The plaintext every session loop sends (deterministic, so the check is simple)."""
    return bytes(i & 0xFF for i in range(size))


def _count(body: Any) -> tuple[int, int]:
    if not isinstance(body, dict):
        raise tre.ServiceError("BAD_BODY", "expected {n, size}")
    n, size = body.get("n"), body.get("size")
    if type(n) is not int or n < 1 or type(size) is not int or size < 0:
        raise tre.ServiceError("BAD_N", "n must be a positive int, size a non-negative int")
    return n, size


# --- the session domains --------------------------------------------------------------------


class SessionServer(tre.Domain):
    """Accepts sessions from ``sclient``; echoes sealed messages and plain bodies."""

    @tre.service
    async def session(self, caller: str, body: Any) -> Any:
        return self.ctx.accept_session(caller, body, expect=tre.Expect())

    @tre.service
    async def echo(self, caller: str, body: Any) -> Any:
        s = self.ctx.session(caller)
        return s.seal(s.open(body))

    @tre.service
    async def plain(self, caller: str, body: Any) -> Any:
        return body


class SessionClient(tre.Domain):
    """Opens the session on ``prepare``; ``bench`` and ``plain`` time their own loops."""

    def __init__(self, ctx: tre.Context) -> None:
        super().__init__(ctx)
        self.session: ipc.SecureSession | None = None

    @tre.service
    async def prepare(self, caller: str, body: Any) -> dict[str, Any]:
        """Open the attested session with ``sserver``, expecting its measurement."""
        expect = tre.Expect(measurements={body["server_measurement"]})
        self.session = await self.ctx.open_session(SERVER_ID, expect=expect)
        return {"transcript": self.session.transcript}

    @tre.service
    async def bench(self, caller: str, body: Any) -> dict[str, Any]:
        """N round trips: seal, call ``sserver.echo``, open the reply."""
        n, size = _count(body)
        s = self.session
        if s is None:
            raise tre.ServiceError("NO_SESSION", "call prepare first")
        data = payload(size)
        seal, open_, call = s.seal, s.open, self.ctx.call
        server = SERVER_ID
        plain = b""
        start = time.perf_counter()
        for _ in range(n):
            plain = open_(await call(server, "echo", seal(data)))
        elapsed = time.perf_counter() - start
        return {"elapsed": elapsed, "ok": plain == data, "sent": s.sent}

    @tre.service
    async def plain(self, caller: str, body: Any) -> dict[str, Any]:
        """N round trips of the plaintext through ``sserver.plain``, no session."""
        n, size = _count(body)
        data = payload(size)
        call, server = self.ctx.call, SERVER_ID
        reply = b""
        start = time.perf_counter()
        for _ in range(n):
            reply = await call(server, "plain", data)
        elapsed = time.perf_counter() - start
        return {"elapsed": elapsed, "ok": reply == data}


#: What the host may call.
HOST_CALLS = {CLIENT_ID: ["prepare", "bench", "plain"]}


def session_specs() -> list[tre.DomainSpec]:
    """``sserver`` (session, echo and plain for ``sclient``) and ``sclient``."""
    return [
        spec(
            SessionServer,
            id=SERVER_ID,
            services={"session": [CLIENT_ID], "echo": [CLIENT_ID], "plain": [CLIENT_ID]},
            quotas=QUOTAS,
            default_deadline=DEADLINE,
        ),
        spec(
            SessionClient,
            id=CLIENT_ID,
            services={name: ["host"] for name in HOST_CALLS[CLIENT_ID]},
            calls={SERVER_ID: ["session", "echo", "plain"]},
            quotas=QUOTAS,
            default_deadline=DEADLINE,
        ),
    ]


async def prepare_session(t: tre.TRE) -> bytes:
    """Have ``sclient`` open its attested session with ``sserver``; the transcript hash."""
    body = {"server_measurement": t.measurement(SERVER_ID)}
    reply = await t.call(CLIENT_ID, "prepare", body, timeout=BENCH_TIMEOUT)
    return bytes(reply["transcript"])


async def session_round(t: tre.TRE, size: int, n: int) -> float:
    """N attested-session round trips ``sclient`` -> ``sserver``, timed inside
    ``sclient``; seconds."""
    reply = await t.call(CLIENT_ID, "bench", {"n": n, "size": size}, timeout=BENCH_TIMEOUT)
    if reply["ok"] is not True:
        raise RuntimeError(f"session ({size} B): the last reply did not open to the payload")
    return float(reply["elapsed"])


async def plain_call_round(t: tre.TRE, size: int, n: int) -> float:
    """N plain kernel calls ``sclient`` -> ``sserver.plain`` with the payload; seconds."""
    reply = await t.call(CLIENT_ID, "plain", {"n": n, "size": size}, timeout=BENCH_TIMEOUT)
    if reply["ok"] is not True:
        raise RuntimeError(f"plain call ({size} B): wrong last reply")
    return float(reply["elapsed"])


# --- the baselines: two plain trio tasks with an AEAD ---------------------------------------

_Send = trio.MemorySendChannel[bytes]
_Recv = trio.MemoryReceiveChannel[bytes]


class _Direction:
    """One direction of the bare channel: a ChaCha20Poly1305 key and a 96-bit IV."""

    def __init__(self) -> None:
        self.aead = ChaCha20Poly1305(os.urandom(_KEY))
        self.iv = int.from_bytes(os.urandom(_IV), "big")


async def _pair(
    name: str,
    n: int,
    capacity: int,
    client: Callable[[int, _Send, _Recv], Awaitable[tuple[float, bytes]]],
    server: Callable[[_Recv, _Send], Awaitable[None]],
    expected: bytes,
) -> float:
    """``client`` against ``server`` over two fresh memory channels; the client's
    seconds, after checking its last plaintext."""
    req_send, req_recv = trio.open_memory_channel[bytes](capacity)
    resp_send, resp_recv = trio.open_memory_channel[bytes](capacity)

    async def serve() -> None:
        async with resp_send, req_recv:
            await server(req_recv, resp_send)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        async with req_send, resp_recv:
            elapsed, last = await client(n, req_send, resp_recv)
    if last != expected:
        raise RuntimeError(f"{name}: the last reply did not decrypt to the payload")
    return elapsed


async def bare_aead_round(size: int, n: int, capacity: int = BASELINE_CAPACITY) -> float:
    """N round trips between two trio tasks, each side ChaCha20-Poly1305 with counter
    nonces (the framing of ``ipc.SecureSession``, nothing else); seconds."""
    c2s, s2c = _Direction(), _Direction()
    data = payload(size)

    async def server(requests: _Recv, responses: _Send) -> None:
        decrypt, recv_iv = c2s.aead.decrypt, c2s.iv
        encrypt, send_iv = s2c.aead.encrypt, s2c.iv
        counter = 0
        async for message in requests:
            header = message[:_HEADER]
            peer = int.from_bytes(header, "big")
            plain = decrypt((recv_iv ^ peer).to_bytes(_IV, "big"), message[_HEADER:], header)
            header = counter.to_bytes(_HEADER, "big")
            nonce = (send_iv ^ counter).to_bytes(_IV, "big")
            counter += 1
            await responses.send(header + encrypt(nonce, plain, header))

    async def client(count: int, requests: _Send, responses: _Recv) -> tuple[float, bytes]:
        encrypt, send_iv = c2s.aead.encrypt, c2s.iv
        decrypt, recv_iv = s2c.aead.decrypt, s2c.iv
        plain = b""
        start = time.perf_counter()
        for counter in range(count):
            header = counter.to_bytes(_HEADER, "big")
            nonce = (send_iv ^ counter).to_bytes(_IV, "big")
            await requests.send(header + encrypt(nonce, data, header))
            message = await responses.receive()
            header = message[:_HEADER]
            peer = int.from_bytes(header, "big")
            plain = decrypt((recv_iv ^ peer).to_bytes(_IV, "big"), message[_HEADER:], header)
        return time.perf_counter() - start, plain

    return await _pair(f"bare_aead_{size}", n, capacity, client, server, data)


def _session_pair() -> tuple[ipc.SecureSession, ipc.SecureSession]:
    """Two ends of a real ``ipc.SecureSession``, keyed by a local handshake (no reports)."""
    initiator, responder = ipc.Handshake.initiator(), ipc.Handshake.responder()
    a = initiator.finish(responder.nonce, responder.public)
    b = responder.finish(initiator.nonce, initiator.public)
    return a, b


async def bare_session_round(size: int, n: int, capacity: int = BASELINE_CAPACITY) -> float:
    """N round trips between two trio tasks sealing and opening with ``ipc.SecureSession``
    (no kernel); seconds."""
    ours, theirs = _session_pair()
    data = payload(size)

    async def server(requests: _Recv, responses: _Send) -> None:
        seal, open_ = theirs.seal, theirs.open
        async for message in requests:
            await responses.send(seal(open_(message)))

    async def client(count: int, requests: _Send, responses: _Recv) -> tuple[float, bytes]:
        seal, open_ = ours.seal, ours.open
        plain = b""
        start = time.perf_counter()
        for _ in range(count):
            await requests.send(seal(data))
            plain = open_(await responses.receive())
        return time.perf_counter() - start, plain

    return await _pair(f"bare_session_{size}", n, capacity, client, server, data)


# --- evidence and its verification ---------------------------------------------------------


@attrs.frozen
class Check:
    """One signature check a verifier must make: ``public.verify(signature, data)``."""

    what: str
    public: Ed25519PublicKey
    signature: bytes
    data: bytes


@attrs.frozen
class Fixture:
    """What the evidence and verification loops need, made once before the rounds."""

    #: (nonce, evidence made for it) x EVIDENCE_POOL
    pool: tuple[tuple[bytes, bytes], ...]
    ca: x509.Certificate
    reference: attestation.Reference
    #: the domains with a nested token, in the evidence's order
    domains: tuple[str, ...]
    evidence_bytes: int
    #: the outer token's payload (the CWT claims, nested tokens included)
    payload_bytes: int
    #: the outer token's protected header (alg and the DeviceID certificate)
    protected_bytes: int
    #: the outer Sig_structure: what the DeviceID key really signs
    sig_structure_bytes: int
    #: the signature checks a verifier must make, outer token first
    checks: tuple[Check, ...]


def _sig_structure(msg: attestation.Sign1) -> bytes:
    """The bytes a COSE_Sign1 signature covers (RFC 9052 section 4.4): the encoding of
    ``["Signature1", protected, h'', payload]``."""
    return cbor2.dumps(["Signature1", msg.protected_bytes, b"", msg.payload])


def _token_check(what: str, msg: attestation.Sign1, signer: x509.Certificate) -> Check:
    public = signer.public_key()
    if not isinstance(public, Ed25519PublicKey):
        raise RuntimeError(f"{what}: not an Ed25519 key")
    return Check(what, public, msg.signature, _sig_structure(msg))


def _cert_check(what: str, cert: x509.Certificate, issuer: x509.Certificate) -> Check:
    public = issuer.public_key()
    if not isinstance(public, Ed25519PublicKey):
        raise RuntimeError(f"{what}: not an Ed25519 issuer key")
    return Check(what, public, cert.signature, cert.tbs_certificate_bytes)


def required_checks(evidence: bytes, ca: x509.Certificate) -> tuple[Check, ...]:
    """The Ed25519 signature checks appraising ``evidence`` needs, counted from the
    evidence itself, with the real keys, signatures and signed bytes:

    * the outer token: the DeviceID key over its Sig_structure;
    * the DeviceID certificate: the CA key over its TBSCertificate;
    * per nested token (one per domain): the alias key over its Sig_structure, and the
      alias certificate: the DeviceID key over its TBSCertificate.

    2 + 2 x domains in all. The CA's self-signature is not counted: the CA is the
    verifier's trust anchor, which needs no check (RFC 5280 section 6.1)."""
    outer = attestation.parse_sign1(evidence)
    device = outer.x5chain[0]
    checks = [
        _token_check("outer token <- DeviceID key", outer, device),
        _cert_check("DeviceID certificate <- CA key", device, ca),
    ]
    claims = attestation.TreClaims.from_wire(outer.payload)
    for domain in sorted(claims.submods):
        msg = attestation.parse_sign1(attestation.unwrap_nested(claims.submods[domain]))
        alias = msg.x5chain[0]
        checks.append(_token_check(f"{domain} token <- its alias key", msg, alias))
        checks.append(_cert_check(f"{domain} alias certificate <- DeviceID key", alias, device))
    return tuple(checks)


def make_fixture(t: tre.TRE) -> Fixture:
    """Evidence for :data:`EVIDENCE_POOL` nonces, the CA, golden reference values, the
    required signature checks."""
    kernel = t._kernel
    device = kernel.device
    ca = device.ca_cert
    pool = []
    for _ in range(EVIDENCE_POOL):
        nonce = os.urandom(NONCE_BYTES)
        pool.append((nonce, t.attest(nonce)))
    domains = {}
    for info in t.domains():
        keys = kernel.domains[info.id].keys
        if keys is None:
            continue
        domains[info.id] = attestation.DomainReference(
            measurements=frozenset({keys.measurement}), owner_hash=keys.owner_hash, min_svn=info.svn
        )
    reference = attestation.Reference(
        domains=domains,
        tre_measurements=frozenset({device.tre_measurement}),
        policy_hashes=frozenset({bytes.fromhex(kernel.policy.digest())}),
    )
    evidence = pool[0][1]
    outer = attestation.parse_sign1(evidence)
    claims = attestation.TreClaims.from_wire(outer.payload)
    checks = required_checks(evidence, ca)
    return Fixture(
        pool=tuple(pool),
        ca=ca,
        reference=reference,
        domains=tuple(sorted(claims.submods)),
        evidence_bytes=len(evidence),
        payload_bytes=len(outer.payload),
        protected_bytes=len(outer.protected_bytes),
        sig_structure_bytes=len(checks[0].data),
        checks=checks,
    )


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _check_appraisal(result: attestation.Appraisal) -> None:
    if result.status != "affirming" or result.problems:
        raise RuntimeError(f"verify: {result.status} {list(result.problems)}, not affirming")


def count_signature_checks(fx: Fixture) -> dict[str, int]:
    """The signature checks one ``verify_evidence`` really makes, counted under cProfile:
    calls of ``Ed25519PublicKey.verify`` (tokens) and of
    ``Certificate.verify_directly_issued_by`` (certificate links)."""
    nonce, evidence = fx.pool[0]
    prof = cProfile.Profile()
    prof.enable()
    result = attestation.verify_evidence(
        evidence, ca=fx.ca, nonce=nonce, now=now(), reference=fx.reference
    )
    prof.disable()
    _check_appraisal(result)
    stats: dict[Any, Any] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    tokens = certs = 0
    for (_file, _line, name), entry in stats.items():
        if "'verify' of" in name and "Ed25519PublicKey" in name:
            tokens += entry[1]
        elif "verify_directly_issued_by" in name:
            certs += entry[1]
    return {"token_signatures": tokens, "certificate_signatures": certs, "total": tokens + certs}


# --- the loops over the evidence fixture ---------------------------------------------------


class RawKeys:
    """The raw side's key and messages, held in plain variables."""

    def __init__(self, fx: Fixture) -> None:
        self.ed25519 = Ed25519PrivateKey.generate()
        #: random bytes of the length of the outer token's payload
        self.message = os.urandom(fx.payload_bytes)
        #: random bytes of the length of the outer Sig_structure
        self.sig_message = os.urandom(fx.sig_structure_bytes)


def evidence_round(t: tre.TRE, fx: Fixture, n: int) -> float:
    """``n`` x ``t.attest(nonce)``, the nonces cycling through the pool; seconds. The last
    piece of evidence is then verified (untimed)."""
    attest = t.attest
    nonces = [nonce for nonce, _ in fx.pool]
    size = len(nonces)
    evidence = b""
    start = time.perf_counter()
    for i in range(n):
        evidence = attest(nonces[i % size])
    elapsed = time.perf_counter() - start
    last = nonces[(n - 1) % size]
    _check_appraisal(
        attestation.verify_evidence(evidence, ca=fx.ca, nonce=last, now=now(), reference=None)
    )
    return elapsed


def raw_sign_round(raw: RawKeys, message: bytes, n: int) -> float:
    """``n`` x ``Ed25519PrivateKey.sign(message)``; seconds."""
    sign = raw.ed25519.sign
    signature = b""
    start = time.perf_counter()
    for _ in range(n):
        signature = sign(message)
    elapsed = time.perf_counter() - start
    raw.ed25519.public_key().verify(signature, message)
    return elapsed


def verify_round(fx: Fixture, n: int) -> float:
    """``n`` x ``verify_evidence`` of the pool's evidence in turn, ``now`` taken once;
    seconds. The last appraisal must be affirming."""
    verify, ca, reference, pool = attestation.verify_evidence, fx.ca, fx.reference, fx.pool
    size = len(pool)
    when = now()
    result: attestation.Appraisal | None = None
    start = time.perf_counter()
    for i in range(n):
        nonce, evidence = pool[i % size]
        result = verify(evidence, ca=ca, nonce=nonce, now=when, reference=reference)
    elapsed = time.perf_counter() - start
    assert result is not None
    _check_appraisal(result)
    return elapsed


def raw_verify_round(fx: Fixture, n: int) -> float:
    """``n`` x (one ``Ed25519PublicKey.verify`` per required check); seconds."""
    checks = [(c.public.verify, c.signature, c.data) for c in fx.checks]
    start = time.perf_counter()
    for _ in range(n):
        for verify, signature, data in checks:
            verify(signature, data)
    return time.perf_counter() - start
