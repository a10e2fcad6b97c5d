"""Appraising evidence: :func:`verify_evidence`, I/O-free, every check in a fixed order.

In the manner of python-tuf's ``trusted_metadata_set``: the reference time ``now`` is passed
in once and used for every certificate; each step cites the rule it enforces; a failure in
steps 1 to 4, or claims that do not parse in step 5, stops the appraisal (nothing after it
could be trusted), a later one lowers the trustworthiness claims it concerns and the
appraisal goes on, so the result lists every problem found. Bad evidence never raises: it
yields an :class:`Appraisal`. Only programmer errors raise (``TypeError`` for an argument of
the wrong type, ``ValueError`` for a naive ``now``).

The steps::

    1  parse the outer COSE_Sign1 strictly                 RFC 9052 s4.2, RFC 8949 s4.2.1
    2  algorithm allow-list (EdDSA, protected), empty      RFC 9052 s3, s3.1; RFC 9053 s2.2
       unprotected header, no unknown header parameter
    3  x5chain present; leaf -> manufacturer CA at `now`;  RFC 9360 s2, RFC 5280 s6
       the leaf is a DeviceID certificate (CA, CN "TRE    RFC 5280 s4.2.1.3, s4.2.1.9
       DeviceID", one UEID, Ed25519, digitalSignature)
    4  outer signature with the DeviceID key               RFC 9052 s4.4
    5  claims: profile, exact claim set, types; the ueid   RFC 9711 s4, s6.3; RFC 8392
       claim is the UEID the DeviceID certificate names
    6  nonce: 8..64 bytes both sides, equal (constant time) RFC 9711 s4.1
    7  bootcount not below the last one seen               RFC 9711 s4.2.11
    8  each submodule: CWT-tagged COSE_Sign1, alg, chain    RFC 9711 s4.2.18.3, s7.3.2
       alias -> THIS DeviceID (an end-entity Ed25519       RFC 8392 s6; TCG DICE
       certificate with digitalSignature), signature,
       claims, TcbInfo agrees with the claims, same ueid
       as the outer token
    9  policy and reference values: TRE lifecycle, domain   (our profile; reference file)
       states, TRE measurement and policy hash, per domain
       measurement, owner hash, min svn, unknown/missing
    10 trustworthiness vector and overall status           draft-ietf-rats-ar4si s2.3

``ca`` is the trust anchor (RFC 5280 section 6.1: trusted because the caller got it by a
trusted path), so step 3 checks every certificate of the evidence and every link up to it,
but not the CA's own self-signature: :func:`attestation.verify_chain` checks that, where a
CA certificate is accepted as an anchor. Certificates and their DiceTcbInfo are *parsed*
through small bounded caches keyed by their exact DER bytes; no check is cached: validity
at ``now``, the chain rules and every signature are checked on every call (step 8 checks
the issuers' CA rules once per appraisal, not once per domain).

The result follows AR4SI (draft-ietf-rats-ar4si, "Attestation Results for Secure
Interactions"): a trustworthiness vector of the claims ``instance-identity``,
``configuration``, ``executables``, ``hardware`` (judged here) and ``file-system``,
``runtime-opaque``, ``storage-opaque``, ``sourced-data`` (always "none": the evidence says
nothing about them), each an AR4SI enumeration value (:attr:`Appraisal.codes`) and its tier
(:attr:`Appraisal.vector`). Within a claim the worst value wins (AR4SI section 2.3.3); the
overall status is the worst tier of the vector, "none" only when no claim has a tier.

Problem codes (stable; :data:`PROBLEMS` maps each to its step, the claim it lowers and the
AR4SI value it sets there). ``*`` means every judged claim::

    step code                      claim               value
    1    malformed-evidence        *                   99  cryptographic validation failed
    1,2  unprotected-header        *                   99
    2    alg-not-allowed           *                   99
    2    unknown-header            *                   99
    3    missing-x5chain           *                   99
    3    untrusted-chain           instance-identity   97  not recognized (others 99)
    3    not-device-cert           instance-identity   97  (others 99)
    4    bad-signature             *                   99
    5    unknown-profile           *                   1   cannot evaluate (status "none")
    5    malformed-claims          instance-identity   96  genuine key, untrustworthy output
    5,6  nonce-length              instance-identity   99  freshness cannot be established
    5    ueid-mismatch             instance-identity   96
    6    nonce-mismatch            instance-identity   99  replayed or not for this verifier
    7    bootcount-rollback        instance-identity   96
    8    submod-malformed          executables         99
    8    submod-alg-not-allowed    executables         99
    8    submod-unprotected-header executables         99
    8    submod-untrusted-chain    executables         99
    8    submod-bad-signature      executables         99
    8    submod-foreign-device     executables         96  lifted from another device
    8    submod-domain-mismatch    executables         96  submods key != domain-id claim
    8    submod-tcb-mismatch       executables         96  alias cert describes another TCB
    9    tre-not-secured           hardware            96  TRE locked or terminated
    9    unknown-lifecycle         hardware            97
    9    domain-locked             executables         96
    9    unknown-domain-state      executables         33
    9    unknown-tre-measurement   hardware            97
    9    unknown-policy            configuration       96
    9    unknown-domain            executables         96  require_all and no entry
    9    unknown-measurement       executables         33  not recognized
    9    svn-too-low               executables         32  known vulnerabilities
    9    owner-mismatch            executables         96
    9    missing-domain            configuration       36  expected domain absent
    -    verifier-error            *                   -1  verifier malfunction (a bug)

When nothing fails, step 10 affirms: ``instance-identity`` 2, ``hardware`` 2, and, with
reference values, ``executables`` 3 (only approved code loaded at boot: a domain's token is
made at boot) when at least one domain matched its entry, ``configuration`` 2 when the
policy hash matched a listed one.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID

from . import _certs
from ._certs import DEVICE_COMMON_NAME, device_ueid, read_tcb_info
from ._cose import ALG_EDDSA, HEADER_ALG, HEADER_X5CHAIN, Sign1, parse_sign1, verify_sign1
from ._eat import MAX_NONCE_SIZE, MIN_NONCE_SIZE, DomainClaims, TreClaims, unwrap_nested
from ._errors import AttestationError, EvidenceError, InvalidIdentity
from ._reference import Reference

__all__ = [
    "AFFIRMING",
    "ALLOWED_ALGS",
    "CONTRAINDICATED",
    "NONE",
    "PROBLEMS",
    "TRUST_CLAIMS",
    "WARNING",
    "Appraisal",
    "tier",
    "verify_evidence",
]

#: AR4SI trustworthiness tiers.
NONE = "none"
AFFIRMING = "affirming"
WARNING = "warning"
CONTRAINDICATED = "contraindicated"
_TIER_RANK = {NONE: 0, AFFIRMING: 1, WARNING: 2, CONTRAINDICATED: 3}

#: The AR4SI trustworthiness claims, in the vector's order.
TRUST_CLAIMS = (
    "instance-identity",
    "configuration",
    "executables",
    "file-system",
    "hardware",
    "runtime-opaque",
    "storage-opaque",
    "sourced-data",
)
#: The claims this verifier can judge from the evidence; the others stay "none".
_JUDGED = ("instance-identity", "configuration", "executables", "hardware")

#: COSE algorithms accepted, outer and nested tokens alike.
ALLOWED_ALGS = frozenset({ALG_EDDSA})
#: Header parameters our profile uses (all protected).
_KNOWN_HEADERS = frozenset({HEADER_ALG, HEADER_X5CHAIN})
#: TRE lifecycle states (tre/_lifecycle.py TREState): the good one, and the bad ones.
_TRE_SECURED = "secured"
_TRE_BAD = frozenset({"locked", "terminated"})
#: Domain lifecycle states (tre/_lifecycle.py DomainLifecycle).
_DOMAIN_OK = frozenset({"installed", "active"})
_DOMAIN_BAD = frozenset({"locked"})

# AR4SI enumeration values used (draft-ietf-rats-ar4si section 2.3.4).
_MALFUNCTION = -1
_UNKNOWN_ELEMENTS = 1
_CRYPTO_FAILED = 99

_ALL = "*"
#: code -> (step, claim or "*", AR4SI value). See the module docstring.
PROBLEMS: Mapping[str, tuple[int, str, int]] = {
    "malformed-evidence": (1, _ALL, _CRYPTO_FAILED),
    "unprotected-header": (2, _ALL, _CRYPTO_FAILED),
    "alg-not-allowed": (2, _ALL, _CRYPTO_FAILED),
    "unknown-header": (2, _ALL, _CRYPTO_FAILED),
    "missing-x5chain": (3, _ALL, _CRYPTO_FAILED),
    "untrusted-chain": (3, "instance-identity", 97),
    "not-device-cert": (3, "instance-identity", 97),
    "bad-signature": (4, _ALL, _CRYPTO_FAILED),
    "unknown-profile": (5, _ALL, _UNKNOWN_ELEMENTS),
    "malformed-claims": (5, "instance-identity", 96),
    "nonce-length": (6, "instance-identity", _CRYPTO_FAILED),
    "ueid-mismatch": (5, "instance-identity", 96),
    "nonce-mismatch": (6, "instance-identity", _CRYPTO_FAILED),
    "bootcount-rollback": (7, "instance-identity", 96),
    "submod-malformed": (8, "executables", _CRYPTO_FAILED),
    "submod-alg-not-allowed": (8, "executables", _CRYPTO_FAILED),
    "submod-unprotected-header": (8, "executables", _CRYPTO_FAILED),
    "submod-untrusted-chain": (8, "executables", _CRYPTO_FAILED),
    "submod-bad-signature": (8, "executables", _CRYPTO_FAILED),
    "submod-foreign-device": (8, "executables", 96),
    "submod-domain-mismatch": (8, "executables", 96),
    "submod-tcb-mismatch": (8, "executables", 96),
    "tre-not-secured": (9, "hardware", 96),
    "unknown-lifecycle": (9, "hardware", 97),
    "domain-locked": (9, "executables", 96),
    "unknown-domain-state": (9, "executables", 33),
    "unknown-tre-measurement": (9, "hardware", 97),
    "unknown-policy": (9, "configuration", 96),
    "unknown-domain": (9, "executables", 96),
    "unknown-measurement": (9, "executables", 33),
    "svn-too-low": (9, "executables", 32),
    "owner-mismatch": (9, "executables", 96),
    "missing-domain": (9, "configuration", 36),
    "verifier-error": (0, _ALL, _MALFUNCTION),
}
# Step 2's codes as step 8 reports them for a nested token.
_NESTED_HEADER_CODES = {
    "alg-not-allowed": "submod-alg-not-allowed",
    "unprotected-header": "submod-unprotected-header",
    "unknown-header": "submod-malformed",
}
# Where a step 1-4 failure sets a claim to something more specific than 99.
_STOP_OVERRIDES = {"untrusted-chain", "not-device-cert"}


def tier(value: int) -> str:
    """The AR4SI tier of an enumeration value (draft-ietf-rats-ar4si section 2.3.2)."""
    if -1 <= value <= 1:
        return NONE
    if 2 <= value <= 31 or -32 <= value <= -2:
        return AFFIRMING
    if 32 <= value <= 95 or -96 <= value <= -33:
        return WARNING
    return CONTRAINDICATED


def _rank(value: int) -> int:
    """Worst wins (AR4SI section 2.3.3); among "none", 1 and -1 say more than 0."""
    if tier(value) == NONE:
        return 0 if value == 0 else 1
    return _TIER_RANK[tier(value)] + 1


@attrs.frozen
class Appraisal:
    """The result of :func:`verify_evidence`: AR4SI-style, JSON-able with :meth:`to_dict`."""

    #: "affirming", "warning", "contraindicated" or "none": the worst tier of the vector.
    status: str
    #: AR4SI trustworthiness claim -> tier.
    vector: Mapping[str, str]
    #: The UEID the evidence claims (known from step 5 on), else None.
    ueid: bytes | None
    #: The boot count the evidence claims (known from step 5 on), else None.
    bootcount: int | None
    #: Domain id -> {"measurement", "owner_hash" (hex or None), "svn", "state", "verdict"
    #: (a tier), "reason" (the first problem code or None), "reasons" (all of them)}.
    domains: Mapping[str, Mapping[str, Any]]
    #: Every problem code found, in the order found, without repeats.
    problems: tuple[str, ...]
    #: AR4SI trustworthiness claim -> enumeration value (-128..127) behind its tier.
    codes: Mapping[str, int] = attrs.field(factory=dict)
    #: One line per problem occurrence, for people and the audit log.
    details: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able data (bytes as lower-case hex)."""
        return {
            "status": self.status,
            "vector": dict(self.vector),
            "codes": dict(self.codes),
            "ueid": None if self.ueid is None else self.ueid.hex(),
            "bootcount": self.bootcount,
            "domains": {
                name: {**entry, "reasons": list(entry["reasons"])}
                for name, entry in self.domains.items()
            },
            "problems": list(self.problems),
            "details": list(self.details),
        }


