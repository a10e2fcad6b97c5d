"""The child process of tests/hostile/test_install_kill9.py: install updates until killed.

Usage: ``python install_kill9_child.py STATE OWNER_KEY FIRST_COUNTER``

Installs ledger packages (tests/install_helpers.py) with counters FIRST_COUNTER,
FIRST_COUNTER+1, ... on the device in STATE, each signed with the owner key in the PEM
file OWNER_KEY and asking for ``migrate = "owner"`` (so every update also re-seals the
domain's MEASUREMENT-bound rows in its transaction). Each install is announced on stdout,
flushed, before it starts (``begin N``) and after it returned (``done N``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import attestation
from tests.install_helpers import LEDGER, ledger_files
from tre._install import install_package


def main(state: Path, owner_key: Path, first: int) -> None:
    key = attestation.load_private_key_pem(owner_key.read_bytes())
    assert isinstance(key, Ed25519PrivateKey)
    counter = first
    while True:
        files = ledger_files(counter)
        envelope = attestation.make_package(
            target=f"domain:{LEDGER}",
            counter=counter,
            expires=int(time.time()) + 3600,
            files=files,
            migrate="owner",
            signers=[key],
        )
        print("begin", counter, flush=True)
        install_package(state, envelope, files)
        print("done", counter, flush=True)
        counter += 1


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
