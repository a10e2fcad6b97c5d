"""The TRE's Entity Attestation Tokens (RFC 9711): CWTs (RFC 8392) signed with COSE_Sign1.

Evidence is one *outer* token, signed by the DeviceID key, with one *nested* token per
domain in its ``submods`` claim, each signed by that domain's alias key. Every token is a
tagged COSE_Sign1 (:mod:`attestation._cose`) whose payload is a CWT claims set, a CBOR map,
in deterministic encoding; the signer's certificate travels in the protected x5chain.

Claims (every one is required, and a verifier of this profile refuses any other)::

    key     name             value                         token
    ------  ---------------  ----------------------------  -------------------------------
         6  iat              uint, seconds since the epoch outer, nested (RFC 8392)
        10  nonce            bstr, 8..64 bytes             outer (RFC 9711 section 4.1)
       256  ueid             bstr, a UEID                  outer, nested (section 4.2.1)
       265  eat_profile      tstr, :data:`PROFILE`         outer, nested (section 4.3.2)
       266  submods          {+ domain id => Nested-Token} outer (section 4.2.18)
       267  bootcount        uint                          outer (section 4.2.11)
    -75001  tre-measurement  bstr .size 32, TRE code hash  outer (private)
    -75002  policy-hash      bstr .size 32, compiled policy outer (private)
    -75003  lifecycle        tstr, TRE lifecycle state     outer (private)
    -75010  domain-id        tstr, the domain's id         nested (private)
    -75011  measurement      bstr .size 32                 nested (private)
    -75012  owner-hash       bstr .size 32                 nested (private)
    -75013  svn              uint, 0..2**31-1              nested (private)
    -75014  domain-state     tstr, installed/active/locked nested (private)

The negative keys are in the CWT registry's private-use range (below -65536, RFC 8392
section 9.1); their meaning is fixed by this profile, which :data:`PROFILE` names. States
are lower-case ASCII words (``[a-z][a-z0-9_-]{0,31}``) so that any lifecycle the runtime adds
can be carried; the verifier decides which ones it trusts.

Nested tokens follow RFC 9711 section 4.2.18.3 and the CBOR-specific CDDL of section 7.3.2:
``CBOR-Token-Inside-CBOR-Token = bstr .cbor $EAT-CBOR-Tagged-Token`` where the tagged token
is a ``CWT-Tagged-Message``, that is the CWT tag 61 around a COSE tag (RFC 8392 section 6:
"the CWT tag MUST prefix a tagged object using one of the COSE CBOR tags"). So each
``submods`` value is a byte string holding ``61(18([...]))``: the bytes ``d8 3d`` followed by
the nested COSE_Sign1 exactly as :func:`domain_token` returned it. The nested token is
standalone (tagged COSE_Sign1, like the outer one) so it can be made once per boot and
reused; it carries no nonce: the outer signature binds it to the verifier's nonce (RFC 9711:
including a signed token as a claim cryptographically binds it to the surrounding token).

Profile choices (RFC 9711 section 6.3): CBOR only; definite lengths and deterministic
encoding (RFC 8949 section 4.2.1), enforced on receipt; COSE_Sign1 only, tagged; EdDSA
(-8) only; keys identified by the protected x5chain (RFC 9360) up to the manufacturer CA;
freshness by one nonce of 8 to 64 bytes; no detached bundles; unknown claims refused.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import cbor2
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ._certs import read_tcb_info
from ._cose import COSE_SIGN1_TAG, decode, encode, sign1
from ._dice import DIGEST_SIZE, MAX_SVN, check_domain_id
from ._errors import EvidenceError, InvalidIdentity
from ._ueid import describe_ueid

__all__ = [
    "BOOTCOUNT",
    "CWT_TAG",
    "DOMAIN_ID",
    "DOMAIN_STATE",
    "EAT_PROFILE",
    "IAT",
    "LIFECYCLE",
    "MAX_NONCE_SIZE",
    "MAX_SUBMODS",
    "MEASUREMENT",
    "MIN_NONCE_SIZE",
    "NONCE",
    "OWNER_HASH",
    "POLICY_HASH",
    "PROFILE",
    "SUBMODS",
    "SVN",
    "TRE_MEASUREMENT",
    "UEID",
    "DomainClaims",
    "TreClaims",
    "TreTokenTemplate",
    "domain_token",
    "parse_claims",
    "tre_token",
    "tre_token_payload",
    "unwrap_nested",
    "wrap_nested",
]

#: The eat_profile of every token we make (a "tag:" URI, RFC 4151).
PROFILE = "tag:tre.example,2026:eat/v1"
#: The CWT CBOR tag (RFC 8392 section 6), around each nested token.
CWT_TAG = 61

# Registered claim keys (IANA "CBOR Web Token (CWT) Claims"; RFC 8392, RFC 9711).
IAT = 6
NONCE = 10
UEID = 256
EAT_PROFILE = 265
SUBMODS = 266
BOOTCOUNT = 267
# Private-use claim keys of this profile: the outer (TRE) token.
TRE_MEASUREMENT = -75001
POLICY_HASH = -75002
LIFECYCLE = -75003
# Private-use claim keys of this profile: the nested (domain) tokens.
DOMAIN_ID = -75010
MEASUREMENT = -75011
OWNER_HASH = -75012
SVN = -75013
DOMAIN_STATE = -75014

#: Nonce sizes RFC 9711 section 4.1 allows (``bstr .size (8..64)``).
MIN_NONCE_SIZE = 8
MAX_NONCE_SIZE = 64
#: Most submodules in one token: far more domains than a TRE hosts, and it bounds the work
#: of a verifier (two signature checks per submodule).
MAX_SUBMODS = 128
#: Largest uint claim (bootcount, iat): CBOR's major type 0 stops at 2**64 - 1.
_MAX_UINT = 2**64 - 1
_STATE_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
#: The deterministic encoding of the CWT tag head, then the COSE_Sign1 tag head.
_CWT_PREFIX = bytes([0xD8, CWT_TAG])
_SIGN1_HEAD = bytes([0xC0 | COSE_SIGN1_TAG])

_OUTER_KEYS = frozenset(
    {IAT, NONCE, UEID, EAT_PROFILE, SUBMODS, BOOTCOUNT, TRE_MEASUREMENT, POLICY_HASH, LIFECYCLE}
)
_NESTED_KEYS = frozenset(
    {IAT, UEID, EAT_PROFILE, DOMAIN_ID, MEASUREMENT, OWNER_HASH, SVN, DOMAIN_STATE}
)
#: The claim keys in deterministic (bytewise encoded) order, RFC 8949 section 4.2.1.
_OUTER_ORDER = tuple(sorted(_OUTER_KEYS, key=cbor2.dumps))


def _text_order(name: str) -> tuple[int, bytes]:
    """The deterministic order of text map keys shorter than 256 bytes (domain ids are at
    most 64 ASCII characters): a shorter encoding sorts first, then the bytes."""
    data = name.encode("utf-8")
    return len(data), data


_NAMES = {
    IAT: "iat",
    NONCE: "nonce",
    UEID: "ueid",
    EAT_PROFILE: "eat_profile",
    SUBMODS: "submods",
    BOOTCOUNT: "bootcount",
    TRE_MEASUREMENT: "tre-measurement",
    POLICY_HASH: "policy-hash",
    LIFECYCLE: "lifecycle",
    DOMAIN_ID: "domain-id",
    MEASUREMENT: "measurement",
    OWNER_HASH: "owner-hash",
    SVN: "svn",
    DOMAIN_STATE: "domain-state",
}

Fail = Callable[[str], Exception]


def _invalid(message: str) -> Exception:
    return InvalidIdentity(message)


def _malformed(message: str) -> Exception:
    return EvidenceError(message, reason="malformed-claims")


# --- value checks, shared by the makers (InvalidIdentity) and the parsers (EvidenceError) --


def _uint(name: str, value: object, highest: int, fail: Fail) -> int:
    if type(value) is not int or not 0 <= value <= highest:
        raise fail(f"{name} must be an unsigned integer up to {highest}")
    return value


def _digest(name: str, value: object, fail: Fail) -> bytes:
    if not isinstance(value, bytes) or len(value) != DIGEST_SIZE:
        raise fail(f"{name} must be a {DIGEST_SIZE}-byte string")
    return value


def _state(name: str, value: object, fail: Fail) -> str:
    if not isinstance(value, str) or not _STATE_RE.fullmatch(value):
        raise fail(f"{name} must be a lower-case word of at most 32 characters")
    return value


@functools.lru_cache(maxsize=64)
def _ueid_problem(value: bytes) -> str | None:
    """Why ``value`` is not a UEID, or None. Cached: a device's UEID is checked again for
    every evidence it makes."""
    try:
        describe_ueid(value)
    except InvalidIdentity as exc:
        return exc.message
    return None


def _ueid(value: object, fail: Fail) -> bytes:
    if not isinstance(value, bytes):
        raise fail(f"ueid must be bytes, not {type(value).__name__}")
    problem = _ueid_problem(value)
    if problem is not None:
        raise fail(f"ueid: {problem}")
    return value


def _domain_id(value: object, fail: Fail) -> str:
    try:
        return check_domain_id(value)
    except InvalidIdentity as exc:
        raise fail(exc.message) from None


def _nonce(value: object, fail: Fail) -> bytes:
    if not isinstance(value, bytes):
        raise fail(f"the nonce must be bytes, not {type(value).__name__}")
    if not MIN_NONCE_SIZE <= len(value) <= MAX_NONCE_SIZE:
        raise fail(
            f"the nonce must be {MIN_NONCE_SIZE} to {MAX_NONCE_SIZE} bytes (RFC 9711 "
            f"section 4.1), not {len(value)}"
        )
    return value


def _nonce_on_wire(message: str) -> Exception:
    return EvidenceError(message, reason="nonce-length")


# --- nested tokens ------------------------------------------------------------------------


def wrap_nested(token: bytes) -> bytes:
    """The Nested-Token bytes of a tagged COSE_Sign1: ``61(token)`` (see the module
    docstring). The caller puts them in a bstr."""
    return _CWT_PREFIX + token


def unwrap_nested(data: bytes) -> bytes:
    """The tagged COSE_Sign1 inside Nested-Token bytes; :class:`~attestation.EvidenceError`
    unless they start with the CWT tag 61 (deterministically encoded) and then tag 18."""
    if not isinstance(data, bytes) or not data.startswith(_CWT_PREFIX + _SIGN1_HEAD):
        raise EvidenceError(
            "a submodule must be bstr .cbor 61(18([...])): a CWT-tagged COSE_Sign1 "
            "(RFC 9711 section 7.3.2, RFC 8392 section 6)"
        )
    return data[len(_CWT_PREFIX) :]


# --- claims -------------------------------------------------------------------------------


def _decode_claims(payload: bytes, what: str) -> Any:
    """The payload, strictly decoded; a fault is about the claims (``malformed-claims``):
    the signature over them has been checked by then."""
    try:
        return decode(payload, what)
    except EvidenceError as exc:
        raise _malformed(exc.message) from None


def _claims_map(payload: bytes, keys: frozenset[int], what: str) -> Mapping[Any, Any]:
    return _check_claims(_decode_claims(payload, f"the {what} claims"), keys, what)


def _check_claims(claims: Any, keys: frozenset[int], what: str) -> Mapping[Any, Any]:
    """The profile first (a token of another profile is ``unknown-profile`` whatever else
    it holds), then exactly the claims this profile defines."""
    if not isinstance(claims, Mapping):
        raise _malformed(f"the {what} claims set is a {type(claims).__name__}, not a map")
    profile = claims.get(EAT_PROFILE)
    if profile != PROFILE:
        raise EvidenceError(
            f"the {what} token's eat_profile is {profile!r}, not {PROFILE!r}",
            reason="unknown-profile" if EAT_PROFILE in claims else "malformed-claims",
        )
    missing = sorted(_NAMES[k] for k in keys - claims.keys())
    if missing:
        raise _malformed(f"the {what} token lacks the claim(s) {', '.join(missing)}")
    unknown = sorted(str(k) for k in claims.keys() - keys)
    if unknown:
        raise _malformed(
            f"the {what} token has claim(s) this profile does not define: {', '.join(unknown)}"
        )
    return claims


@attrs.frozen
class TreClaims:
    """The claims of the outer token, typed. :meth:`from_wire` checks every type."""

    nonce: bytes
    ueid: bytes
    bootcount: int
    iat: int
    tre_measurement: bytes
    policy_hash: bytes
    lifecycle: str
    #: Domain id -> the Nested-Token bytes as carried (``61(18([...]))``, see
    #: :func:`unwrap_nested`); the verifier parses each on its own.
    submods: dict[str, bytes]

    @classmethod
    def from_wire(cls, payload: bytes) -> TreClaims:
        """Parse an outer token's payload; :class:`~attestation.EvidenceError` whose reason
        is ``unknown-profile``, ``nonce-length`` or ``malformed-claims``."""
        return cls._from_map(_claims_map(payload, _OUTER_KEYS, "TRE"))

    @classmethod
    def _from_map(cls, claims: Mapping[Any, Any]) -> TreClaims:
        submods = claims[SUBMODS]
        if not isinstance(submods, Mapping):
            raise _malformed("submods must be a map")
        if len(submods) > MAX_SUBMODS:
            raise _malformed(f"at most {MAX_SUBMODS} submodules")
        nested: dict[str, bytes] = {}
        for name, token in submods.items():
            domain = _domain_id(name, _malformed)
            if not isinstance(token, bytes):
                raise _malformed(
                    f"submodule {domain!r} is not a bstr: this profile carries only nested "
                    "CBOR tokens (RFC 9711 section 4.2.18)"
                )
            nested[domain] = token
        return cls(
            nonce=_nonce(claims[NONCE], _nonce_on_wire),
            ueid=_ueid(claims[UEID], _malformed),
            bootcount=_uint("bootcount", claims[BOOTCOUNT], _MAX_UINT, _malformed),
            iat=_uint("iat", claims[IAT], _MAX_UINT, _malformed),
            tre_measurement=_digest("tre-measurement", claims[TRE_MEASUREMENT], _malformed),
            policy_hash=_digest("policy-hash", claims[POLICY_HASH], _malformed),
            lifecycle=_state("lifecycle", claims[LIFECYCLE], _malformed),
            submods=nested,
        )

    def to_wire(self) -> bytes:
        """The deterministic CBOR claims set (submods wrapped as Nested-Tokens already).

        Built in the deterministic key order directly rather than through
        :func:`~attestation._cose.encode`: this runs once per request and must cost little
        next to the signature (a test checks the two agree)."""
        values = {
            IAT: self.iat,
            NONCE: self.nonce,
            UEID: self.ueid,
            EAT_PROFILE: PROFILE,
            SUBMODS: {name: self.submods[name] for name in sorted(self.submods, key=_text_order)},
            BOOTCOUNT: self.bootcount,
            TRE_MEASUREMENT: self.tre_measurement,
            POLICY_HASH: self.policy_hash,
            LIFECYCLE: self.lifecycle,
        }
        return cbor2.dumps({key: values[key] for key in _OUTER_ORDER})


@attrs.frozen
class DomainClaims:
    """The claims of a nested (domain) token, typed. :meth:`from_wire` checks every type."""

    ueid: bytes
    iat: int
    domain_id: str
    measurement: bytes
    owner_hash: bytes
    svn: int
    state: str

    @classmethod
    def from_wire(cls, payload: bytes) -> DomainClaims:
        """Parse a nested token's payload; :class:`~attestation.EvidenceError` whose reason
        is ``unknown-profile`` or ``malformed-claims``."""
        return cls._from_map(_claims_map(payload, _NESTED_KEYS, "domain"))

    @classmethod
    def _from_map(cls, claims: Mapping[Any, Any]) -> DomainClaims:
        return cls(
            ueid=_ueid(claims[UEID], _malformed),
            iat=_uint("iat", claims[IAT], _MAX_UINT, _malformed),
            domain_id=_domain_id(claims[DOMAIN_ID], _malformed),
            measurement=_digest("measurement", claims[MEASUREMENT], _malformed),
            owner_hash=_digest("owner-hash", claims[OWNER_HASH], _malformed),
            svn=_uint("svn", claims[SVN], MAX_SVN, _malformed),
            state=_state("domain-state", claims[DOMAIN_STATE], _malformed),
        )

    def to_wire(self) -> bytes:
        """The deterministic CBOR claims set."""
        return encode(
            {
                IAT: self.iat,
                UEID: self.ueid,
                EAT_PROFILE: PROFILE,
                DOMAIN_ID: self.domain_id,
                MEASUREMENT: self.measurement,
                OWNER_HASH: self.owner_hash,
                SVN: self.svn,
                DOMAIN_STATE: self.state,
            }
        )


def parse_claims(payload: bytes) -> TreClaims | DomainClaims:
    """The typed claims of a token's payload: :class:`DomainClaims` if it names a domain
    (``domain-id``), else :class:`TreClaims`. :class:`~attestation.EvidenceError` if the
    payload is not exactly one of the two claim sets of this profile."""
    claims = _decode_claims(payload, "the claims")
    if isinstance(claims, Mapping) and DOMAIN_ID in claims:
        return DomainClaims._from_map(_check_claims(claims, _NESTED_KEYS, "domain"))
    return TreClaims._from_map(_check_claims(claims, _OUTER_KEYS, "TRE"))


# --- making tokens ------------------------------------------------------------------------


#: Key and certificate pairs already found to match, by identity (holding both, so an id
#: is not reused while cached): evidence is made per request with the same pair.
_MATCHED_SIGNERS: dict[tuple[int, int], tuple[object, object]] = {}
_MATCHED_SIGNERS_SIZE = 16


def _check_signer(key: object, cert: object, role: str) -> Ed25519PrivateKey:
    cached = _MATCHED_SIGNERS.get((id(key), id(cert)))
    if cached is not None and cached[0] is key and cached[1] is cert:
        assert isinstance(key, Ed25519PrivateKey)
        return key
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidIdentity(f"the {role} key must be an Ed25519PrivateKey")
    if not isinstance(cert, x509.Certificate):
        raise InvalidIdentity(f"the {role} certificate must be an x509.Certificate")
    public = cert.public_key()
    if not isinstance(public, Ed25519PublicKey) or (
        public.public_bytes_raw() != key.public_key().public_bytes_raw()
    ):
        raise InvalidIdentity(f"the {role} key does not match the {role} certificate")
    if len(_MATCHED_SIGNERS) >= _MATCHED_SIGNERS_SIZE:
        _MATCHED_SIGNERS.clear()
    _MATCHED_SIGNERS[(id(key), id(cert))] = (key, cert)
    return key


def domain_token(
    alias_key: Ed25519PrivateKey,
    alias_cert: x509.Certificate,
    *,
    ueid: bytes,
    domain_id: str,
    measurement: bytes,
    owner_hash: bytes,
    svn: int,
    state: str,
    iat: int,
) -> bytes:
    """A domain's nested token: a tagged COSE_Sign1 signed by its alias key, x5chain =
    ``[alias_cert]``, with the claims of the module docstring and no nonce.

    Made once per boot and reused for every request. :class:`InvalidIdentity` for a bad
    input, and when the alias certificate's DiceTcbInfo does not say the same domain id,
    measurement, owner hash and svn (a verifier would refuse the token).
    """
    key = _check_signer(alias_key, alias_cert, "alias")
    claims = DomainClaims(
        ueid=_ueid(ueid, _invalid),
        iat=_uint("iat", iat, _MAX_UINT, _invalid),
        domain_id=_domain_id(domain_id, _invalid),
        measurement=_digest("measurement", measurement, _invalid),
        owner_hash=_digest("owner_hash", owner_hash, _invalid),
        svn=_uint("svn", svn, MAX_SVN, _invalid),
        state=_state("state", state, _invalid),
    )
    tcb = read_tcb_info(alias_cert)
    if (tcb["domain_id"], tcb["measurement"], tcb["owner_hash"], tcb["svn"]) != (
        claims.domain_id,
        claims.measurement,
        claims.owner_hash,
        claims.svn,
    ):
        raise InvalidIdentity(
            f"the alias certificate's TcbInfo does not describe domain {domain_id!r} with "
            "this measurement, owner hash and svn"
        )
    return sign1(claims.to_wire(), key, x5chain=[alias_cert])


def tre_token_payload(
    *,
    nonce: bytes,
    ueid: bytes,
    bootcount: int,
    tre_measurement: bytes,
    policy_hash: bytes,
    lifecycle: str,
    submods: Mapping[str, bytes],
    iat: int,
) -> bytes:
    """The outer token's claims, checked and encoded (deterministic CBOR)."""
    if not isinstance(submods, Mapping):
        raise InvalidIdentity("submods must be a mapping of domain id to token bytes")
    if len(submods) > MAX_SUBMODS:
        raise InvalidIdentity(f"at most {MAX_SUBMODS} submodules")
    nested = {}
    for domain, token in submods.items():
        name = _domain_id(domain, _invalid)
        if not isinstance(token, bytes) or not token.startswith(_SIGN1_HEAD):
            raise InvalidIdentity(f"submodule {name!r} is not a tagged COSE_Sign1")
        nested[name] = wrap_nested(token)
    claims = TreClaims(
        nonce=_nonce(nonce, _invalid),
        ueid=_ueid(ueid, _invalid),
        bootcount=_uint("bootcount", bootcount, _MAX_UINT, _invalid),
        iat=_uint("iat", iat, _MAX_UINT, _invalid),
        tre_measurement=_digest("tre_measurement", tre_measurement, _invalid),
        policy_hash=_digest("policy_hash", policy_hash, _invalid),
        lifecycle=_state("lifecycle", lifecycle, _invalid),
        submods=nested,
    )
    return claims.to_wire()


