"""COSE_Sign1 (RFC 9052) with EdDSA over Ed25519, and the strict CBOR underneath it.

What we write::

    COSE_Sign1_Tagged = #6.18([                  ; RFC 9052 section 4.2, tag 18
        protected:   bstr .cbor {1: -8,           ; alg: EdDSA (RFC 9053 section 2.2)
                                 ? 33: COSE_X509}, ; x5chain (RFC 9360 section 2)
        unprotected: {},                         ; empty in our profile
        payload:     bstr,                       ; attached, never nil
        signature:   bstr .size 64,              ; Ed25519 over the Sig_structure
    ])
    COSE_X509 = bstr / [2* bstr]                 ; one DER certificate, or leaf first
    Sig_structure = ["Signature1", protected, external_aad: h'', payload]   ; section 4.4

x5chain goes in the *protected* header: RFC 9360 allows either bucket, and a protected chain
cannot be swapped for another one without breaking the signature.

Encoding is RFC 8949 section 4.2.1 core deterministic: preferred (shortest) serialization,
definite lengths, and map keys sorted by the bytewise order of their encodings. Note that
``cbor2.dumps(canonical=True)`` sorts keys length-first (the RFC 7049 order, RFC 8949
section 4.2.3), which differs as soon as keys of different major types or lengths mix
(``256`` sorts before ``-1`` bytewise, after it length-first), so :func:`encode` orders the
maps itself and lets cbor2 do the rest.

Decoding is strict, because every byte an attacker can change without breaking a signature
is a place for a parser differential: at most :data:`MAX_SIGN1_SIZE` bytes, nesting at most
:data:`MAX_DEPTH`, no indefinite lengths, no duplicate map keys, valid UTF-8, no trailing
bytes, only integers, byte strings, text strings, arrays and maps with integer or text keys
(no floats, simple values or tags except the COSE_Sign1 tag where it belongs), and the input
must be exactly the deterministic encoding of what was decoded, so one value has one
encoding. Every semantic tag is intercepted before cbor2 interprets it (cbor2 would
otherwise turn tag 1 into a datetime, a bignum tag 2 into an int, a tag 36 into an email
message...). Every fault is an :class:`~attestation.EvidenceError`; nothing else escapes
the parser, certificates included (cryptography parses some of their fields lazily, so
:func:`parse_sign1` reads them all at once).

Sans-I/O, but this module imports :mod:`cryptography.x509` (which loads the stdlib
``socket`` module), so :mod:`attestation` loads it on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning

from ._errors import EvidenceError, InvalidIdentity

__all__ = [
    "ALG_EDDSA",
    "COSE_SIGN1_TAG",
    "HEADER_ALG",
    "HEADER_CRIT",
    "HEADER_X5CHAIN",
    "MAX_DEPTH",
    "MAX_SIGN1_SIZE",
    "MAX_X5CHAIN_LENGTH",
    "Sign1",
    "decode",
    "encode",
    "parse_sign1",
    "sig_structure",
    "sign1",
    "verify_sign1",
]

#: CBOR tag of a COSE_Sign1 message (RFC 9052 section 2, table 1).
COSE_SIGN1_TAG = 18
#: Header labels (RFC 9052 section 3.1; RFC 9360 section 2).
HEADER_ALG = 1
HEADER_CRIT = 2
HEADER_X5CHAIN = 33
#: EdDSA (RFC 9053 section 2.2); with our keys always Ed25519.
ALG_EDDSA = -8

#: Largest COSE_Sign1 we parse: the outer evidence carries the DeviceID certificate and up
#: to ``MAX_SUBMODS`` nested tokens of about 1.5 KiB each (an alias certificate, a
#: signature and a few claims); 512 KiB leaves room and still bounds the work an attacker
#: can ask of the decoder.
MAX_SIGN1_SIZE = 512 * 1024
#: Deepest CBOR nesting we accept. Our deepest structure is the tag, the array, the
#: unprotected map and a value in it (4); a few more levels for values we then refuse.
MAX_DEPTH = 8
#: Most certificates in an x5chain: the leaf, at most two intermediate CAs (the
#: manufacturer CA's path length, ``CA_PATH_LENGTH``) and an optional copy of the root.
MAX_X5CHAIN_LENGTH = 4
#: What cryptography raises for a certificate it cannot parse, at load or on first access.
#: Its deprecation warning (for instance for a negative serial number) is an exception only
#: where warnings are errors (our tests); elsewhere :func:`_parse_x5chain` refuses the
#: certificate itself.
_CERT_ERRORS = (
    CryptographyDeprecationWarning,
    TypeError,  # a name attribute of a type its OID does not allow
    ValueError,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    UnsupportedAlgorithm,
)
#: Ed25519 signature size (RFC 8032 section 5.1.6).
_SIGNATURE_SIZE = 64
#: The Sig_structure context of a COSE_Sign1 (RFC 9052 section 4.4).
_CONTEXT = "Signature1"


# --- deterministic encoding ---------------------------------------------------------------


def _canonical(value: Any) -> Any:
    """``value`` with every map rebuilt in RFC 8949 section 4.2.1 key order (cbor2 keeps a
    dict's insertion order when ``canonical=False``); refuses types we never encode."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        raise TypeError(f"{type(value).__name__} is not part of our CBOR profile")
    if isinstance(value, int | bytes | str):
        return value
    if isinstance(value, Mapping):
        items = [(cbor2.dumps(_canonical(k)), k, v) for k, v in value.items()]
        items.sort(key=lambda item: item[0])
        return {k: _canonical(v) for _, k, v in items}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, cbor2.CBORTag):
        return cbor2.CBORTag(value.tag, _canonical(value.value))
    raise TypeError(f"{type(value).__name__} is not part of our CBOR profile")


