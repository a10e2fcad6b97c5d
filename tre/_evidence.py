"""Remote attestation evidence (R9, R16): an EAT the TRE signs for a verifier's nonce.

The evidence is an Entity Attestation Token (RFC 9711) in a COSE_Sign1 CWT signed by the
DeviceID key, carrying the verifier's nonce, the UEID, the boot count, the TRE's own
measurement, the hash of the compiled policy, and one submodule per domain: a nested token
signed by that domain's alias key with its measurement, owner hash, svn and lifecycle
state. The nested tokens carry no nonce, so they are signed once per boot and reused (the
outer signature binds them to the nonce); the certificates travel in each token's x5chain.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import attestation

if TYPE_CHECKING:
    from ._device import Device
    from ._integrity import IntegrityMonitor
    from ._keystore import DomainKeys

__all__ = ["EvidenceMaker"]


class EvidenceMaker:
    """Makes evidence for one boot of a device; domain tokens are made once and cached."""

    def __init__(
        self, device: Device, policy_hash: bytes, domains: Mapping[str, DomainKeys]
    ) -> None:
        self._device = device
        self._policy_hash = policy_hash
        self._domains = dict(domains)
        self._tokens: dict[str, bytes] | None = None
        self.gate: IntegrityMonitor | None = None
        self._template: attestation.TreTokenTemplate | None = None
        self._template_key: tuple[int, object] = (-1, None)

    def _domain_tokens(self) -> dict[str, bytes]:
        if self._tokens is None:
            device = self._device
            iat = int(time.time())
            tokens = {}
            for domain_id, keys in sorted(self._domains.items()):
                alias, measurement, owner_hash = keys.identity()
                record = device.records.get(domain_id)
                tokens[domain_id] = attestation.domain_token(
                    alias,
                    device.alias_certificate(keys),
                    ueid=device.ueid,
                    domain_id=domain_id,
                    measurement=measurement,
                    owner_hash=owner_hash,
                    svn=keys.svn,
                    state=record.state.value if record is not None else "active",
                    iat=iat,
                )
            self._tokens = tokens
        return self._tokens

    @property
    def policy_hash(self) -> bytes:
        return self._policy_hash

    def domain_keys(self) -> dict[str, DomainKeys]:
        return dict(self._domains)

    def forget(self) -> None:
        """Make the tokens again at the next request (a domain's state changed)."""
        self._tokens = None
        self._template = None

    def evidence(self, nonce: bytes) -> bytes:
        """Sign the evidence for ``nonce``. Everything but the nonce and the time is checked
        and encoded once per boot (and again after :meth:`forget`)."""
        if self.gate is not None and not self.gate.fresh:
            self.gate.require()  # attestation relies on integrity
        device = self._device
        template = self._template
        if template is None or self._template_key != (device.boot_count, device.tre_state):
            template = self._template = attestation.TreTokenTemplate(
                device.device_key,
                device.device_cert,
                ueid=device.ueid,
                bootcount=device.boot_count,
                tre_measurement=device.tre_measurement,
                policy_hash=self._policy_hash,
                lifecycle=device.tre_state.value,
                submods=self._domain_tokens(),
            )
            self._template_key = (device.boot_count, device.tre_state)
        return template.sign(nonce, int(time.time()))