def tre_token(
    device_key: Ed25519PrivateKey,
    device_cert: x509.Certificate,
    *,
    nonce: bytes,
    ueid: bytes,
    bootcount: int,
    tre_measurement: bytes,
    policy_hash: bytes,
    lifecycle: str,
    submods: Mapping[str, bytes],
    iat: int,
) -> bytes:
    """The evidence: the outer token, a tagged COSE_Sign1 signed by the DeviceID key with
    x5chain = ``[device_cert]``, carrying ``nonce`` and one submodule per entry of
    ``submods`` (domain id -> the bytes :func:`domain_token` returned).

    :class:`InvalidIdentity` for a bad input: a nonce outside 8..64 bytes, a submodule that
    is not a tagged COSE_Sign1, more than :data:`MAX_SUBMODS` of them, a key that does not
    match the certificate. The nested tokens are not re-verified here (that is the
    verifier's job, and this runs once per request). For many requests with the same
    inputs, :class:`TreTokenTemplate` does the same work once.
    """
    key = _check_signer(device_key, device_cert, "DeviceID")
    payload = tre_token_payload(
        nonce=nonce,
        ueid=ueid,
        bootcount=bootcount,
        tre_measurement=tre_measurement,
        policy_hash=policy_hash,
        lifecycle=lifecycle,
        submods=submods,
        iat=iat,
    )
    return sign1(payload, key, x5chain=[device_cert])


