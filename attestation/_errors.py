"""The attestation subtree of the error tree rooted at :class:`ipc.TREError`."""

from __future__ import annotations

from ipc import TREError

__all__ = ["AttestationError", "EvidenceError", "InvalidIdentity", "InvalidReference"]


class AttestationError(TREError):
    """Identity or evidence could not be produced or did not verify.

    Raised, for instance, by :func:`attestation.verify_chain` when a certificate chain is
    broken, expired or badly constrained. The message names the certificate and the rule
    it broke (for the audit log); it never contains key material or any other secret.
    """

    code = "ATTESTATION"


class InvalidIdentity(AttestationError):
    """An input to an identity function is malformed.

    A bad IMEI or UEID, a hash of the wrong length, an svn out of range, a domain id the
    derivations cannot carry unambiguously, a naive datetime, PEM that is not an Ed25519
    key or certificate, a malformed TcbInfo extension. Raised before anything is derived
    or signed, so a caller never gets a key or certificate built from a bad input.
    """

    code = "INVALID_IDENTITY"


class EvidenceError(AttestationError):
    """Evidence (a COSE_Sign1 token or its claims) is malformed or does not verify.

    Raised by the strict parsers and by :func:`attestation.verify_sign1`; never by
    :func:`attestation.verify_evidence`, which turns every such error into a problem code of
    its :class:`attestation.Appraisal`. ``reason`` is that stable, machine-readable code
    (``"malformed-evidence"``, ``"alg-not-allowed"``, ``"unprotected-header"``,
    ``"bad-signature"``, ``"malformed-claims"``, ``"nonce-length"``, ``"unknown-profile"``);
    the message says which rule broke, for people. Unlike :class:`InvalidIdentity`, which
    is about inputs *we* were given to produce something, this is about bytes someone else
    produced.
    """

    code = "EVIDENCE"

    def __init__(self, message: str = "", *, reason: str = "malformed-evidence") -> None:
        super().__init__(message or reason)
        self.reason = reason

    def __repr__(self) -> str:
        return f"EvidenceError(reason={self.reason!r}, message={self.message!r})"


class InvalidReference(AttestationError):
    """A reference-values document (see :func:`attestation.parse_reference`) is malformed.

    The message names the offending key (``domains.oem.min_svn``) and the rule it broke.
    """

    code = "INVALID_REFERENCE"