def encode(value: Any) -> bytes:
    """The RFC 8949 section 4.2.1 deterministic encoding of ``value``: ints, bytes, str,
    lists or tuples, mappings with int or str keys, and :class:`cbor2.CBORTag`."""
    return cbor2.dumps(_canonical(value))


# --- strict decoding ----------------------------------------------------------------------


class _TagPolicy(Mapping[int, Callable[[Any, bool], Any]]):
    """cbor2 ``semantic_decoders`` that intercept *every* tag: the allowed ones become a
    plain :class:`cbor2.CBORTag`, any other one is an error. cbor2 looks each tag up with
    ``mapping[tag]`` before its own decoders, so none of those ever runs. (Iteration lists
    only the allowed tags; lookup answers for all of them, on purpose.) Should a cbor2
    release stop consulting the mapping for its built-in tags, :func:`_check_value` and the
    deterministic re-encoding still refuse what those decoders produce."""

    def __init__(self, allowed: frozenset[int]) -> None:
        self._allowed = allowed

    def __getitem__(self, tag: int) -> Callable[[Any, bool], Any]:
        if tag not in self._allowed:
            return _refuse_tag(tag)
        return lambda value, _immutable: cbor2.CBORTag(tag, value)

    def __iter__(self) -> Iterator[int]:
        return iter(self._allowed)

    def __len__(self) -> int:
        return len(self._allowed)


def _refuse_tag(tag: int) -> Callable[[Any, bool], Any]:
    def refuse(_value: Any, _immutable: bool) -> Any:
        raise ValueError(f"CBOR tag {tag} is not allowed here")

    return refuse


_POLICIES = {
    frozenset(): _TagPolicy(frozenset()),
    frozenset({COSE_SIGN1_TAG}): _TagPolicy(frozenset({COSE_SIGN1_TAG})),
}


def _check_value(value: Any, depth: int = 0) -> None:
    """Only what our profile carries (exact types: ``bool`` is not an ``int`` here), with
    every map's keys in RFC 8949 section 4.2.1 order (bytewise by their encodings, strictly
    increasing). The rest of deterministic encoding is checked by re-encoding."""
    kind = type(value)
    if kind is int or kind is bytes or kind is str:
        return
    if kind is dict or kind is cbor2.frozendict:
        previous = b""
        for key, item in value.items():
            if type(key) is not int and type(key) is not str:
                raise EvidenceError(f"a map key is a {type(key).__name__}, not an int or text")
            encoded = cbor2.dumps(key)
            if encoded <= previous:
                raise EvidenceError(
                    "map keys are not in deterministic order (RFC 8949 section 4.2.1)"
                )
            previous = encoded
            _check_value(item, depth + 1)
        return
    if kind is list or kind is tuple:
        for item in value:
            _check_value(item, depth + 1)
        return
    if kind is cbor2.CBORTag:
        if depth:
            raise EvidenceError(f"a CBOR tag {value.tag} is nested inside a value")
        _check_value(value.value, depth + 1)
        return
    raise EvidenceError(f"a {kind.__name__} value is not allowed in our CBOR profile")


def _require_strict_cbor2() -> None:
    """cbor2 6.1 added ``allow_duplicate_keys`` (6.0: ``semantic_decoders`` taking a value,
    ``allow_indefinite``). With an older cbor2 every call would fail with a TypeError that
    :func:`decode` reports as malformed evidence: fail loudly at import instead."""
    try:
        cbor2.loads(
            b"\xa0",
            semantic_decoders={},
            max_depth=MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )
    except TypeError as exc:
        raise ImportError(f"attestation needs cbor2 >= 6.1 for strict decoding: {exc}") from None