def _domain_entry() -> dict[str, Any]:
    return {
        "measurement": None,
        "owner_hash": None,
        "svn": None,
        "state": None,
        "verdict": NONE,
        "reason": None,
        "reasons": [],
    }


class _Stop(Exception):
    """A step 1-5 failure: nothing after it can be trusted."""


class _Appraiser:
    """The state of one appraisal; :meth:`run` performs the steps in order."""

    def __init__(
        self,
        evidence: bytes,
        ca: x509.Certificate,
        nonce: bytes,
        now: datetime,
        reference: Reference | None,
        last_bootcount: int | None,
    ) -> None:
        self.evidence = evidence
        self.ca = ca
        self.nonce = nonce
        self.now = now
        self.reference = reference
        self.last_bootcount = last_bootcount
        self.problems: list[tuple[str, str | None, str]] = []
        self.stopped = False
        self.claims: TreClaims | None = None
        self.device_ueid = b""
        self.domains: dict[str, dict[str, Any]] = {}
        self.appraised: dict[str, DomainClaims] = {}
        self.matched: set[str] = set()
        self.policy_matched = False
        # Step 8's check of the issuers' CA rules, made once per appraisal (see submod):
        # None until made, then () when they hold or (the error,) when they do not.
        self.issuers_checked: tuple[Exception, ...] | None = None

    def problem(self, code: str, detail: str, domain: str | None = None) -> None:
        assert code in PROBLEMS, code
        self.problems.append((code, domain, detail))
        if domain is not None:
            self.domains.setdefault(domain, _domain_entry())["reasons"].append(code)

    def stop(self, code: str, detail: str) -> _Stop:
        self.problem(code, detail)
        self.stopped = True
        return _Stop(code)

    # --- steps ----------------------------------------------------------------------------

    def run(self) -> None:
        try:
            msg = self.step1_parse()
            self.step2_headers(msg)
            device, issuers = self.step3_chain(msg)
            self.step4_signature(msg, device)
            claims = self.step5_claims(msg)
        except _Stop:
            return
        self.step6_nonce(claims)
        self.step7_bootcount(claims)
        self.step8_submods(claims, device, issuers)
        self.step9_policy(claims)

    def step1_parse(self) -> Sign1:
        # Step 1. RFC 9052 section 4.2: a COSE_Sign1_Tagged, parsed strictly (tag 18, four
        # items, types, size, deterministic encoding RFC 8949 section 4.2.1).
        try:
            return parse_sign1(self.evidence)
        except EvidenceError as exc:
            raise self.stop(exc.reason, exc.message) from None

    def header_problems(self, msg: Sign1) -> list[tuple[str, str]]:
        # RFC 9052 section 3.1: alg MUST be authenticated, so it must be protected; the
        # allow-list is EdDSA only (RFC 9053 section 2.2). Our profile leaves the
        # unprotected header empty: whatever is there (alg, x5chain, claims) is unsigned
        # and would only invite a parser or policy to trust it.
        found = []
        alg = msg.protected.get(HEADER_ALG)
        if alg is None:
            found.append(("alg-not-allowed", "no alg in the protected header"))
        elif type(alg) is not int or alg not in ALLOWED_ALGS:
            found.append(("alg-not-allowed", f"alg {alg!r} is not in the allow-list (-8)"))
        if msg.unprotected:
            labels = ", ".join(sorted(map(repr, msg.unprotected)))
            found.append(("unprotected-header", f"unprotected header label(s) {labels}"))
        unknown = sorted(map(repr, msg.protected.keys() - _KNOWN_HEADERS))
        if unknown:
            found.append(("unknown-header", f"protected header label(s) {', '.join(unknown)}"))
        return found

    def step2_headers(self, msg: Sign1) -> None:
        # Step 2. Algorithm allow-list and header hygiene (see header_problems).
        found = self.header_problems(msg)
        for code, detail in found:
            self.problem(code, detail)
        if found:
            self.stopped = True
            raise _Stop(found[0][0])

    def step3_chain(self, msg: Sign1) -> tuple[x509.Certificate, list[x509.Certificate]]:
        # Step 3. RFC 9360 section 2: x5chain, leaf first, in the protected header; the
        # leaf chains to the manufacturer CA at `now` (RFC 5280 section 6, verify_chain);
        # and the leaf is a DeviceID certificate (a CA certificate naming one UEID, CN
        # "TRE DeviceID"), so no alias key can sign evidence for the whole TRE.
        if not msg.x5chain:
            raise self.stop("missing-x5chain", "no x5chain in the protected header")
        device = msg.x5chain[0]
        intermediates = list(msg.x5chain[1:])
        if intermediates and intermediates[-1] == self.ca:
            intermediates = intermediates[:-1]
        # The CA is the verifier's trust anchor (RFC 5280 section 6.1: trusted because it
        # was delivered by a trusted path), so this is verify_chain without the check of
        # the CA's self-signature, which proves nothing about a root already trusted (see
        # _certs._verify_path); every certificate of the evidence and every link to the CA
        # is checked, at `now`, on every appraisal.
        try:
            _certs._verify_path(device, intermediates, self.ca, self.now)
        except AttestationError as exc:
            raise self.stop("untrusted-chain", exc.message) from None
        except ValueError as exc:  # a certificate field cryptography cannot parse
            raise self.stop("untrusted-chain", str(exc)) from None
        problem = _signer_problem(device, ca=True)
        if problem is None:
            names = device.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            if [n.value for n in names] != [DEVICE_COMMON_NAME]:
                problem = f"its common name is not {DEVICE_COMMON_NAME!r}"
        if problem is None:
            try:
                self.device_ueid = device_ueid(device)
            except InvalidIdentity as exc:
                problem = exc.message
        if problem is not None:
            raise self.stop("not-device-cert", f"the signer is not a DeviceID: {problem}")
        return device, [device, *intermediates, self.ca]

    def step4_signature(self, msg: Sign1, device: x509.Certificate) -> None:
        # Step 4. RFC 9052 section 4.4: the signature over the Sig_structure, with the key
        # of the certificate step 3 trusted.
        public = device.public_key()
        assert isinstance(public, Ed25519PublicKey)  # step 3
        try:
            verify_sign1(msg, public, allowed_algs=ALLOWED_ALGS)
        except EvidenceError as exc:
            raise self.stop(exc.reason, exc.message) from None

    def step5_claims(self, msg: Sign1) -> TreClaims:
        # Step 5. RFC 9711 section 6.3 (our profile): eat_profile, exactly the claims the
        # profile defines, each of its type (RFC 8392, RFC 9711 section 4).
        try:
            claims = TreClaims.from_wire(msg.payload)
        except EvidenceError as exc:
            raise self.stop(exc.reason, exc.message) from None
        self.claims = claims
        # The ueid claim names the device whose certificate signed (RFC 9711 section 4.2.1).
        if claims.ueid != self.device_ueid:
            self.problem("ueid-mismatch", "the ueid claim is not the DeviceID's UEID")
        return claims

    def step6_nonce(self, claims: TreClaims) -> None:
        # Step 6. RFC 9711 section 4.1: 8 to 64 bytes on both sides; equal, compared in
        # constant time. The evidence side was checked in step 5.
        if not MIN_NONCE_SIZE <= len(self.nonce) <= MAX_NONCE_SIZE:
            self.problem("nonce-length", f"the verifier's nonce is {len(self.nonce)} bytes")
        elif not hmac.compare_digest(claims.nonce, self.nonce):
            self.problem("nonce-mismatch", "the evidence was not made for this nonce")

    def step7_bootcount(self, claims: TreClaims) -> None:
        # Step 7. RFC 9711 section 4.2.11: the boot count only grows on a device.
        if self.last_bootcount is not None and claims.bootcount < self.last_bootcount:
            self.problem(
                "bootcount-rollback",
                f"bootcount {claims.bootcount} is below the last seen {self.last_bootcount}",
            )

    def step8_submods(
        self, claims: TreClaims, device: x509.Certificate, issuers: Sequence[x509.Certificate]
    ) -> None:
        # Step 8. RFC 9711 section 4.2.18.3: each submodule is a nested token with its own
        # attesting environment (the domain's alias key); its chain must end at THIS
        # evidence's DeviceID, or it could be lifted from another device.
        for domain in sorted(claims.submods):
            self.domains[domain] = _domain_entry()
            appraised = self.submod(domain, claims.submods[domain], claims, device, issuers)
            if appraised is not None:
                self.appraised[domain] = appraised

    def submod(
        self,
        domain: str,
        data: bytes,
        outer: TreClaims,
        device: x509.Certificate,
        issuers: Sequence[x509.Certificate],
    ) -> DomainClaims | None:
        entry = self.domains[domain]
        # 8a. bstr .cbor 61(18([...])) (RFC 9711 section 7.3.2, RFC 8392 section 6).
        try:
            msg = parse_sign1(unwrap_nested(data))
        except EvidenceError as exc:
            self.problem(
                _NESTED_HEADER_CODES.get(exc.reason, "submod-malformed"), exc.message, domain
            )
            return None
        # 8b. Same header rules as step 2.
        found = self.header_problems(msg)
        for code, detail in found:
            self.problem(_NESTED_HEADER_CODES[code], detail, domain)
        if found:
            return None
        # 8c. x5chain = [alias]; the alias certificate was issued by THIS DeviceID:
        # verify_chain(alias, [device, ...], ca, now), the links step 3 checked skipped.
        if len(msg.x5chain) != 1:
            self.problem(
                "submod-untrusted-chain",
                "a nested x5chain is exactly the alias certificate",
                domain,
            )
            return None
        alias = msg.x5chain[0]
        if alias.issuer != device.subject:
            self.problem(
                "submod-foreign-device",
                "the alias certificate was issued by another DeviceID",
                domain,
            )
            return None
        try:
            _verify_alias(alias, issuers, self.now, issuers_checked=self.check_issuers(issuers))
        except AttestationError as exc:
            self.problem("submod-untrusted-chain", exc.message, domain)
            return None
        except ValueError as exc:  # a certificate field cryptography cannot parse
            self.problem("submod-untrusted-chain", str(exc), domain)
            return None
        problem = _signer_problem(alias, ca=False)
        if problem is not None:
            self.problem("submod-untrusted-chain", f"not an alias certificate: {problem}", domain)
            return None
        public = alias.public_key()
        assert isinstance(public, Ed25519PublicKey)  # _signer_problem
        # 8d. RFC 9052 section 4.4, with the alias key.
        try:
            verify_sign1(msg, public, allowed_algs=ALLOWED_ALGS)
        except EvidenceError as exc:
            code = "submod-bad-signature" if exc.reason == "bad-signature" else "submod-malformed"
            self.problem(code, exc.message, domain)
            return None
        # 8e. The claims, strictly (as step 5).
        try:
            claims = DomainClaims.from_wire(msg.payload)
        except EvidenceError as exc:
            self.problem("submod-malformed", exc.message, domain)
            return None
        entry.update(
            measurement=claims.measurement.hex(),
            owner_hash=claims.owner_hash.hex(),
            svn=claims.svn,
            state=claims.state,
        )
        ok = True
        # 8f. The submods label is the domain the token is about.
        if claims.domain_id != domain:
            self.problem(
                "submod-domain-mismatch", f"the token is about {claims.domain_id!r}", domain
            )
            ok = False
        # 8g. The DiceTcbInfo the DeviceID certified says the same (TCG DICE).
        try:
            tcb = read_tcb_info(alias)
        except InvalidIdentity as exc:
            self.problem("submod-tcb-mismatch", exc.message, domain)
            return None
        if (tcb["domain_id"], tcb["measurement"], tcb["owner_hash"], tcb["svn"]) != (
            claims.domain_id,
            claims.measurement,
            claims.owner_hash,
            claims.svn,
        ):
            self.problem(
                "submod-tcb-mismatch",
                "the alias certificate's TcbInfo does not match the token's claims",
                domain,
            )
            ok = False
        # 8h. Same entity: the nested ueid is the outer one (RFC 9711 section 4.2.1).
        if claims.ueid != outer.ueid:
            self.problem("submod-foreign-device", "the token names another UEID", domain)
            ok = False
        return claims if ok else None

    def check_issuers(self, issuers: Sequence[x509.Certificate]) -> tuple[Exception, ...]:
        # The CA rules of the DeviceID, its intermediates and the CA one level deeper than
        # step 3 checked them (each now has an alias certificate below it): the same
        # certificates for every domain, so checked once per appraisal, and an error found
        # is reported for every domain, as if checked each time.
        if self.issuers_checked is None:
            try:
                _check_issuers(issuers)
            except (AttestationError, ValueError) as exc:  # as submod handles them
                self.issuers_checked = (exc,)
            else:
                self.issuers_checked = ()
        return self.issuers_checked

    def step9_policy(self, claims: TreClaims) -> None:
        # Step 9a. Lifecycle states (tre/_lifecycle.py): only a secured TRE and installed
        # or active domains are trustworthy.
        if claims.lifecycle in _TRE_BAD:
            self.problem("tre-not-secured", f"the TRE is {claims.lifecycle}")
        elif claims.lifecycle != _TRE_SECURED:
            self.problem("unknown-lifecycle", f"unknown TRE lifecycle {claims.lifecycle!r}")
        for domain, domain_claims in self.appraised.items():
            if domain_claims.state in _DOMAIN_BAD:
                self.problem("domain-locked", f"the domain is {domain_claims.state}", domain)
            elif domain_claims.state not in _DOMAIN_OK:
                self.problem(
                    "unknown-domain-state", f"unknown state {domain_claims.state!r}", domain
                )
        reference = self.reference
        if reference is None:
            return
        # Step 9b. Reference values for the TRE itself, when listed.
        if reference.tre_measurements and claims.tre_measurement not in reference.tre_measurements:
            self.problem("unknown-tre-measurement", "the TRE measurement is not listed")
        if reference.policy_hashes:
            if claims.policy_hash in reference.policy_hashes:
                self.policy_matched = True
            else:
                self.problem("unknown-policy", "the policy hash is not listed")
        # Step 9c. Reference values per domain.
        for domain, domain_claims in self.appraised.items():
            expected = reference.domains.get(domain)
            if expected is None:
                if reference.require_all:
                    self.problem("unknown-domain", "no reference values for it", domain)
                continue
            ok = True
            if domain_claims.measurement not in expected.measurements:
                self.problem("unknown-measurement", "measurement not in the reference", domain)
                ok = False
            if expected.owner_hash is not None and not hmac.compare_digest(
                domain_claims.owner_hash, expected.owner_hash
            ):
                self.problem("owner-mismatch", "another owner key signed it", domain)
                ok = False
            if domain_claims.svn < expected.min_svn:
                self.problem(
                    "svn-too-low", f"svn {domain_claims.svn} < minimum {expected.min_svn}", domain
                )
                ok = False
            if ok:
                self.matched.add(domain)
        for domain in sorted(reference.domains.keys() - claims.submods.keys()):
            self.domains[domain] = _domain_entry()
            self.problem(
                "missing-domain", "listed in the reference, absent from the evidence", domain
            )

    # --- step 10 --------------------------------------------------------------------------

    def result(self) -> Appraisal:
        # Step 10. draft-ietf-rats-ar4si section 2.3: one value per claim, the worst wins;
        # the status is the worst tier, "none" if no claim has one.
        codes = dict.fromkeys(TRUST_CLAIMS, 0)

        def lower(claim: str, value: int) -> None:
            if _rank(value) > _rank(codes[claim]):
                codes[claim] = value

        for code, _domain, _detail in self.problems:
            _step, claim, value = PROBLEMS[code]
            if claim == _ALL:
                for judged in _JUDGED:
                    lower(judged, value)
            else:
                lower(claim, value)
                if self.stopped and code in _STOP_OVERRIDES:
                    for judged in _JUDGED:
                        lower(judged, _CRYPTO_FAILED if judged != claim else value)
        if self.stopped and any(PROBLEMS[c][0] == 5 for c, _d, _t in self.problems):
            for judged in _JUDGED:
                lower(judged, _UNKNOWN_ELEMENTS)
        if not self.stopped and self.claims is not None:
            lower("instance-identity", 2)  # recognized, not known to be compromised
            lower("hardware", 2)  # genuine TRE (manufacturer chain), secured
            if self.reference is not None and self.matched:
                lower("executables", 3)  # only approved executables loaded at boot
            if self.policy_matched:
                lower("configuration", 2)  # a known and approved configuration
        vector = {claim: tier(value) for claim, value in codes.items()}
        ranked = [t for t in vector.values() if t != NONE]
        status = max(ranked, key=_TIER_RANK.__getitem__) if ranked else NONE
        domains: dict[str, dict[str, Any]] = {}
        for name in sorted(self.domains):
            entry = dict(self.domains[name])
            reasons = list(dict.fromkeys(entry["reasons"]))
            entry["reasons"] = reasons
            entry["reason"] = reasons[0] if reasons else None
            tiers = [tier(PROBLEMS[r][2]) for r in reasons]
            if tiers:
                entry["verdict"] = max(tiers, key=_TIER_RANK.__getitem__)
            elif name in self.matched:
                entry["verdict"] = AFFIRMING
            domains[name] = entry
        claims = self.claims
        return Appraisal(
            status=status,
            vector=vector,
            codes=codes,
            ueid=None if claims is None else claims.ueid,
            bootcount=None if claims is None else claims.bootcount,
            domains=domains,
            problems=tuple(dict.fromkeys(code for code, _d, _t in self.problems)),
            details=tuple(
                f"{code}: {domain}: {detail}" if domain else f"{code}: {detail}"
                for code, domain, detail in self.problems
            ),
        )