class TreTokenTemplate:
    """:func:`tre_token` for many nonces, from inputs that stay the same for a boot.

    Everything but the nonce and ``iat`` is checked and encoded once. In the deterministic
    encoding those two are the first entries of the claims map (keys 6 and 10 sort before
    every other key), so each request only encodes them, prepends them to the stored rest
    of the map and signs: :meth:`sign` gives exactly the bytes :func:`tre_token` would.
    """

    def __init__(
        self,
        device_key: Ed25519PrivateKey,
        device_cert: x509.Certificate,
        *,
        ueid: bytes,
        bootcount: int,
        tre_measurement: bytes,
        policy_hash: bytes,
        lifecycle: str,
        submods: Mapping[str, bytes],
    ) -> None:
        self._key = _check_signer(device_key, device_cert, "DeviceID")
        self._cert = device_cert
        placeholder = bytes(MIN_NONCE_SIZE)
        # The one full encoding, with a placeholder nonce and iat 0, validates every input
        # exactly as tre_token does; then it is cut after those two entries.
        wire = tre_token_payload(
            nonce=placeholder,
            ueid=ueid,
            bootcount=bootcount,
            tre_measurement=tre_measurement,
            policy_hash=policy_hash,
            lifecycle=lifecycle,
            submods=submods,
            iat=0,
        )
        first = cbor2.dumps(IAT) + cbor2.dumps(0) + cbor2.dumps(NONCE) + cbor2.dumps(placeholder)
        head = _map_head(wire)
        if wire[len(head) : len(head) + len(first)] != first:  # pragma: no cover - see above
            raise InvalidIdentity("the claims map does not start with iat and nonce")
        self._head = head
        self._tail = wire[len(head) + len(first) :]

    def sign(self, nonce: bytes, iat: int) -> bytes:
        """The evidence for ``nonce`` at ``iat`` (seconds since the epoch)."""
        nonce = _nonce(nonce, _invalid)
        iat = _uint("iat", iat, _MAX_UINT, _invalid)
        payload = b"".join(
            (
                self._head,
                cbor2.dumps(IAT),
                cbor2.dumps(iat),
                cbor2.dumps(NONCE),
                cbor2.dumps(nonce),
                self._tail,
            )
        )
        return sign1(payload, self._key, x5chain=[self._cert])


def _map_head(encoded_map: bytes) -> bytes:
    """The initial bytes (major type 5 and its length) of a definite-length CBOR map."""
    first = encoded_map[0]
    if first >> 5 != 5:  # pragma: no cover - our own encoding
        raise InvalidIdentity("not a CBOR map")
    extra = first & 0x1F
    size = 1 + {24: 1, 25: 2, 26: 4, 27: 8}.get(extra, 0)
    return encoded_map[:size]