_require_strict_cbor2()


def decode(data: bytes, what: str, *, tags: frozenset[int] = frozenset()) -> Any:
    """Decode one CBOR data item strictly (see the module docstring); ``tags`` may appear
    only at the top. :class:`~attestation.EvidenceError` naming ``what`` for any fault."""
    if not isinstance(data, bytes):
        raise EvidenceError(f"{what} must be bytes, not {type(data).__name__}")
    if len(data) > MAX_SIGN1_SIZE:
        raise EvidenceError(f"{what} is {len(data)} bytes, more than {MAX_SIGN1_SIZE}")
    policy = _POLICIES.get(tags) or _TagPolicy(tags)
    try:
        value = cbor2.loads(
            data,
            semantic_decoders=policy,
            str_errors="strict",
            max_depth=MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
        raise EvidenceError(
            f"{what} is not well-formed CBOR for our profile: {exc}{cause}"
        ) from None
    _check_value(value)
    # cbor2 writes maps in the order it read them, shortest heads and definite lengths:
    # with the key order checked above, equal bytes mean deterministic encoding.
    try:
        again = cbor2.dumps(value)
    except (TypeError, ValueError, cbor2.CBORError) as exc:  # pragma: no cover - checked above
        raise EvidenceError(f"{what} cannot be re-encoded: {exc}") from None
    if again != data:
        raise EvidenceError(
            f"{what} is not in deterministic CBOR (RFC 8949 section 4.2.1): non-shortest "
            "lengths or trailing bytes"
        )
    return value


# --- COSE_Sign1 ---------------------------------------------------------------------------


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """The bytes signed for a COSE_Sign1 (RFC 9052 section 4.4): the deterministic encoding
    of ``["Signature1", protected, h'', payload]`` (no external AAD)."""
    return cbor2.dumps([_CONTEXT, protected, b"", payload])


def _der(cert: object) -> bytes:
    if not isinstance(cert, x509.Certificate):
        raise InvalidIdentity(f"x5chain holds x509.Certificate objects, not {type(cert).__name__}")
    return cert.public_bytes(Encoding.DER)


#: Protected headers of recent signers, by the identity of their x5chain: evidence is made
#: per request with the same certificate, and serialising it is a sixth of the cost of a
#: signature. Holds the certificates themselves, so an id is never reused while cached.
_PROTECTED_CACHE: dict[tuple[int, ...], tuple[tuple[x509.Certificate, ...], bytes]] = {}
_PROTECTED_CACHE_SIZE = 16


def _protected_header(x5chain: Sequence[x509.Certificate]) -> bytes:
    chain = tuple(x5chain)
    ids = tuple(map(id, chain))
    cached = _PROTECTED_CACHE.get(ids)
    if cached is not None and cached[0] == chain:
        return cached[1]
    certs = [_der(cert) for cert in chain]
    if len(certs) > MAX_X5CHAIN_LENGTH:
        raise InvalidIdentity(f"x5chain holds at most {MAX_X5CHAIN_LENGTH} certificates")
    protected: dict[int, Any] = {HEADER_ALG: ALG_EDDSA}
    if certs:
        protected[HEADER_X5CHAIN] = certs[0] if len(certs) == 1 else certs
    protected_bytes = encode(protected)
    if len(_PROTECTED_CACHE) >= _PROTECTED_CACHE_SIZE:
        _PROTECTED_CACHE.clear()
    _PROTECTED_CACHE[ids] = (chain, protected_bytes)
    return protected_bytes


def sign1(
    payload: bytes,
    key: Ed25519PrivateKey,
    *,
    x5chain: Sequence[x509.Certificate] = (),
    unprotected: Mapping[int, Any] | None = None,
) -> bytes:
    """A tagged COSE_Sign1 over ``payload``, signed with ``key`` (EdDSA, alg -8).

    The protected header is ``{1: -8}`` plus, when ``x5chain`` is given, ``{33: ...}``: one
    certificate as a DER bstr, several as an array of them, leaf first (RFC 9360). The
    unprotected header is ``unprotected`` (empty by default; our verifier refuses anything
    in it). Deterministic: the same inputs give the same bytes (Ed25519 is deterministic).
    """
    if not isinstance(payload, bytes):
        raise InvalidIdentity(f"payload must be bytes, not {type(payload).__name__}")
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidIdentity(f"key must be an Ed25519PrivateKey, not {type(key).__name__}")
    protected_bytes = _protected_header(x5chain)
    signature = key.sign(sig_structure(protected_bytes, payload))
    header = _canonical(unprotected) if unprotected else {}
    message = [protected_bytes, header, payload, signature]
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, message))