def _signer_problem(cert: x509.Certificate, *, ca: bool) -> str | None:
    """Why ``cert`` cannot sign tokens, or None. An Ed25519 key with keyUsage
    digitalSignature (RFC 5280 section 4.2.1.3: it signs something other than
    certificates); a CA certificate for the DeviceID (``ca``), never for an alias."""
    try:
        public = cert.public_key()
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (x509.ExtensionNotFound, ValueError, UnsupportedAlgorithm) as exc:
        return str(exc)
    if not isinstance(public, Ed25519PublicKey):
        return "its key is not Ed25519"
    if not usage.digital_signature:
        return "its keyUsage lacks digitalSignature"
    if constraints.ca != ca:
        return "it is a CA certificate" if constraints.ca else "it is not a CA certificate"
    return None


def _check_issuers(issuers: Sequence[x509.Certificate]) -> None:
    """The CA rules of ``issuers`` (the DeviceID first) as issuers of an alias certificate:
    each may have ``below`` CAs under it (RFC 5280 section 4.2.1.9, 4.2.1.3)."""
    for below, issuer in enumerate(issuers):
        _certs._check_ca(issuer, below)


def _verify_alias(
    alias: x509.Certificate,
    issuers: Sequence[x509.Certificate],
    now: datetime,
    *,
    issuers_checked: tuple[Exception, ...] | None = None,
) -> None:
    """``verify_chain(alias, issuers[:-1], issuers[-1], now)`` for ``issuers`` = the
    DeviceID, its intermediates and the CA, which step 3 verified as a chain at the same
    ``now``: so only what is new is checked here, the alias certificate itself, each issuer's
    CA constraints one level deeper, and the alias <- DeviceID signature. Same rules, half
    the signature checks per domain. ``issuers_checked`` is the outcome of
    :func:`_check_issuers` for these ``issuers`` when the caller has already made it in this
    appraisal (``()``: they hold; ``(error,)``: raise it), in the same order as made here."""
    _certs._check_cert(alias, now)
    if issuers_checked is None:
        _check_issuers(issuers)
    elif issuers_checked:
        raise issuers_checked[0].with_traceback(None)  # the same error, a fresh traceback
    _certs._check_signed(alias, issuers[0])


