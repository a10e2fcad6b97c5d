"""Per-domain keystores through a domain's own context (issue 3, sections 3 and 5).

The domain under test is the fixture plugin ``tests/tre/data/keystore/ksdomain``: its
``ks`` service runs one method of ``self.ctx.keystore`` and answers with the result, or
with the keystore error's code, which :func:`ks` turns back into that error class. Tests
copy the folder into ``tmp_path`` (:func:`make_plugin`), so they can give it another id,
svn, quotas or one changed byte of code.

Without a state folder a TRE runs on a throw-away in-memory device; the sealing-policy
tests provision a real state folder (:func:`provision_state`) and boot it several times.
Those do SQLite I/O in worker threads, so they never use ``autojump_clock``.

The helpers here are also used by tests/hostile/test_keystore_hostile.py and
tests/hostile/test_crash_kill9.py.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import attestation
import ipc
import tre
from tests.domains.test_aka import AMF as MID_AMF
from tests.domains.test_aka import OPC as MID_OPC
from tests.domains.test_aka import RAND as MID_RAND
from tests.domains.test_aka import SQN as MID_SQN
from tests.domains.test_aka import K as MID_K
from tests.domains.test_aka import make_autn
from tests.tre.test_audit import audit_log
from tre import KeyKind, SealPolicy
from tre._aka import Resync, Success
from tre._device import COUNTER_FILE, DB_FILE, UDS_FILE, Device
from tre._factory import factory_init
from tre._integrity_seal import seal_state
from tre._keystore import DomainKeys, Keystore
from tre._manifest import load_manifest
from tre._midpackage import hpke_seal, mid_info
from tre._provision import provision
from tre.testing import load_domain_dir, open_test_tre

FIXTURE = Path(__file__).parent / "data" / "keystore" / "ksdomain"
CODE_FILE = "keystore_probe.py"
CODE_MARKER = b"# code variant: "
D = "ksdomain"  # the fixture's own id
SERVICES = frozenset({"ks", "agree", "handoff"})  # what the host may call
#: the kinds generate() makes (milenage keys are imported, records written)
GENERATED = [KeyKind.ED25519, KeyKind.X25519, KeyKind.AEAD, KeyKind.HMAC]

KEYSTORE_ERRORS: dict[str, type[tre.KeystoreError]] = {
    cls.code: cls
    for cls in (
        tre.KeystoreError,
        tre.NoSuchKey,
        tre.KeyExists,
        tre.WrongKeyKind,
        tre.KeyQuotaExceeded,
        tre.KeyUnavailable,
        tre.UnsealError,
        tre.KeystoreLocked,
    )
}


# --- helpers (shared with tests/hostile/test_keystore_hostile.py) -----------------------------


def make_plugin(
    root: Path,
    domain_id: str = D,
    *,
    svn: int = 2,
    allow: Sequence[str] = ("host",),
    calls: Mapping[str, Sequence[str]] | None = None,
    quotas: Mapping[str, int] | None = None,
) -> Path:
    """A copy of the fixture plugin folder under ``root``, with its manifest rewritten."""
    folder = root / f"plugin-{domain_id}"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = folder / "domain.toml"
    text = manifest.read_text(encoding="utf-8")
    text = re.sub(r'^id = ".*"$', f'id = "{domain_id}"', text, count=1, flags=re.M)
    text = text.replace('allow = ["host"]', f"allow = {json.dumps(list(allow))}")
    for key, value in (quotas or {}).items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        if not n:
            text = text.replace("[quotas]\n", f"[quotas]\n{key} = {value}\n")
    for callee, methods in (calls or {}).items():
        text += f'\n[[calls]]\ndomain = "{callee}"\nmethods = {json.dumps(list(methods))}\n'
    manifest.write_text(text, encoding="utf-8")
    set_svn(folder, svn)
    return folder


def set_svn(folder: Path, svn: int, state: Path | None = None) -> None:
    """Rewrite the svn in the plugin's domain.toml (an update, or a downgrade). With
    ``state``, the update is authorised: the integrity manifests are signed again."""
    manifest = folder / "domain.toml"
    text = manifest.read_text(encoding="utf-8")
    manifest.write_text(re.sub(r"^svn = \d+$", f"svn = {svn}", text, flags=re.M), "utf-8")
    if state is not None:
        authorise_update(state)


def change_code_byte(folder: Path, variant: bytes, state: Path | None = None) -> None:
    """Change exactly one byte of the plugin's code file (the marker's variant digit). With
    ``state``, the update is authorised: the integrity manifests are signed again (without
    that, the next boot locks the domain before its keystore is ever opened)."""
    path = folder / CODE_FILE
    code = path.read_bytes()
    at = code.index(CODE_MARKER) + len(CODE_MARKER)
    assert len(variant) == 1
    path.write_bytes(code[:at] + variant + code[at + 1 :])
    if state is not None:
        authorise_update(state)


def authorise_update(state: Path) -> None:
    """The factory signs the device's integrity manifests again (see provision_state)."""
    seal_state(state, state.parent / f"factory-{state.name}")


def provision_state(
    root: Path, plugins: Sequence[Path], *, owner_keys: bool = True, name: str = "state"
) -> Path:
    """A provisioned device in ``root/name`` whose config installs ``plugins``; the host
    may call each domain's ``ks``, ``agree`` and ``handoff``."""
    ids = [load_manifest(p / "domain.toml").id for p in plugins]
    factory = root / f"factory-{name}"
    factory_init(factory, domains=tuple(ids) if owner_keys else ())
    state = root / name
    provision(
        state,
        factory,
        config=tre.TREConfig(
            name="keystore-test",
            paths=tuple(plugins),
            host=tre.HostPolicy(calls={i: SERVICES for i in ids}),
        ),
    )
    return state


@contextlib.asynccontextmanager
async def ephemeral(*plugins: Path) -> AsyncIterator[tre.TRE]:
    """An unprovisioned TRE (in-memory device) holding the plugin folders' domains."""
    specs = [load_domain_dir(p) for p in plugins]
    async with open_test_tre(*specs, host_calls={s.id: SERVICES for s in specs}) as t:
        yield t


async def ks(
    t: tre.TRE, domain: str, op: str, *args: Any, enums: bool = True, **kwargs: Any
) -> Any:
    """Have ``domain`` run ``ctx.keystore.<op>(*args, **kwargs)``; its result, or the
    keystore error it got, raised here as the same class. With ``enums`` the ``kind`` and
    ``policy`` keywords reach the keystore as enum members, else as the strings given."""
    body = {"op": op, "args": list(args), "kwargs": kwargs, "enums": enums}
    try:
        return await t.call(domain, "ks", body)
    except tre.RemoteError as exc:
        cls = KEYSTORE_ERRORS.get(exc.remote_code)
        if cls is None:
            raise
        raise cls(exc.remote_message) from None