@attrs.frozen
class Sign1:
    """A parsed COSE_Sign1: what :func:`parse_sign1` read, nothing verified yet."""

    #: The decoded protected header (label -> value).
    protected: dict[int | str, Any]
    #: The unprotected header (label -> value); not covered by the signature.
    unprotected: dict[int | str, Any]
    payload: bytes
    signature: bytes
    #: The protected header exactly as transmitted: the Sig_structure needs these bytes.
    protected_bytes: bytes
    #: The certificates of the *protected* x5chain, leaf first; ``()`` when absent.
    x5chain: tuple[x509.Certificate, ...]


#: Parsed certificates are cached by their exact DER bytes (:func:`_load_certificate`):
#: a verifier sees the same DeviceID and alias certificates in every piece of evidence from
#: a device, and loading one and reading its fields costs a fifth of a signature check.
#: Only *parsing* is cached, a pure function of the bytes: validity at ``now``, the chain
#: rules and every signature are checked by the verifier on every call. The cache is an LRU
#: of :data:`_CERT_CACHE_SIZE` entries, and a certificate larger than
#: :data:`_CERT_CACHE_MAX_DER` bytes is never cached (at most 1 MiB of DER is held).
_CERT_CACHE_SIZE = 64
_CERT_CACHE_MAX_DER = 16 * 1024


def _read_certificate(der: bytes) -> x509.Certificate:
    """Load a DER certificate and read every field a verifier uses (uncached)."""
    cert = x509.load_der_x509_certificate(der)
    # cryptography parses some fields only when they are read: read every one a verifier
    # uses now, so a malformed field is a parse error, here, and not an exception in the
    # middle of a chain check. (cryptography keeps what it parsed in the object, so a
    # cached certificate does not parse them again.)
    cert.issuer, cert.subject, cert.signature_algorithm_oid, cert.extensions  # noqa: B018
    cert.not_valid_before_utc, cert.not_valid_after_utc  # noqa: B018
    if cert.serial_number <= 0:
        raise ValueError("the serial number is not positive (RFC 5280 section 4.1.2.2)")
    return cert


# A failed parse raises, and lru_cache never stores an exception: refused bytes are parsed
# (and refused) afresh every time. A deprecation warning cryptography emits while parsing is
# an exception where warnings are errors, so such a certificate is never cached there;
# elsewhere it is emitted on the first parse only (as Python's default filter would do).
_read_cached = functools.lru_cache(maxsize=_CERT_CACHE_SIZE)(_read_certificate)


def _load_certificate(der: bytes) -> x509.Certificate:
    """The certificate of ``der`` with its fields read, from the cache when these exact bytes
    (compared in full, not only by hash) were parsed recently. A cached
    :class:`x509.Certificate` is immutable, so sharing it between appraisals is safe."""
    if type(der) is not bytes:  # the cache key must compare as plain bytes
        der = bytes(der)
    if len(der) > _CERT_CACHE_MAX_DER:
        return _read_certificate(der)
    return _read_cached(der)


def _parse_x5chain(value: Any) -> tuple[x509.Certificate, ...]:
    """COSE_X509 = bstr / [2* bstr] (RFC 9360 section 2), each a DER certificate."""
    if isinstance(value, bytes):
        items: Sequence[Any] = [value]
    elif isinstance(value, list | tuple):
        if not 2 <= len(value) <= MAX_X5CHAIN_LENGTH:
            raise EvidenceError(
                f"an x5chain array holds 2 to {MAX_X5CHAIN_LENGTH} certificates (RFC 9360: "
                f"one certificate is a bare bstr), not {len(value)}"
            )
        items = value
    else:
        raise EvidenceError(f"x5chain is a {type(value).__name__}, not a bstr or an array")
    certs = []
    for index, item in enumerate(items):
        if not isinstance(item, bytes):
            raise EvidenceError(f"x5chain[{index}] is not a bstr")
        try:
            cert = _load_certificate(item)
        except _CERT_ERRORS as exc:
            raise EvidenceError(
                f"x5chain[{index}] is not a DER X.509 certificate we can read: {exc}"
            ) from None
        certs.append(cert)
    return tuple(certs)


def _header_map(value: Any, what: str) -> dict[int | str, Any]:
    if not isinstance(value, Mapping):
        raise EvidenceError(f"the {what} header is a {type(value).__name__}, not a map")
    return dict(value)


