"""The DICE known-answer vectors: fixed inputs, and the library's outputs for them.

``vectors/dice-kat.json`` was generated once by running this module::

    .venv/bin/python -m tests.attestation._vectors

and must never be regenerated to make a failing test pass: a change in any expected value
means every device's keys change (a new format needs a new version tag, ``tre/v2/``).
test_dice.py checks the file against the library *and* against an independent, from-scratch
implementation of the documented formulas.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import attestation

PATH = Path(__file__).parent / "vectors" / "dice-kat.json"

INPUTS: dict[str, Any] = {
    "uds": bytes(range(32)).hex(),
    "tre_measurement": bytes(range(32, 64)).hex(),
    "authority": bytes(range(64, 96)).hex(),
    "domain_id": "meter",
    "code_hash": bytes(range(96, 128)).hex(),
    "manifest_hash": bytes(range(128, 160)).hex(),
    # The owner's Ed25519 key is the one with this seed.
    "owner_seed": bytes(range(160, 192)).hex(),
    "svn": 2,
    "key_purpose": "storage",
    "files": [["pkg/b.txt", ""], ["a.py", "print('hi')\n"], ["pkg/__init__.py", "x = 1\n"]],
}


def _raw_public(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes_raw().hex()


def compute(inputs: dict[str, Any]) -> dict[str, str]:
    """The library's outputs for ``inputs``, as hex."""
    uds = attestation.Secret(bytes.fromhex(inputs["uds"]))
    tre = attestation.tre_cdis(
        uds, bytes.fromhex(inputs["tre_measurement"]), bytes.fromhex(inputs["authority"])
    )
    owner_public = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(inputs["owner_seed"]))
    owner_raw = owner_public.public_key().public_bytes_raw()
    owner_hash = attestation.owner_key_hash(owner_raw)
    measurement = attestation.measure_domain(
        bytes.fromhex(inputs["code_hash"]),
        bytes.fromhex(inputs["manifest_hash"]),
        owner_hash,
        inputs["svn"],
    )
    domain = attestation.domain_cdis(tre, inputs["domain_id"], measurement)
    files = [(path, content.encode()) for path, content in inputs["files"]]
    return {
        "device_id_public": _raw_public(attestation.device_id_key(uds)),
        "tre_cdi_attest": tre.attest.reveal().hex(),
        "tre_cdi_seal": tre.seal.reveal().hex(),
        "owner_public": owner_raw.hex(),
        "owner_key_hash": owner_hash.hex(),
        "authority_hash_of_owner_public": attestation.authority_hash(owner_raw).hex(),
        "domain_measurement": measurement.hex(),
        "domain_cdi_attest": domain.attest.reveal().hex(),
        "domain_cdi_seal_measurement": domain.seal_measurement.reveal().hex(),
        "alias_public": _raw_public(attestation.alias_key(domain)),
        "owner_seal_key_svn1": attestation.owner_seal_key(tre, inputs["domain_id"], owner_hash, 1)
        .reveal()
        .hex(),
        "owner_seal_key_svn2": attestation.owner_seal_key(tre, inputs["domain_id"], owner_hash, 2)
        .reveal()
        .hex(),
        "derived_key": attestation.derive_key(tre.seal, inputs["key_purpose"]).reveal().hex(),
        "files_hash": attestation.hash_files(files).hex(),
    }


def main() -> None:
    data = {
        "description": (
            "Known answers for attestation's DICE derivations (tre/v1). Inputs are hex "
            "except domain_id, svn, key_purpose and files ([path, utf-8 content]). "
            "derived_key is derive_key(tre_cdi_seal, key_purpose). "
            "authority_hash_of_owner_public is authority_hash() of the owner's public key, "
            "only to pin that formula."
        ),
        "inputs": INPUTS,
        "expected": compute(INPUTS),
    }
    PATH.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