def domain_keys(t: tre.TRE, domain: str) -> DomainKeys:
    """The kernel-side keys of ``domain`` (test access; a domain never has this)."""
    keys = t._kernel.domains[domain].keys
    assert keys is not None
    return keys


def keystore_of(t: tre.TRE, domain: str) -> Keystore:
    """The ``ctx.keystore`` the kernel gave the running instance of ``domain``."""
    cls = t._kernel.domains[domain].spec.cls
    contexts: list[tre.Context] = cls.__init__.__globals__["CONTEXTS"]
    return contexts[-1].keystore


def stored_secrets(keys: DomainKeys) -> dict[str, bytes]:
    """The secret of every stored key of ``keys``' domain, unsealed here exactly as the
    keystore does (the rows' AEAD key and associated data): what must never leak."""

    def fetch(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
        return conn.execute(
            "SELECT label, version, kind, policy, svn, nonce, sealed FROM keys WHERE domain = ?",
            (keys.domain_id,),
        ).fetchall()

    secrets = {}
    for label, version, kind, policy, svn, nonce, sealed in keys.store.sync.read(fetch):
        aead = keys.aead("keystore-row", SealPolicy(policy), svn)
        aad = keys._row_aad(label, version, kind, policy, svn)
        secrets[label] = aead.decrypt(nonce, sealed, aad)
    return secrets


def secret_forms(secret: bytes) -> list[str]:
    """How ``secret`` could show up in text: hex, upper hex, Python's bytes repr, base64."""
    return [
        secret.hex(),
        secret.hex().upper(),
        repr(secret)[2:-1],
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
    ]


def assert_no_secret(text: str, secrets: Iterable[bytes], what: str) -> None:
    for secret in secrets:
        for form in secret_forms(secret):
            assert form not in text, f"{what} shows a secret"


def raw_public(private: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    return make_plugin(tmp_path)


# --- generate, list, info, public_key --------------------------------------------------------


@pytest.mark.parametrize("kind", GENERATED)
@pytest.mark.parametrize("as_enum", [True, False], ids=["enum", "string"])
async def test_generate_each_kind(plugin: Path, kind: KeyKind, as_enum: bool) -> None:
    asymmetric = kind in (KeyKind.ED25519, KeyKind.X25519)
    async with ephemeral(plugin) as t:
        info = await ks(t, D, "generate", "k1", kind=kind.value, enums=as_enum)
        assert info["label"] == "k1"
        assert info["kind"] == kind.value
        assert info["version"] == 1
        assert info["policy"] == "owner"  # the default for stored keys
        assert info["available"] is True
        assert len(info["public"]) == (32 if asymmetric else 0)
        assert await ks(t, D, "info", "k1") == info
        assert await ks(t, D, "list") == [info]
        if asymmetric:
            assert await ks(t, D, "public_key", "k1") == info["public"]
        else:
            with pytest.raises(tre.WrongKeyKind):
                await ks(t, D, "public_key", "k1")
        # a second key of the same kind is another key
        other = await ks(t, D, "generate", "k2", kind=kind.value, enums=as_enum)
        if asymmetric:
            assert other["public"] != info["public"]


@pytest.mark.parametrize("policy", list(SealPolicy))
@pytest.mark.parametrize("as_enum", [True, False], ids=["enum", "string"])
async def test_generate_with_a_policy(plugin: Path, policy: SealPolicy, as_enum: bool) -> None:
    async with ephemeral(plugin) as t:
        info = await ks(t, D, "generate", "k", "hmac", policy=policy.value, enums=as_enum)
        assert info["policy"] == policy.value
        assert (await ks(t, D, "info", "k"))["policy"] == policy.value


async def test_list_and_info(plugin: Path) -> None:
    async with ephemeral(plugin) as t:
        assert await ks(t, D, "list") == []
        made = {}
        for label, kind in [("s", "ed25519"), ("x", "x25519"), ("e", "aead"), ("m", "hmac")]:
            made[label] = await ks(t, D, "generate", label, kind)
        listed = {i["label"]: i for i in await ks(t, D, "list")}
        assert listed == made
        for label, info in made.items():
            assert await ks(t, D, "info", label) == info
        with pytest.raises(tre.NoSuchKey):
            await ks(t, D, "info", "nope")


async def test_list_is_in_label_order(plugin: Path) -> None:
    async with ephemeral(plugin) as t:
        for label in ("b", "c", "a"):
            await ks(t, D, "generate", label, "hmac")
        assert [i["label"] for i in await ks(t, D, "list")] == ["a", "b", "c"]


# --- operations on held keys -------------------------------------------------------------------


async def test_sign_and_verify(plugin: Path) -> None:
    async with ephemeral(plugin) as t:
        info = await ks(t, D, "generate", "signer", KeyKind.ED25519.value)
        await ks(t, D, "generate", "other", "ed25519")
        sig = await ks(t, D, "sign", "signer", b"message")
        assert isinstance(sig, bytes) and len(sig) == 64
        assert await ks(t, D, "verify", "signer", b"message", sig) is True
        assert await ks(t, D, "verify", "signer", b"messagE", sig) is False
        bad = bytes([sig[0] ^ 1]) + sig[1:]
        assert await ks(t, D, "verify", "signer", b"message", bad) is False
        assert await ks(t, D, "verify", "signer", b"message", sig[:63]) is False
        assert await ks(t, D, "verify", "signer", b"message", b"") is False
        assert await ks(t, D, "verify", "other", b"message", sig) is False
        # anyone holding the public key can check it, without the keystore
        assert tre.verify_ed25519(info["public"], b"message", sig) is True
        assert tre.verify_ed25519(info["public"], b"other", sig) is False
        assert tre.verify_ed25519(b"\x00" * 5, b"message", sig) is False


async def test_mac_and_verify_mac(plugin: Path) -> None:
    async with ephemeral(plugin) as t:
        await ks(t, D, "generate", "h1", "hmac")
        await ks(t, D, "generate", "h2", "hmac")
        tag = await ks(t, D, "mac", "h1", b"data")
        assert isinstance(tag, bytes) and len(tag) == 32
        assert await ks(t, D, "mac", "h1", b"data") == tag  # deterministic
        assert await ks(t, D, "mac", "h2", b"data") != tag
        assert await ks(t, D, "verify_mac", "h1", b"data", tag) is True
        assert await ks(t, D, "verify_mac", "h1", b"datA", tag) is False
        assert await ks(t, D, "verify_mac", "h2", b"data", tag) is False
        assert await ks(t, D, "verify_mac", "h1", b"data", tag[:16]) is False
        assert await ks(t, D, "verify_mac", "h1", b"data", bytes(32)) is False


async def test_encrypt_and_decrypt_with_aad(plugin: Path) -> None:
    async with ephemeral(plugin) as t:
        await ks(t, D, "generate", "box", "aead")
        await ks(t, D, "generate", "box2", "aead")
        blob = await ks(t, D, "encrypt", "box", b"plaintext", b"header")
        assert len(blob) == 12 + len(b"plaintext") + 16  # nonce || ciphertext || tag
        assert b"plaintext" not in blob
        assert await ks(t, D, "encrypt", "box", b"plaintext", b"header") != blob  # fresh nonce
        assert await ks(t, D, "decrypt", "box", blob, b"header") == b"plaintext"
        flipped = blob[:-1] + bytes([blob[-1] ^ 1])
        for label, data, aad in [
            ("box", blob, b"headeR"),  # wrong aad
            ("box", blob, b""),  # aad left out
            ("box2", blob, b"header"),  # another key
            ("box", flipped, b"header"),
            ("box", blob[:20], b"header"),
            ("box", b"", b"header"),
        ]:
            with pytest.raises(tre.UnsealError):
                await ks(t, D, "decrypt", label, data, aad)
        # aad defaults to empty on both sides
        assert await ks(t, D, "decrypt", "box", await ks(t, D, "encrypt", "box", b"x")) == b"x"


@pytest.mark.parametrize("policy", list(SealPolicy))
async def test_seal_and_unseal(plugin: Path, policy: SealPolicy) -> None:
    async with ephemeral(plugin) as t:
        blob = await ks(t, D, "seal", b"kept by the domain", policy=policy.value)
        assert b"kept by the domain" not in blob
        assert await ks(t, D, "unseal", blob) == b"kept by the domain"
        with_aad = await ks(t, D, "seal", b"data", policy=policy.value, aad=b"context")
        assert await ks(t, D, "unseal", with_aad, aad=b"context") == b"data"
        flipped = blob[:-1] + bytes([blob[-1] ^ 1])
        for sealed, aad in [
            (with_aad, b"other"),
            (with_aad, b""),
            (flipped, b""),
            (blob[:-5], b""),
            (b"", b""),
            (b"\xc1 not msgpack", b""),
        ]:
            with pytest.raises(tre.UnsealError):
                await ks(t, D, "unseal", sealed, aad=aad)


async def test_seal_defaults_to_measurement(plugin: Path) -> None:
    async with ephemeral(plugin) as t:
        blob = keystore_of(t, D).seal(b"x")
        assert keystore_of(t, D).unseal(blob) == b"x"
    assert ipc.decode_value(blob)[1] == SealPolicy.MEASUREMENT.value


async def test_seal_takes_the_policy_as_a_string(plugin: Path) -> None:
    async with ephemeral(plugin) as t:
        blob = await ks(t, D, "seal", b"data", policy="owner", enums=False)
        assert await ks(t, D, "unseal", blob) == b"data"


# --- derive --------------------------------------------------------------------------------------


async def test_two_domains_agree_on_an_aead_key(tmp_path: Path) -> None:
    """Alpha and beta each hold an X25519 key and derive the same AEAD key from the
    other's public key; they only ever talk through the kernel."""
    alpha = make_plugin(
        tmp_path, "alpha", allow=("host", "beta"), calls={"beta": ["respond", "check"]}
    )
    beta = make_plugin(
        tmp_path, "beta", allow=("host", "alpha"), calls={"alpha": ["respond", "check"]}
    )
    async with ephemeral(alpha, beta) as t:
        result = await t.call("alpha", "agree", {"peer": "beta", "context": b"session 1"})
        assert result == {"heard": b"hello alpha from beta", "peer_read": b"hello beta from alpha"}
        a_info = await ks(t, "alpha", "info", "shared-beta")
        b_info = await ks(t, "beta", "info", "shared-alpha")
        assert a_info["kind"] == b_info["kind"] == "aead"
        assert a_info["public"] == b_info["public"] == b""
        # the same key on both sides: what one encrypts the other decrypts (via the host)
        blob = await ks(t, "alpha", "encrypt", "shared-beta", b"relayed", b"aad")
        assert await ks(t, "beta", "decrypt", "shared-alpha", blob, b"aad") == b"relayed"
        blob = await ks(t, "beta", "encrypt", "shared-alpha", b"and back")
        assert await ks(t, "alpha", "decrypt", "shared-beta", blob) == b"and back"
        # another HKDF context gives another key
        beta_public = await ks(t, "beta", "public_key", "dh-alpha")
        await ks(t, "alpha", "derive", "other", "dh-beta", peer_public=beta_public, context=b"2")
        blob = await ks(t, "alpha", "encrypt", "other", b"not for the session key")
        with pytest.raises(tre.UnsealError):
            await ks(t, "beta", "decrypt", "shared-alpha", blob)
        # an hmac key can be agreed the same way
        alpha_public = await ks(t, "alpha", "public_key", "dh-beta")
        await ks(t, "alpha", "derive", "mac", "dh-beta", peer_public=beta_public, kind="hmac")
        await ks(t, "beta", "derive", "mac", "dh-alpha", peer_public=alpha_public, kind="hmac")
        tag = await ks(t, "alpha", "mac", "mac", b"data")
        assert await ks(t, "beta", "verify_mac", "mac", b"data", tag) is True


@pytest.mark.parametrize("kind", ["aead", "hmac"])
async def test_derive_from_an_hmac_key(plugin: Path, kind: str) -> None:
    async with ephemeral(plugin) as t:
        await ks(t, D, "generate", "root", "hmac")
        first = await ks(t, D, "derive", "d1", "root", kind=kind, context=b"purpose")
        assert first["kind"] == kind and first["policy"] == "owner" and first["public"] == b""
        await ks(t, D, "derive", "d2", "root", kind=kind, context=b"purpose")
        await ks(t, D, "derive", "d3", "root", kind=kind, context=b"another purpose")
        if kind == "aead":
            blob = await ks(t, D, "encrypt", "d1", b"x")
            assert await ks(t, D, "decrypt", "d2", blob) == b"x"  # same source and context
            with pytest.raises(tre.UnsealError):
                await ks(t, D, "decrypt", "d3", blob)
        else:
            tag = await ks(t, D, "mac", "d1", b"x")
            assert await ks(t, D, "mac", "d2", b"x") == tag
            assert await ks(t, D, "mac", "d3", b"x") != tag
            assert await ks(t, D, "mac", "root", b"x") != tag  # not the source itself


async def test_derive_defaults_to_aead_and_can_be_measurement_bound(plugin: Path) -> None:
    async with ephemeral(plugin) as t:
        await ks(t, D, "generate", "root", "hmac")
        info = await ks(t, D, "derive", "d", "root")
        assert info["kind"] == "aead"
        info = await ks(t, D, "derive", "m", "root", policy="measurement", enums=False)
        assert info["policy"] == "measurement"


async def test_derive_refusals_store_nothing(plugin: Path) -> None:
    async with ephemeral(plugin) as t:
        for label, kind in [("x", "x25519"), ("e", "ed25519"), ("a", "aead"), ("h", "hmac")]:
            await ks(t, D, "generate", label, kind)
        peer = raw_public(X25519PrivateKey.generate())
        before = await ks(t, D, "list")
        refusals: list[tuple[type[tre.KeystoreError], dict[str, Any]]] = [
            (tre.WrongKeyKind, {"source": "x", "kind": "ed25519", "peer_public": peer}),
            (tre.WrongKeyKind, {"source": "x", "kind": "x25519", "peer_public": peer}),
            (tre.WrongKeyKind, {"source": "x"}),  # x25519 needs the peer's public key
            (tre.WrongKeyKind, {"source": "x", "peer_public": peer[:31]}),
            (tre.WrongKeyKind, {"source": "x", "peer_public": bytes(32)}),  # low order
            (tre.WrongKeyKind, {"source": "e"}),
            (tre.WrongKeyKind, {"source": "a"}),
            (tre.NoSuchKey, {"source": "missing"}),
            (tre.KeyExists, {"label": "h", "source": "h"}),
            (tre.KeystoreError, {"label": "Bad", "source": "h"}),
        ]
        for error, kwargs in refusals:
            label = kwargs.pop("label", "new")
            source = kwargs.pop("source")
            with pytest.raises(error):
                await ks(t, D, "derive", label, source, **kwargs)
        assert await ks(t, D, "list") == before


# --- delete, duplicates, labels, kinds, quotas ---------------------------------------------------


async def test_delete_then_use(plugin: Path) -> None:
    async with ephemeral(plugin) as t:
        first = await ks(t, D, "generate", "gone", "ed25519")
        await ks(t, D, "generate", "kept", "hmac")
        assert await ks(t, D, "delete", "gone") is None
        for op, args in [
            ("sign", (b"x",)),
            ("verify", (b"x", bytes(64))),
            ("info", ()),
            ("public_key", ()),
            ("delete", ()),
        ]:
            with pytest.raises(tre.NoSuchKey):
                await ks(t, D, op, "gone", *args)
        assert [i["label"] for i in await ks(t, D, "list")] == ["kept"]
        assert domain_keys(t, D).store.sync.read(
            lambda c: c.execute("SELECT label FROM keys WHERE domain = ?", (D,)).fetchall()
        ) == [("kept",)]
        # the label can be used again: a new key, at the next version
        again = await ks(t, D, "generate", "gone", "ed25519")
        assert again["version"] == 2
        assert again["public"] != first["public"]
        with pytest.raises(tre.NoSuchKey):
            await ks(t, D, "delete", "never-was")


async def test_duplicate_label_is_refused(plugin: Path) -> None:
    async with ephemeral(plugin) as t:
        first = await ks(t, D, "generate", "k", "ed25519")
        sig = await ks(t, D, "sign", "k", b"m")
        for kind in GENERATED:
            for policy in SealPolicy:
                with pytest.raises(tre.KeyExists):
                    await ks(t, D, "generate", "k", kind.value, policy=policy.value)
        assert await ks(t, D, "info", "k") == first
        assert tre.verify_ed25519(first["public"], b"m", sig)
        assert tre.verify_ed25519(first["public"], b"m", await ks(t, D, "sign", "k", b"m"))
        assert len(await ks(t, D, "list")) == 1


@pytest.mark.parametrize(
    "label",
    ["UPPER", "Mixed", "", "a" * 65, "../x", "a/b", "a b", "-lead", ".hidden", "_x", "é", "a\n"],
)
async def test_bad_labels_are_refused(plugin: Path, label: str) -> None:
    async with ephemeral(plugin) as t:
        with pytest.raises(tre.KeystoreError) as caught:
            await ks(t, D, "generate", label, "hmac")
        assert caught.value.code == "KEYSTORE"
        assert await ks(t, D, "list") == []


async def test_label_limits(plugin: Path) -> None:
    async with ephemeral(plugin) as t:
        for label in ["a" * 64, "0", "a.b-c_d", "9z"]:
            assert (await ks(t, D, "generate", label, "hmac"))["label"] == label


async def test_non_string_label_is_refused(plugin: Path) -> None:
    async with ephemeral(plugin) as t:
        for label in [7, b"bytes", None, ["a"]]:
            with pytest.raises(tre.KeystoreError):
                await ks(t, D, "generate", label, "hmac")


WRONG_KIND_USES: list[tuple[str, str, tuple[Any, ...]]] = [
    ("hmac", "sign", (b"x",)),
    ("aead", "sign", (b"x",)),
    ("x25519", "sign", (b"x",)),
    ("hmac", "verify", (b"x", bytes(64))),
    ("ed25519", "mac", (b"x",)),
    ("aead", "mac", (b"x",)),
    ("x25519", "verify_mac", (b"x", bytes(32))),
    ("ed25519", "encrypt", (b"x",)),
    ("hmac", "encrypt", (b"x",)),
    ("x25519", "decrypt", (bytes(40),)),
    ("aead", "public_key", ()),
    ("hmac", "public_key", ()),
]


@pytest.mark.parametrize(("kind", "op", "args"), WRONG_KIND_USES)
async def test_wrong_key_kind(plugin: Path, kind: str, op: str, args: tuple[Any, ...]) -> None:
    async with ephemeral(plugin) as t:
        await ks(t, D, "generate", "k", kind)
        with pytest.raises(tre.WrongKeyKind):
            await ks(t, D, op, "k", *args)


@pytest.mark.parametrize(
    "kwargs", [{"kind": "rsa"}, {"kind": "hmac", "policy": "nobody"}], ids=["kind", "policy"]
)
async def test_unknown_kind_or_policy_is_a_keystore_error(
    plugin: Path, kwargs: dict[str, str]
) -> None:
    async with ephemeral(plugin) as t:
        with pytest.raises(tre.KeystoreError):
            await ks(t, D, "generate", "k", enums=False, **kwargs)


def row_count(t: tre.TRE, domain: str) -> int:
    (count,) = domain_keys(t, domain).store.sync.read(
        lambda c: c.execute("SELECT count(*) FROM keys WHERE domain = ?", (domain,)).fetchone()
    )
    return int(count)


async def test_quota_on_the_number_of_keys(tmp_path: Path) -> None:
    async with ephemeral(make_plugin(tmp_path, quotas={"max_keys": 2})) as t:
        await ks(t, D, "generate", "k1", "ed25519")
        await ks(t, D, "generate", "k2", "hmac")
        await audit_log(t).flush()  # the audit entries of those keys: transactions too
        generation = domain_keys(t, D).store.sync.generation()
        with pytest.raises(tre.KeyQuotaExceeded):
            await ks(t, D, "generate", "k3", "hmac")
        with pytest.raises(tre.KeyQuotaExceeded):
            await ks(t, D, "derive", "k3", "k2")
        with pytest.raises(tre.NoSuchKey):
            await ks(t, D, "info", "k3")
        assert len(await ks(t, D, "list")) == 2
        assert row_count(t, D) == 2
        assert domain_keys(t, D).store.sync.generation() == generation  # nothing written
        await ks(t, D, "delete", "k1")
        await ks(t, D, "generate", "k3", "hmac")  # room again
        assert row_count(t, D) == 2


async def test_quota_of_zero_keys(tmp_path: Path) -> None:
    async with ephemeral(make_plugin(tmp_path, quotas={"max_keys": 0})) as t:
        with pytest.raises(tre.KeyQuotaExceeded):
            await ks(t, D, "generate", "k", "hmac")
        assert row_count(t, D) == 0
        # sealing keeps nothing in the keystore, so it is not limited
        assert await ks(t, D, "unseal", await ks(t, D, "seal", b"x")) == b"x"


async def test_quota_on_key_bytes(tmp_path: Path) -> None:
    # an ed25519 row holds 48 sealed bytes (32 + a 16-byte tag) and a 32-byte public key;
    # an hmac row 48 sealed bytes
    async with ephemeral(make_plugin(tmp_path, quotas={"max_key_bytes": 100})) as t:
        await ks(t, D, "generate", "big", "ed25519")  # 80 bytes
        with pytest.raises(tre.KeyQuotaExceeded):
            await ks(t, D, "generate", "more", "hmac")  # 128 > 100
        assert [i["label"] for i in await ks(t, D, "list")] == ["big"]
        assert row_count(t, D) == 1
        await ks(t, D, "delete", "big")
        await ks(t, D, "generate", "more", "hmac")
        await ks(t, D, "generate", "more2", "hmac")  # 96
        with pytest.raises(tre.KeyQuotaExceeded):
            await ks(t, D, "generate", "more3", "hmac")
        assert row_count(t, D) == 2


async def test_quotas_are_per_domain(tmp_path: Path) -> None:
    small = make_plugin(tmp_path, "small", quotas={"max_keys": 1})
    large = make_plugin(tmp_path, "large")
    async with ephemeral(small, large) as t:
        await ks(t, "small", "generate", "k", "hmac")
        with pytest.raises(tre.KeyQuotaExceeded):
            await ks(t, "small", "generate", "k2", "hmac")
        for i in range(5):
            await ks(t, "large", "generate", f"k{i}", "hmac")


# --- locked keystores ---------------------------------------------------------------------------


async def test_a_locked_keystore_refuses_everything(plugin: Path) -> None:
    async with ephemeral(plugin) as t:
        await ks(t, D, "generate", "s", "ed25519")
        await ks(t, D, "generate", "h", "hmac")
        blob = await ks(t, D, "seal", b"x")
        keystore = keystore_of(t, D)
        assert await t.tamper(D) == [D]
        with pytest.raises(tre.Locked):
            await ks(t, D, "list")
        calls: list[Callable[[], object]] = [
            lambda: keystore.list(),
            lambda: keystore.info("s"),
            lambda: keystore.public_key("s"),
            lambda: keystore.sign("s", b"x"),
            lambda: keystore.verify("s", b"x", bytes(64)),
            lambda: keystore.mac("h", b"x"),
            lambda: keystore.seal(b"x"),
            lambda: keystore.unseal(blob),
        ]
        for call in calls:
            with pytest.raises(tre.KeystoreLocked):
                call()
        with pytest.raises(tre.KeystoreLocked):
            await keystore.generate("new", KeyKind.HMAC)
        with pytest.raises(tre.KeystoreLocked):
            await keystore.derive("new", "h")
        with pytest.raises(tre.KeystoreLocked):
            await keystore.delete("s")
        assert domain_keys(t, D).entries == {}  # unsealed keys forgotten


class GatedWrites:
    """Stands in for a domain's store: each write waits until the test lets it go."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.entered = trio.Event()
        self.release = trio.Event()

    async def write(self, fn: Any) -> Any:
        self.entered.set()
        await self.release.wait()
        return await self.inner.write(fn)


async def test_a_generate_in_flight_when_the_domain_is_locked_leaves_no_key(
    plugin: Path,
) -> None:
    async with ephemeral(plugin) as t:
        keys = domain_keys(t, D)
        gate = GatedWrites(keys.store)
        keys.store = gate  # type: ignore[assignment]
        keystore = keystore_of(t, D)
        outcome: list[object] = []

        async def generate() -> None:
            try:
                outcome.append(await keystore.generate("late", KeyKind.ED25519))
            except tre.KeystoreError as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(generate)
            await gate.entered.wait()
            await t.tamper(D)
            gate.release.set()
        assert keys.locked
        assert keys.entries == {}, f"held after the lock: {sorted(keys.entries)} ({outcome})"


# --- no call returns private key bytes ---------------------------------------------------------


def _values(value: Any) -> Iterator[Any]:
    """Every leaf reachable from a keystore result."""
    if isinstance(value, tre.KeyInfo):
        for field in ("label", "kind", "version", "policy", "public", "created", "available"):
            yield from _values(getattr(value, field))
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _values(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _values(k)
            yield from _values(v)
    elif isinstance(value, Success):
        yield from (value.res, value.ck, value.ik, value.sqn)
    elif isinstance(value, Resync):
        yield value.auts
    else:
        yield value


async def test_no_call_returns_private_key_bytes(tmp_path: Path) -> None:
    """Call every public method of ``ctx.keystore`` and look at everything it returns:
    KeyInfo, bytes of a known public length, bools, None -- never a key's secret."""
    peer = make_plugin(tmp_path, "peer")
    async with ephemeral(make_plugin(tmp_path), peer) as t:
        keystore = keystore_of(t, D)
        peer_x = await keystore_of(t, "peer").generate("x", KeyKind.X25519)
        results: dict[str, list[Any]] = {}

        async def run_all() -> None:
            def record(name: str, value: Any) -> Any:
                results.setdefault(name, []).append(value)
                return value

            for label, kind in [("e", "ed25519"), ("x", "x25519"), ("a", "aead"), ("h", "hmac")]:
                record("generate", await keystore.generate(label, kind))
            record("generate", await keystore.generate("m", KeyKind.ED25519, policy="measurement"))
            record("derive", await keystore.derive("dx", "x", peer_public=peer_x.public))
            record("derive", await keystore.derive("dh", "h", kind=KeyKind.HMAC, context=b"c"))
            record("list", keystore.list())
            for label in ("e", "x", "a", "h", "m", "dx", "dh"):
                record("info", keystore.info(label))
            for label in ("e", "x", "m"):
                record("public_key", keystore.public_key(label))
            sig = record("sign", keystore.sign("e", b"data"))
            record("sign", keystore.sign("m", b"data"))
            record("verify", keystore.verify("e", b"data", sig))
            tag = record("mac", keystore.mac("h", b"data"))
            record("mac", keystore.mac("dh", b"data"))
            record("verify_mac", keystore.verify_mac("h", b"data", tag))
            for label in ("a", "dx"):
                blob = record("encrypt", keystore.encrypt(label, b"data", b"aad"))
                record("decrypt", keystore.decrypt(label, blob, b"aad"))
            for policy in SealPolicy:
                sealed = record("seal", keystore.seal(b"data", policy))
                record("unseal", keystore.unseal(sealed))
            await keystore.generate("tmp", KeyKind.HMAC)
            await keystore.delete("tmp")
            record("delete", None)  # delete returns nothing
            record("import_milenage", await keystore.import_milenage("mid", MID_K, MID_OPC))
            autn = make_autn(MID_K, MID_OPC, MID_RAND, MID_SQN, MID_AMF)
            record("aka", keystore.aka("mid", MID_RAND, autn, MID_SQN - 1))
            record("aka", keystore.aka("mid", MID_RAND, autn, MID_SQN))  # a resync
            mid = {"imsi": "001010000000077", "k": MID_K, "opc": MID_OPC, "sqn": 0}
            plain = msgpack.packb({**mid, "amf": MID_AMF}, use_bin_type=True)
            x_pub = X25519PublicKey.from_public_bytes(keystore.public_key("x"))
            enc, ct = hpke_seal(x_pub, plain, mid_info(b"u"), b"header")
            opened = await keystore.open_mid_package("x", enc, ct, mid_info(b"u"), b"header")
            record("open_mid_package", opened)
            record("put_record", await keystore.put_record("rec", b"state"))
            record("record", keystore.record("rec"))
            record("list", keystore.list())
            record("advance_counter", await keystore.advance_counter("c", 5))
            record("counter", keystore.counter("c"))
            record("counters", keystore.counters())
            await keystore.delete_counter("c")
            record("delete_counter", None)

        await run_all()
        secrets = stored_secrets(domain_keys(t, D))

    public_names = {n for n in dir(keystore) if not n.startswith("_")}
    assert public_names == set(results), "every public method of the keystore is exercised"
    for name in public_names:  # only methods: no attribute holds material
        assert callable(getattr(keystore, name)), name
    assert not hasattr(keystore, "__dict__")

    assert secrets.pop("rec") == b"state"  # a record is the domain's own data, readable
    assert secrets["mid"] == MID_K + MID_OPC
    assert secrets.pop("mid.001010000000077") == MID_K + MID_OPC  # from the package
    secrets["mid.k"], secrets["mid.opc"] = MID_K, MID_OPC  # neither half may show either
    assert set(secrets) == {"e", "x", "a", "h", "m", "dx", "dh", "mid", "mid.k", "mid.opc"}
    assert all(len(s) in (16, 32) for s in secrets.values())
    for name, values in results.items():
        for leaf in _values(values):
            assert leaf is None or isinstance(
                leaf, bytes | str | int | float | KeyKind | SealPolicy
            )
            for secret in secrets.values():
                if isinstance(leaf, bytes):
                    assert secret not in leaf, f"{name} returned a key's secret"
                if isinstance(leaf, str):
                    assert_no_secret(leaf, [secret], name)

    # structurally: what each call returns, and public keys that really are the public halves
    infos = {i.label: i for i in results["list"][0]}
    assert infos["e"].public == raw_public(Ed25519PrivateKey.from_private_bytes(secrets["e"]))
    assert infos["m"].public == raw_public(Ed25519PrivateKey.from_private_bytes(secrets["m"]))
    assert infos["x"].public == raw_public(X25519PrivateKey.from_private_bytes(secrets["x"]))
    for label in ("a", "h", "dx", "dh"):
        assert infos[label].public == b""
    assert all(isinstance(i, tre.KeyInfo) for i in results["generate"] + results["info"])
    assert all(len(v) == 32 for v in results["public_key"])
    assert all(len(v) == 64 for v in results["sign"])
    assert all(len(v) == 32 for v in results["mac"])
    assert results["verify"] == results["verify_mac"] == [True]
    assert all(len(v) == 12 + 4 + 16 for v in results["encrypt"])
    assert results["decrypt"] == results["unseal"] == [b"data", b"data"]
    assert results["delete"] == [None]
    assert results["record"] == [b"state"]
    assert [i.kind for i in results["import_milenage"] + results["put_record"]] == [
        KeyKind.MILENAGE,
        KeyKind.RECORD,
    ]
    assert infos.get("mid") is None  # listed later: the second list shows both, no secret
    later = {i.label: i for i in results["list"][1]}
    assert (later["mid"].kind, later["mid"].public) == (KeyKind.MILENAGE, b"")
    assert (later["rec"].kind, later["rec"].public) == (KeyKind.RECORD, b"")
    success, resync = results["aka"]
    assert isinstance(success, Success) and success.sqn == MID_SQN
    assert isinstance(resync, Resync)


async def test_the_context_exposes_only_its_handles(plugin: Path) -> None:
    async with ephemeral(plugin) as t:
        await ks(t, D, "generate", "k", "ed25519")
        ctx = t._kernel.domains[D].spec.cls.__init__.__globals__["CONTEXTS"][-1]
        secrets = stored_secrets(domain_keys(t, D))
        for name in dir(ctx):
            if name.startswith("_"):
                continue
            value = getattr(ctx, name)
            if name in ("owner_key", "ueid"):  # public facts about the domain itself
                assert isinstance(value, bytes), name
            else:
                assert not isinstance(value, DomainKeys | Device | bytes | attestation.Secret), name
            assert_no_secret(repr(value), secrets.values(), f"ctx.{name}")
        assert isinstance(ctx.keystore, Keystore)


# --- sealing policies on a real device ----------------------------------------------------------


async def _save(path: Path, data: bytes) -> None:
    await trio.Path(path).write_bytes(data)


async def _load(path: Path) -> bytes:
    return await trio.Path(path).read_bytes()


async def test_measurement_sealing_is_bound_to_the_exact_code(tmp_path: Path) -> None:
    plugin = make_plugin(tmp_path)
    state = provision_state(tmp_path, [plugin])
    async with tre.open_tre(state=state) as t:
        measurement = t.measurement(D)
        bound = await ks(t, D, "generate", "bound", "ed25519", policy="measurement")
        owned = await ks(t, D, "generate", "owned", "ed25519")
        await ks(t, D, "generate", "owned-mac", "hmac")
        tag = await ks(t, D, "mac", "owned-mac", b"data")
        await _save(tmp_path / "blob-m", await ks(t, D, "seal", b"this code only"))
        await _save(tmp_path / "blob-o", await ks(t, D, "seal", b"the owner", policy="owner"))
        assert await ks(t, D, "unseal", await _load(tmp_path / "blob-m")) == b"this code only"

    # the same code boots again: everything opens
    async with tre.open_tre(state=state) as t:
        assert t.measurement(D) == measurement
        assert await ks(t, D, "unseal", await _load(tmp_path / "blob-m")) == b"this code only"
        assert (await ks(t, D, "info", "bound"))["available"] is True

    change_code_byte(plugin, b"1", state)
    async with tre.open_tre(state=state) as t:
        assert t.measurement(D) != measurement
        with pytest.raises(tre.UnsealError):
            await ks(t, D, "unseal", await _load(tmp_path / "blob-m"))
        assert await ks(t, D, "unseal", await _load(tmp_path / "blob-o")) == b"the owner"
        info = await ks(t, D, "info", "bound")
        assert info["available"] is False
        assert info["public"] == bound["public"]  # what a domain may know about it, still
        for op, args in [("sign", (b"x",)), ("public_key", ())]:
            with pytest.raises(tre.KeyUnavailable):
                await ks(t, D, op, "bound", *args)
        available = {i["label"]: i["available"] for i in await ks(t, D, "list")}
        assert available == {"bound": False, "owned": True, "owned-mac": True}
        sig = await ks(t, D, "sign", "owned", b"still mine")
        assert tre.verify_ed25519(owned["public"], b"still mine", sig)
        assert await ks(t, D, "verify_mac", "owned-mac", b"data", tag) is True
        with pytest.raises(tre.KeyExists):  # the label stays taken
            await ks(t, D, "generate", "bound", "ed25519", policy="measurement")
        # the new code's own sealed data works for it
        await _save(tmp_path / "blob-m1", await ks(t, D, "seal", b"new code"))
        assert await ks(t, D, "unseal", await _load(tmp_path / "blob-m1")) == b"new code"

    change_code_byte(plugin, b"0", state)  # the original code again: identical, so it opens
    async with tre.open_tre(state=state) as t:
        assert t.measurement(D) == measurement
        assert await ks(t, D, "unseal", await _load(tmp_path / "blob-m")) == b"this code only"
        with pytest.raises(tre.UnsealError):
            await ks(t, D, "unseal", await _load(tmp_path / "blob-m1"))
        sig = await ks(t, D, "sign", "bound", b"x")
        assert tre.verify_ed25519(bound["public"], b"x", sig)

    change_code_byte(plugin, b"2", state)
    async with tre.open_tre(state=state) as t:
        # a key this code cannot open can still be deleted, and its label reused
        await ks(t, D, "delete", "bound")
        again = await ks(t, D, "generate", "bound", "ed25519", policy="measurement")
        assert again["version"] == 2 and again["available"] is True


async def test_owner_sealing_follows_the_owner_and_refuses_a_downgrade(tmp_path: Path) -> None:
    plugin = make_plugin(tmp_path, svn=2)
    state = provision_state(tmp_path, [plugin])
    blobs = tmp_path / "blobs"
    await trio.Path(blobs).mkdir()

    async with tre.open_tre(state=state) as t:  # svn 2
        at2 = await ks(t, D, "generate", "at2", "ed25519")
        await _save(blobs / "o2", await ks(t, D, "seal", b"sealed at 2", policy="owner"))
        await _save(blobs / "m2", await ks(t, D, "seal", b"code at 2", policy="measurement"))

    # an update: new code and a higher svn
    change_code_byte(plugin, b"1", state)
    set_svn(plugin, 3, state)
    async with tre.open_tre(state=state) as t:  # svn 3
        assert t.domain(D).svn == 3
        assert await ks(t, D, "unseal", await _load(blobs / "o2")) == b"sealed at 2"
        with pytest.raises(tre.UnsealError):  # measurement-sealed data stays with old code
            await ks(t, D, "unseal", await _load(blobs / "m2"))
        assert (await ks(t, D, "info", "at2"))["available"] is True
        assert tre.verify_ed25519(at2["public"], b"x", await ks(t, D, "sign", "at2", b"x"))
        at3 = await ks(t, D, "generate", "at3", "ed25519")
        await _save(blobs / "o3", await ks(t, D, "seal", b"sealed at 3", policy="owner"))

    # a downgrade below both: nothing of svn 2 or 3 opens
    set_svn(plugin, 1, state)
    async with tre.open_tre(state=state) as t:  # svn 1
        for name in ("o2", "o3", "m2"):
            with pytest.raises(tre.UnsealError):
                await ks(t, D, "unseal", await _load(blobs / name))
        available = {i["label"]: i["available"] for i in await ks(t, D, "list")}
        assert available == {"at2": False, "at3": False}
        for label in ("at2", "at3"):
            with pytest.raises(tre.KeyUnavailable):
                await ks(t, D, "sign", label, b"x")
        await _save(blobs / "o1", await ks(t, D, "seal", b"sealed at 1", policy="owner"))
        await ks(t, D, "generate", "at1", "hmac")

    # back to svn 2: what svn 2 (and 1) made opens, what svn 3 made does not
    set_svn(plugin, 2, state)
    async with tre.open_tre(state=state) as t:
        assert await ks(t, D, "unseal", await _load(blobs / "o2")) == b"sealed at 2"
        assert await ks(t, D, "unseal", await _load(blobs / "o1")) == b"sealed at 1"
        with pytest.raises(tre.UnsealError):
            await ks(t, D, "unseal", await _load(blobs / "o3"))
        available = {i["label"]: i["available"] for i in await ks(t, D, "list")}
        assert available == {"at1": True, "at2": True, "at3": False}

    # the downgrade destroyed nothing: at svn 3 everything opens again
    set_svn(plugin, 3, state)
    async with tre.open_tre(state=state) as t:
        for name, data in [("o1", b"sealed at 1"), ("o2", b"sealed at 2"), ("o3", b"sealed at 3")]:
            assert await ks(t, D, "unseal", await _load(blobs / name)) == data
        assert all(i["available"] for i in await ks(t, D, "list"))
        assert tre.verify_ed25519(at3["public"], b"y", await ks(t, D, "sign", "at3", b"y"))


async def test_owner_sealing_needs_the_same_owner(tmp_path: Path) -> None:
    """Two devices, the same plugin code but different owner keys from two factories: a
    blob sealed on one never opens on the other (nor would it for another owner)."""
    plugin = make_plugin(tmp_path)
    first = provision_state(tmp_path, [plugin], name="first")
    second = provision_state(tmp_path, [plugin], name="second")
    async with tre.open_tre(state=first) as t:
        blob = await ks(t, D, "seal", b"x", policy="owner")
    async with tre.open_tre(state=second) as t:
        with pytest.raises(tre.UnsealError):
            await ks(t, D, "unseal", blob)


async def test_keys_survive_reboots(tmp_path: Path) -> None:
    plugin = make_plugin(tmp_path)
    state = provision_state(tmp_path, [plugin])
    async with tre.open_tre(state=state) as t:
        made = {}
        for label, kind in [("e", "ed25519"), ("x", "x25519"), ("a", "aead"), ("h", "hmac")]:
            made[label] = await ks(t, D, "generate", label, kind)
        blob = await ks(t, D, "encrypt", "a", b"kept", b"aad")
        tag = await ks(t, D, "mac", "h", b"kept")
    async with tre.open_tre(state=state) as t:
        assert {i["label"]: i for i in await ks(t, D, "list")} == made
        assert await ks(t, D, "decrypt", "a", blob, b"aad") == b"kept"
        assert await ks(t, D, "verify_mac", "h", b"kept", tag) is True
        assert tre.verify_ed25519(made["e"]["public"], b"z", await ks(t, D, "sign", "e", b"z"))


# --- secrets never show ---------------------------------------------------------------------------


async def test_reprs_errors_and_logs_never_show_secrets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plugin = make_plugin(tmp_path, quotas={"max_keys": 6})
    state = provision_state(tmp_path, [plugin])
    uds = (state / UDS_FILE).read_bytes()
    counter_key = attestation.derive_key(attestation.Secret(uds), "rpmb-mac").reveal()
    texts: list[tuple[str, str]] = []
    errors: dict[type[BaseException], BaseException] = {}

    def show(what: str, obj: object) -> None:
        texts.append((f"repr({what})", repr(obj)))
        texts.append((f"str({what})", str(obj)))

    async def catch(fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            result = fn(*args, **kwargs)
            if hasattr(result, "__await__"):
                await result
        except tre.TREError as exc:
            errors[type(exc)] = exc
        else:
            raise AssertionError(f"{fn} did not raise")

    async with tre.open_tre(state=state) as t:
        keystore = keystore_of(t, D)
        for label, kind in [("e", "ed25519"), ("x", "x25519"), ("a", "aead"), ("h", "hmac")]:
            await keystore.generate(label, kind)
        await keystore.generate("m", "ed25519", policy="measurement")
        await keystore.derive("d", "h")
        keys = domain_keys(t, D)
        device = t._kernel.device
        for what, obj in [
            ("Keystore", keystore),
            ("DomainKeys", keys),
            ("AsyncStore", device.store),
            ("Store", device.store.sync),
            ("MonotonicCounter", device.store.sync._counter),
            ("Device", device),
            ("TRE", t),
            ("Context", t._kernel.domains[D].spec.cls.__init__.__globals__["CONTEXTS"][-1]),
        ]:
            show(what, obj)
        for info in keystore.list():
            show(f"KeyInfo {info.label}", info)
        await catch(keystore.sign, "nope", b"x")
        await catch(keystore.generate, "e", "ed25519")
        await catch(keystore.sign, "h", b"x")
        await catch(keystore.generate, "q", "hmac")
        await catch(keystore.generate, "Bad Label", "hmac")
        await catch(keystore.unseal, keystore.seal(b"x") + b"!")
        await catch(keystore.decrypt, "a", b"\x00" * 40)
        secrets = stored_secrets(keys)
    change_code_byte(plugin, b"1", state)
    async with tre.open_tre(state=state) as t:
        keystore = keystore_of(t, D)
        await catch(keystore.sign, "m", b"x")
        await t.tamper(D)
        await catch(keystore.sign, "e", b"x")
    with contextlib.closing(sqlite3.connect(state / DB_FILE)) as conn:
        events = conn.execute("SELECT kind, domain, detail FROM events").fetchall()
    texts.append(("events table", repr(events)))
    (state / COUNTER_FILE).write_bytes(b"\x00" * 48)
    with pytest.raises(tre.StorageError) as caught:
        Device.open_sync(state)
    errors[type(caught.value)] = caught.value

    expected = {
        tre.NoSuchKey,
        tre.KeyExists,
        tre.WrongKeyKind,
        tre.KeyQuotaExceeded,
        tre.KeystoreError,
        tre.UnsealError,
        tre.KeyUnavailable,
        tre.KeystoreLocked,
    }
    assert expected <= set(errors)
    for cls, exc in errors.items():
        show(cls.__name__, exc)
        texts.append((f"args of {cls.__name__}", repr(exc.args)))
    texts.append(("logs", caplog.text))
    texts += [(f"log args {r.name}", repr(r.args)) for r in caplog.records]
    assert len(secrets) == 6
    everything = [uds, counter_key, *secrets.values()]
    for what, text in texts:
        assert_no_secret(text, everything, what)


def test_fixture_is_what_the_tests_expect() -> None:
    """The fixture folder must keep the marker the code-change tests flip."""
    assert (FIXTURE / CODE_FILE).read_bytes().count(CODE_MARKER + b"0") == 1
    manifest = load_manifest(FIXTURE / "domain.toml")
    assert manifest.id == D and manifest.svn == 2
    assert set(manifest.services) == {"ks", "agree", "respond", "check", "handoff"}


# --- milenage keys and records ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["milenage", "record"])
async def test_milenage_and_record_kinds_are_not_generated(plugin: Path, kind: str) -> None:
    async with ephemeral(plugin) as t:
        with pytest.raises(tre.WrongKeyKind):
            await ks(t, D, "generate", "k", kind)
        assert await ks(t, D, "list") == []


async def test_milenage_keys_only_run(plugin: Path) -> None:
    async with ephemeral(plugin) as t:
        info = await ks(t, D, "import_milenage", "mid", MID_K, MID_OPC)
        assert (info["kind"], info["public"], info["policy"]) == ("milenage", b"", "owner")
        assert await ks(t, D, "list") == [info]
        for op, args in [
            ("sign", (b"x",)),
            ("mac", (b"x",)),
            ("encrypt", (b"x",)),
            ("public_key", ()),
            ("record", ()),
        ]:
            with pytest.raises(tre.WrongKeyKind):
                await ks(t, D, op, "mid", *args)
        with pytest.raises(tre.WrongKeyKind):
            await ks(t, D, "derive", "d", "mid")
        with pytest.raises(tre.KeyExists):
            await ks(t, D, "import_milenage", "mid", MID_K, MID_OPC)
        with pytest.raises(tre.KeystoreError):
            await ks(t, D, "import_milenage", "short", MID_K[:15], MID_OPC)
        await ks(t, D, "generate", "h", "hmac")
        with pytest.raises(tre.WrongKeyKind):  # aka needs a milenage key
            keystore_of(t, D).aka("h", MID_RAND, bytes(16), 0)


async def test_records_are_replaced_and_survive_reboots(tmp_path: Path) -> None:
    plugin = make_plugin(tmp_path)
    state = provision_state(tmp_path, [plugin])
    async with tre.open_tre(state=state) as t:
        first = await ks(t, D, "put_record", "r", b"one")
        second = await ks(t, D, "put_record", "r", b"two")
        assert (first["version"], second["version"], second["kind"]) == (1, 2, "record")
        assert await ks(t, D, "record", "r") == b"two"
        with pytest.raises(tre.KeystoreError):
            await ks(t, D, "put_record", "big", bytes(tre.MAX_RECORD + 1))
        await ks(t, D, "generate", "h", "hmac")
        with pytest.raises(tre.KeyExists):  # only a record replaces a record
            await ks(t, D, "put_record", "h", b"x")
        with pytest.raises(tre.WrongKeyKind):
            await ks(t, D, "mac", "r", b"x")
    async with tre.open_tre(state=state) as t:
        assert await ks(t, D, "record", "r") == b"two"
        assert len(await ks(t, D, "list")) == 2