def parse_sign1(data: bytes) -> Sign1:
    """Parse a tagged COSE_Sign1 strictly; :class:`~attestation.EvidenceError` on any fault.

    Tag 18 is required; exactly four items; protected a bstr that is empty or the
    deterministic encoding of a non-empty map; unprotected a map; payload a bstr (no
    detached payload); signature a bstr. A label in both buckets is refused (RFC 9052
    section 3) with reason ``unprotected-header``; so is ``crit`` (RFC 9052 section 3.1:
    we understand no header parameter that would need it). The x5chain is read from the
    protected header only. Nothing is verified: see :func:`verify_sign1`.
    """
    message = decode(data, "the COSE_Sign1", tags=frozenset({COSE_SIGN1_TAG}))
    if not isinstance(message, cbor2.CBORTag) or message.tag != COSE_SIGN1_TAG:
        raise EvidenceError("not a tagged COSE_Sign1 (CBOR tag 18 is required)")
    body = message.value
    if not isinstance(body, list | tuple) or len(body) != 4:
        raise EvidenceError("a COSE_Sign1 is an array of exactly 4 items")
    protected_bytes, unprotected_value, payload, signature = body
    if not isinstance(protected_bytes, bytes):
        raise EvidenceError("the protected header is not a bstr")
    if protected_bytes:
        protected = _header_map(decode(protected_bytes, "the protected header"), "protected")
        if not protected:
            raise EvidenceError("an empty protected header must be a zero-length bstr")
    else:
        protected = {}
    unprotected = _header_map(unprotected_value, "unprotected")
    if not isinstance(payload, bytes):
        raise EvidenceError("the payload is not a bstr (detached payloads are not supported)")
    if not isinstance(signature, bytes):
        raise EvidenceError("the signature is not a bstr")
    both = sorted(map(str, protected.keys() & unprotected.keys()))
    if both:
        raise EvidenceError(
            f"header label(s) {', '.join(both)} in both the protected and the unprotected "
            "header (RFC 9052 section 3)",
            reason="unprotected-header",
        )
    if HEADER_CRIT in protected or HEADER_CRIT in unprotected:
        raise EvidenceError("the crit header parameter is not supported")
    x5chain = _parse_x5chain(protected[HEADER_X5CHAIN]) if HEADER_X5CHAIN in protected else ()
    return Sign1(
        protected=protected,
        unprotected=unprotected,
        payload=payload,
        signature=signature,
        protected_bytes=protected_bytes,
        x5chain=x5chain,
    )


def verify_sign1(
    msg: Sign1,
    public_key: Ed25519PublicKey,
    *,
    allowed_algs: frozenset[int] = frozenset({ALG_EDDSA}),
) -> None:
    """Check ``msg``'s algorithm and signature; :class:`~attestation.EvidenceError` if not.

    In order: ``alg`` must not be in the unprotected header (reason
    ``unprotected-header``); it must be in the protected header and in ``allowed_algs``
    (``alg-not-allowed``; RFC 9052 section 3.1 asks for it to be protected); the signature
    must verify with ``public_key`` over the rebuilt Sig_structure (``bad-signature``).
    Only EdDSA is implemented, so ``allowed_algs`` may only narrow ``{-8}``.
    """
    if not isinstance(msg, Sign1):
        raise TypeError(f"msg must be a Sign1, not {type(msg).__name__}")
    if not isinstance(public_key, Ed25519PublicKey):
        raise TypeError(f"public_key must be an Ed25519PublicKey, not {type(public_key).__name__}")
    if not allowed_algs <= {ALG_EDDSA}:
        raise ValueError("only EdDSA (-8) is implemented; allowed_algs may only narrow it")
    if HEADER_ALG in msg.unprotected:
        raise EvidenceError("alg is in the unprotected header", reason="unprotected-header")
    alg = msg.protected.get(HEADER_ALG)
    if alg is None:
        raise EvidenceError("no alg in the protected header", reason="alg-not-allowed")
    if type(alg) is not int or alg not in allowed_algs:
        raise EvidenceError(f"alg {alg!r} is not allowed", reason="alg-not-allowed")
    if len(msg.signature) != _SIGNATURE_SIZE:
        raise EvidenceError("an Ed25519 signature is 64 bytes", reason="bad-signature")
    try:
        public_key.verify(msg.signature, sig_structure(msg.protected_bytes, msg.payload))
    except InvalidSignature:
        raise EvidenceError("the signature does not verify", reason="bad-signature") from None
