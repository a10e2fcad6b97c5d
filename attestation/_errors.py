"""The attestation subtree of the error tree rooted at :class:`ipc.TREError`."""

from __future__ import annotations

from ipc import TREError

__all__ = ["AttestationError", "InvalidIdentity"]


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