def verify_evidence(
    evidence: bytes,
    *,
    ca: x509.Certificate,
    nonce: bytes,
    now: datetime,
    reference: Reference | None = None,
    last_bootcount: int | None = None,
) -> Appraisal:
    """Appraise ``evidence`` (what :func:`attestation.tre_token` made) against the
    manufacturer ``ca``, the ``nonce`` this verifier issued, the time ``now`` (aware; taken
    once for every check), optional ``reference`` values and the ``last_bootcount`` seen
    for this device. Never raises for bad evidence (see the module docstring)."""
    if not isinstance(evidence, bytes):
        raise TypeError(f"evidence must be bytes, not {type(evidence).__name__}")
    if not isinstance(ca, x509.Certificate):
        raise TypeError(f"ca must be an x509.Certificate, not {type(ca).__name__}")
    if not isinstance(nonce, bytes):
        raise TypeError(f"nonce must be bytes, not {type(nonce).__name__}")
    if not isinstance(now, datetime):
        raise TypeError(f"now must be a datetime, not {type(now).__name__}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if reference is not None and not isinstance(reference, Reference):
        raise TypeError(f"reference must be a Reference, not {type(reference).__name__}")
    if last_bootcount is not None and (type(last_bootcount) is not int or last_bootcount < 0):
        raise TypeError("last_bootcount must be a non-negative int or None")
    appraiser = _Appraiser(evidence, ca, nonce, now.astimezone(UTC), reference, last_bootcount)
    try:
        appraiser.run()
    except Exception as exc:  # a bug, never bad evidence: fail closed, say so
        appraiser.problem("verifier-error", f"{type(exc).__name__}: {exc}")
        appraiser.stopped = True
    return appraiser.result()
