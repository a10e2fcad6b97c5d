"""Scaffolding for the install, update, removal and transfer tests.

:class:`Site` is a factory plus a device provisioned with ``oem`` and a host grant for the
test domain ``ledger``, which never ships with the device: it arrives as a package. Its
code carries a ``VERSION`` so a test can tell which version runs, and services that keep
records and seal data under either policy, to see what an update, removal or transfer does
to them. Packages are built in-process with :func:`attestation.make_package`.

Tests that boot a TRE on the state folder use worker threads for SQLite: real clock, no
``autojump_clock``, bounded with ``trio.fail_after``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import attestation
import tre
from tests.device_helpers import db_rows, make_factory, provision_device, write_config
from tre._install import install_package, remove_domain, transfer_domain
from tre._root import new_root, rotate_state

__all__ = ["LEDGER", "Site", "ledger_files", "raw_public"]

LEDGER = "ledger"
METHODS = ("version", "put", "get", "seal", "unseal", "keys")

MANIFEST = """\
id = "{id}"
owner = "Ledger Ltd"
version = "1.{version}.0"
svn = {svn}
entry = "ledger:Ledger"
boot_order = 60
{services}
"""

CODE = '''\
"""The ledger test domain, version {version}."""

from typing import Any

import tre

VERSION = {version}


class Ledger(tre.Domain):
    @tre.service
    async def version(self, caller: str, body: Any) -> int:
        return VERSION

    @tre.service
    async def put(self, caller: str, body: Any) -> bool:
        await self.ctx.keystore.put_record(body["label"], body["data"], policy=body["policy"])
        return True

    @tre.service
    async def get(self, caller: str, body: Any) -> bytes:
        try:
            return self.ctx.keystore.record(body)
        except tre.KeystoreError as exc:
            raise tre.ServiceError(exc.code, "no such record") from None

    @tre.service
    async def seal(self, caller: str, body: Any) -> bytes:
        return self.ctx.keystore.seal(body["data"], body["policy"])

    @tre.service
    async def unseal(self, caller: str, body: Any) -> bytes:
        try:
            return self.ctx.keystore.unseal(body)
        except tre.UnsealError:
            raise tre.ServiceError("UNSEAL", "cannot open") from None

    @tre.service
    async def keys(self, caller: str, body: Any) -> list[str]:
        return sorted(k.label for k in self.ctx.keystore.list() if k.available)
'''


def ledger_files(
    version: int = 1, *, svn: int = 1, domain_id: str = LEDGER, extra: Mapping[str, bytes] = {}
) -> dict[str, bytes]:
    services = "\n".join(f'[services.{m}]\nallow = ["host"]' for m in METHODS)
    return {
        "domain.toml": MANIFEST.format(
            id=domain_id, version=version, svn=svn, services=services
        ).encode(),
        "ledger.py": CODE.format(version=version).encode(),
        **extra,
    }


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class Site:
    """A factory, a provisioned device, and owner keys for the ledger."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.factory = make_factory(tmp / "factory")
        grants = '[[host.calls]]\ndomain = "ledger"\nmethods = [{}]\n'.format(
            ", ".join(f'"{m}"' for m in METHODS)
        )
        config = write_config(tmp / "config", enable=("oem",), holder=False, extra=grants)
        self.state = tmp / "state"
        provision_device(self.state, self.factory, config=config)
        self.owner = Ed25519PrivateKey.generate()
        self.delegate(LEDGER, self.owner)

    def factory_key(self, name: str) -> Ed25519PrivateKey:
        key = attestation.load_private_key_pem(
            (self.factory / "owners" / f"{name}.key").read_bytes()
        )
        assert isinstance(key, Ed25519PrivateKey)
        return key

    def delegate(self, domain: str, key: Ed25519PrivateKey) -> None:
        """Root N+1 delegating ``domain`` to ``key``, built at the factory and rotated in."""
        path = new_root(
            self.factory,
            add_owners={domain: raw_public(key)},
            drop_owners=(),
            new_keys=None,
            threshold=None,
            expires_days=365,
        )
        rotate_state(self.state, path.read_bytes(), int(time.time()))

    def package(
        self,
        counter: int,
        files: Mapping[str, bytes] | None = None,
        *,
        signers: Sequence[Ed25519PrivateKey] | None = None,
        target: str = "domain:" + LEDGER,
        expires: int | None = None,
        migrate: str | None = None,
    ) -> tuple[bytes, dict[str, bytes]]:
        files = dict(files if files is not None else ledger_files(counter))
        envelope = attestation.make_package(
            target=target,
            counter=counter,
            expires=int(time.time()) + 3600 if expires is None else expires,
            files=files,
            migrate=migrate,
            signers=[self.owner] if signers is None else signers,
        )
        return envelope, files

    def install(self, counter: int, **kwargs: Any) -> dict[str, Any]:
        envelope, files = self.package(counter, **kwargs)
        return install_package(self.state, envelope, files)

    def transfer(self, envelope: bytes, files: Mapping[str, bytes]) -> dict[str, Any]:
        return transfer_domain(self.state, LEDGER, envelope, files)

    def remove(self, domain: str = LEDGER) -> dict[str, Any]:
        return remove_domain(self.state, domain)

    def row(self, domain: str = LEDGER) -> tuple[Any, ...]:
        (row,) = db_rows(
            self.state, "SELECT state, counter, source, svn FROM domains WHERE id = ?", domain
        )
        return row

    def snapshot(self) -> tuple[Any, ...]:
        """Everything an install may change: rows and the files of installed packages."""
        files = sorted(
            (str(p.relative_to(self.state)), p.read_bytes())
            for p in (self.state / "domains").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        )
        return (
            db_rows(self.state, "SELECT * FROM domains ORDER BY id"),
            db_rows(self.state, "SELECT * FROM keys ORDER BY domain, label"),
            db_rows(self.state, "SELECT value FROM meta WHERE key = 'root'"),
            files,
        )

    @contextlib.asynccontextmanager
    async def boot(self) -> AsyncIterator[tre.TRE]:
        with trio.fail_after(30):
            async with tre.open_tre(state=self.state, lifecycle_poll=3600) as t:
                yield t
