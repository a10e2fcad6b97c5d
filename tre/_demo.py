"""``tre demo``: a device from the factory to a tamper response, told as a short story."""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import attrs
import msgpack
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

import attestation
import ipc

from ._audit_offline import open_audit_state
from ._cli_user import open_users
from ._config import default_config
from ._errors import CallError, Denied, RemoteError
from ._factory import factory_init
from ._hostclient import HostClient
from ._install import install_package
from ._keystore import verify_ed25519
from ._measure import code_files
from ._midpackage import TXID_LEN, hpke_seal, mid_info, pack_header, signed_bytes
from ._milenage import Milenage
from ._provision import provision
from ._root import new_root, rotate_state
from ._runtime import TRE, open_tre
from ._users import check_grants, format_grant

__all__ = ["DEMO_IMEI", "run_demo"]

#: A made-up IMEI with a valid Luhn check digit (TAC 35209900, serial 176148).
DEMO_IMEI = "352099001761481"
#: The post-issue domain (domains/utility): never provisioned, installed as a package.
UTILITY = "utility"
#: What the config grants the host of it, at provisioning, before it is installed.
UTILITY_SERVICES = frozenset({"tariff", "bill", "public_key"})
#: The release counter of the utility's package (its downgrade is one less).
UTILITY_COUNTER = 2
#: The tariff the host relays to the utility.
TARIFF = {"currency": "EUR", "price_per_kwh": 0.25, "standing_charge": 0.1}
#: The first user, created at provisioning (role admin).
ADMIN = "admin"
#: The user added offline (role operator) and what it is granted.
OPERATOR = "operator"
OPERATOR_GRANTS = (("meter", "latest"), (UTILITY, "bill"))
# Fixed demo passwords (the CLI reads them from TRE_PASSWORD or the terminal, never argv);
# the demo never prints them.
_ADMIN_PASSWORD = "demo admin password"  # noqa: S105 - a throwaway device's, by design
_OPERATOR_PASSWORD = "demo operator password"  # noqa: S105 - as above
_WRONG_PASSWORD = "not the operator's password"  # noqa: S105 - meant to be refused


_KINDS = {"DENIED": "denied", "ABORTED": "aborted", "LOCKED": "locked"}


class _Story:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.counts = {
            "ok": 0,
            "denied": 0,
            "aborted": 0,
            "locked": 0,
            "other": 0,
            "verified": 0,
            "mid": 0,
            "post_issue": 0,
            "host_users": 0,
        }
        self.step = 0

    def title(self, text: str) -> None:
        self.step += 1
        print(f"\n{self.step}. {text}", file=self.out)

    def line(self, text: str) -> None:
        print(f"   {text}", file=self.out)

    async def call(self, t: TRE, domain: str, method: str, body: Any = None) -> Any:
        try:
            result = await t.call(domain, method, body)
        except CallError as exc:
            key = {"DENIED": "denied", "ABORTED": "aborted", "LOCKED": "locked"}.get(
                exc.code, "other"
            )
            self.counts[key] += 1
            self.line(f"host -> {domain}.{method}: {exc.code} ({exc.message})")
            return exc
        self.counts["ok"] += 1
        return result


def _golden(t: TRE) -> attestation.Reference:
    """Reference values as the device maker would publish them for this build."""
    domains = {}
    for d in t.domains():
        keys = t._kernel.domains[d.id].keys
        assert keys is not None
        domains[d.id] = attestation.DomainReference(
            measurements=frozenset({keys.measurement}), owner_hash=keys.owner_hash, min_svn=d.svn
        )
    return attestation.Reference(
        domains=domains,
        tre_measurements=frozenset({t._kernel.device.tre_measurement}),
        policy_hashes=frozenset({bytes.fromhex(t.policy.digest())}),
    )


def _short(value: Any) -> str:
    if isinstance(value, bytes):
        return value[:6].hex() + "..."
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return repr(value)


def _factory_and_provision(story: _Story, root: Path, interval: float) -> Path:
    story.title("At the factory: a manufacturer CA, owner keys, and a provisioned device")
    factory = factory_init(root / "factory")
    story.line(f"manufacturer CA and {len(factory.owners)} owner keys in {factory.path}")
    base = default_config()
    # The host is granted the utility's services now; they open once it is installed.
    host = attrs.evolve(base.host, calls={**base.host.calls, UTILITY: UTILITY_SERVICES})
    config = attrs.evolve(base, host=host, settings={"meter": {"interval": interval}})
    state = root / "device"
    result = provision(
        state,
        factory.path,
        imei=DEMO_IMEI,
        config=config,
        admin=ADMIN,
        admin_password=_ADMIN_PASSWORD,
    )
    cert = attestation.load_cert_pem((state / "device.pem").read_bytes())
    attestation.verify_chain(cert, [], factory.ca_cert, dt.datetime.now(dt.UTC))
    story.line(f"device UEID {result['ueid']} (from IMEI {DEMO_IMEI}), lifecycle secured")
    story.line("DeviceID certificate verifies against the manufacturer CA")
    story.line(
        f"first user of the host interface: {result['admin']} (role admin; the demo uses "
        "fixed passwords, never printed)"
    )
    return state


async def _first_boot(story: _Story, state: Path, interval: float) -> bytes:
    async with open_tre(state=state) as t:
        story.title(
            f"Boot {t.device.boot_count}: {len(t.domains())} stakeholder domains in "
            f"{t.boot_seconds * 1000:.1f} ms (policy {t.policy.digest()[:16]}...)"
        )
        monitor = t._kernel.integrity
        if monitor is not None:
            boot = monitor.last.get("boot", {})
            story.line(
                f"code-base integrity at boot: {boot.get('result', '?')} (every file of the "
                "TRE and of each domain against its signed manifest, before any domain ran)"
            )
        for d in t.domains():
            kind = "isolated" if d.isolated else "services"
            story.line(
                f"{d.id:<6} {d.owner:<32} svn {d.svn}  {kind:<8}  measurement "
                f"{t.measurement(d.id).hex()[:12]}...  {d.state}"
            )

        story.title("Calls that policy allows; oem signs with a key from its own keystore")
        info = await story.call(t, "oem", "info")
        story.line(f"host -> oem.info: {_short(info['platform'])}")
        story.line(f"oem's timestamp key (public half): {info['timestamp_key'].hex()[:16]}...")
        await trio.sleep(interval * 3.5)
        latest = await story.call(t, "meter", "latest")
        if isinstance(latest, dict):
            stamp = latest["stamp"]
            ok = "verified" if latest["verified"] else "NOT verified"
            story.line(
                f"host -> meter.latest: {latest['kwh']} kWh, reading #{latest['sample']}, "
                f"stamped by oem (seq {stamp['seq']}, Ed25519 signature {ok} by meter)"
            )
        status = await story.call(t, "mno", "status")
        story.line(f"host -> mno.status: {_short(status)}")

        story.title("Calls that policy refuses (default deny; both manifests must agree)")
        await story.call(t, "vault", "status")
        await story.call(t, "oem", "timestamp", {"digest": bytes(32)})
        story.line(
            f"mno -> oem.timestamp (mno asks, oem does not allow): {status['oem.timestamp']}"
        )
        story.counts["denied"] += 1
        absent = t.policy.evaluate("host", UTILITY, "bill")
        story.line(
            f"host -> {UTILITY}.bill (granted to the host at provisioning, not installed yet): "
            f"{absent.code}"
        )

        story.title("Local attestation: meter and oem open a mutually attested session")
        backup = await story.call(t, "meter", "backup")
        if isinstance(backup, dict):
            story.line(
                "each checked the other's kernel report (measurement, owner, svn) and bound "
                "its X25519 key into its own; AEAD with counter nonces from then on"
            )
            story.line(
                f"host -> meter.backup: {backup['archived']} readings archived at oem, sealed "
                f"end to end (the kernel carried ciphertext only)"
            )

        story.title("A domain fails mid-call: its callers get ABORTED, the supervisor restarts it")
        before = t.domain("meter")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(story.call, t, "meter", "selftest", {"inject_fault": True})
            await trio.sleep(0.01)
            nursery.start_soon(story.call, t, "meter", "history")
        with trio.fail_after(5):
            after = await t.wait_for("meter", "running", generation=before.generation + 1)
        story.line(
            f"meter: generation {before.generation} -> {after.generation}, "
            f"faults {after.faults}, state {after.state}"
        )
        check = await story.call(t, "meter", "selftest")
        story.line(f"host -> meter.selftest (after restart): {_short(check)}")

        return bytes(info["timestamp_key"])


def _refusal(state: Path, envelope: bytes, files: dict[str, bytes]) -> str:
    """The error code an install of this package is refused with ("ACCEPTED" if it is not)."""
    try:
        install_package(state, envelope, files, domain=UTILITY)
    except attestation.UpdateError as exc:
        return f"{exc.code} ({exc.message})"
    return "ACCEPTED"


def _post_issue_install(story: _Story, state: Path, factory_dir: Path) -> bytes | None:
    """Offline, with the TRE stopped: the root delegates ``utility`` to its owner's new key,
    the owner signs a package of ``domains/utility``, the device installs it (and refuses a
    downgrade and a package signed by another owner). Returns the owner's raw public key,
    or None if the story did not go as it should."""
    story.title("A post-issue domain: the utility's signed package is installed after provisioning")
    owner = Ed25519PrivateKey.generate()  # Gridco Utility's own key, never at the factory
    raw = owner.public_key().public_bytes_raw()
    story.line(
        f"the TRE is stopped; Gridco Utility makes its owner key {attestation.key_id(raw)[:16]}..."
    )
    path = new_root(factory_dir, add_owners={UTILITY: raw})
    root = rotate_state(state, path.read_bytes(), int(time.time()))
    story.line(
        f"root v{root.version}, signed by the manufacturer's root keys, delegates "
        f"{', '.join(sorted(root.owners))}: rotated in on the device"
    )

    folder = Path(str(resources.files("domains") / UTILITY))
    files = {rel: file.read_bytes() for rel, file in code_files(folder)}

    def package(counter: int, key: Ed25519PrivateKey) -> bytes:
        return attestation.make_package(
            target=attestation.domain_target(UTILITY),
            counter=counter,
            expires=int(time.time()) + 30 * 86400,
            files=files,
            signers=[key],
        )

    result = install_package(state, package(UTILITY_COUNTER, owner), files, domain=UTILITY)
    story.line(
        f"package of domains/{UTILITY} signed by Gridco: {result['action']}, counter "
        f"{result['counter']}, {result['files']} files, svn {result['svn']}, owner key "
        f"{result['owner_key'][:16]}... (runs from the next boot)"
    )
    downgrade = _refusal(state, package(UTILITY_COUNTER - 1, owner), files)
    story.line(f"an older release (counter {UTILITY_COUNTER - 1}), signed by Gridco: {downgrade}")
    meter_key = attestation.load_private_key_pem(
        (factory_dir / "owners" / "meter.key").read_bytes()
    )
    assert isinstance(meter_key, Ed25519PrivateKey)
    foreign = _refusal(state, package(UTILITY_COUNTER + 1, meter_key), files)
    story.line(f"a newer release signed with meter's owner key instead: {foreign}")
    refused = downgrade.startswith(attestation.Rollback.code + " ") and foreign.startswith(
        attestation.MisScoped.code + " "
    )
    return raw if result["counter"] == UTILITY_COUNTER and refused else None


def _add_operator(story: _Story, state: Path) -> bool:
    """Offline, with the TRE stopped (``tre user add`` takes the state's lock): the operator
    user, granted pairs of the config's ``[host] calls``."""
    with open_users(state) as (users, config):
        check_grants("operator", OPERATOR_GRANTS, config)
        user = users.add(OPERATOR, "operator", _OPERATOR_PASSWORD, OPERATOR_GRANTS)
        names = [u.name for u in users.list()]
    granted = ", ".join(format_grant(pair) for pair in sorted(user.grants))
    story.line(
        f"still offline (as 'tre user add'): user {user.name}, role {user.role}, granted "
        f"{granted}; users now: {', '.join(names)}"
    )
    return user.grants == frozenset(OPERATOR_GRANTS)


def _host_client(story: _Story, path: Path) -> tuple[bool, bool, bool]:
    """Device software outside the TRE, in blocking code: the operator over the socket.
    Returns (the granted call answered, the ungranted one DENIED, a wrong password
    AUTH_FAILED)."""
    mode = path.stat().st_mode & 0o777
    story.line(f"the TRE serves the host interface on a Unix socket (mode {mode:04o})")
    with HostClient(path, timeout=10.0) as client:
        info = client.login(OPERATOR, _OPERATOR_PASSWORD)
        story.line(
            f"user {info['user']} logs in (role {info['role']}, session "
            f"{info['expires_in']:.0f} s): challenge-response, the password never crosses "
            "the socket, and the TRE proves it holds the user's verifier"
        )
        latest = client.call("meter", "latest")
        allowed = isinstance(latest, dict) and "kwh" in latest
        if allowed:
            story.line(
                f"user {OPERATOR} -> meter.latest (granted): allowed, {latest['kwh']} kWh, "
                f"reading #{latest['sample']}"
            )
        try:
            client.call(UTILITY, "tariff", TARIFF)
            refused = "ACCEPTED (it should have been refused)"
        except ipc.TREError as exc:  # DENIED is expected; any other code fails the step
            refused = f"refused, {exc.code} ({exc.message})"
        story.line(f"user {OPERATOR} -> {UTILITY}.tariff (not granted): {refused}")
    with HostClient(path, timeout=10.0) as client:
        try:
            client.login(OPERATOR, _WRONG_PASSWORD)
            wrong = "LOGGED IN (it should have been refused)"
        except ipc.TREError as exc:  # AUTH_FAILED is expected
            wrong = f"{exc.code} ({exc.message}); the failure is counted durably (3 in a row "
            wrong += "start a back-off, 10 lock the user)"
        story.line(f"user {OPERATOR} with a wrong password: {wrong}")
    return (
        allowed,
        refused.startswith(f"refused, {Denied.code} "),
        wrong.startswith(ipc.AuthFailed.code + " "),
    )


async def _host_story(story: _Story, t: TRE) -> bool:
    """Users and the host interface: the operator added offline logs in over the Unix
    socket; a granted call is answered, an ungranted one refused, a wrong password too."""
    story.title("Users and the host interface: a host call allowed and one refused")
    # A folder of its own, with a short path: Unix socket paths are limited to ~100 bytes.
    with tempfile.TemporaryDirectory(prefix="tre-") as folder:
        async with trio.open_nursery() as nursery:
            path: Path = await nursery.start(t.serve_host, Path(folder) / "host.sock")
            try:
                outcome = await trio.to_thread.run_sync(_host_client, story, path)
            except (ipc.TREError, OSError) as exc:  # e.g. the operator's own login refused
                story.line(f"the host client failed: {type(exc).__name__}: {exc}")
                outcome = (False, False, False)
            nursery.cancel_scope.cancel()
    named = [e for e in t.events if e.domain == "host" and f"user {OPERATOR!r}" in e.detail]
    for event in named:
        if event.kind in ("denied", "login_failed"):
            story.line(f"kernel event {event.kind} (host): {event.detail}")
    kinds = {e.kind for e in named}
    return all(outcome) and {"login", "denied", "login_failed"} <= kinds


async def _utility_story(story: _Story, t: TRE, interval: float) -> bool:
    """The installed utility at work: a sealed tariff, a statement signed in its keystore,
    checked with its public key; and where it shows in the domains, policy and attestation."""
    story.title("The utility at work: a sealed tariff, a bill signed with its own key")
    d = t.domain(UTILITY)
    story.line(
        f"{d.id} ({d.owner}, svn {d.svn}) is {d.state}, booted from its package: "
        f"{len(t.domains())} domains, {', '.join(x.id for x in t.domains())}"
    )
    tariff = await story.call(t, UTILITY, "tariff", TARIFF)
    story.line(
        f"host -> utility.tariff: {tariff['price_per_kwh']:.2f} {tariff['currency']}/kWh + "
        f"{tariff['standing_charge']:.2f} per bill, version {tariff['version']} (a keystore "
        "record sealed under OWNER)"
    )
    try:
        await t.call(UTILITY, "tariff", {**TARIFF, "price_per_kwh": -0.25})
        bad = "ACCEPTED"
    except RemoteError as exc:
        bad = f"{exc.remote_code} ({exc.remote_message})"
    story.line(f"a negative price: refused by the domain, {bad}")
    history: dict[str, Any] = {"readings": []}
    with trio.move_on_after(max(5.0, interval * 20)):
        while len(history["readings"]) < 2:
            await trio.sleep(interval)
            history = await t.call("meter", "history")
    bill = await story.call(t, UTILITY, "bill", history)
    key = await story.call(t, UTILITY, "public_key")
    if isinstance(bill, CallError) or isinstance(key, CallError):
        return False
    valid = verify_ed25519(key["public"], bill["statement"], bill["signature"])
    statement = msgpack.unpackb(bill["statement"], raw=False)
    altered = msgpack.packb({**statement, "amount": 0.0}, use_bin_type=True)
    forged = verify_ed25519(key["public"], altered, bill["signature"])
    story.line(
        f"host -> utility.bill with meter.history ({statement['readings']} readings, "
        f"#{statement['first_sample']}..#{statement['last_sample']}): {statement['kwh']} kWh, "
        f"{statement['amount']} {statement['currency']}"
    )
    story.line(
        f"statement signature, checked with utility.public_key: "
        f"{'verified' if valid else 'NOT verified'}; with the amount changed to 0: "
        f"{'still valid (WRONG)' if forged else 'invalid'}"
    )
    decision = t.policy.evaluate("host", UTILITY, "bill")
    story.line(f"policy: host -> utility.bill {decision.code} ({decision.reason})")
    alias = t.alias_certificate(UTILITY)
    attestation.verify_chain(
        alias, [t.device_certificate], t._kernel.device.ca_cert, dt.datetime.now(dt.UTC)
    )
    story.line(
        f"utility's alias certificate (measurement {t.measurement(UTILITY).hex()[:12]}...) "
        "chains to the manufacturer CA through the DeviceID certificate"
    )
    return bad.startswith("BAD_TARIFF ") and valid and not forged


@attrs.frozen
class _DemoMid:
    """3GPP TS 35.208 test set 1 (also in shared/vectors): the MID the demo provisions."""

    imsi: str = "001010123456789"
    k: bytes = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
    opc: bytes = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")
    rand: bytes = bytes.fromhex("23553cbe9637a89d218ae64dae47bf35")
    sqn: int = 0xFF9BB4D0B607
    amf: bytes = bytes.fromhex("b9b9")
    res: str = "a54211d5e3ba50bf"


_MID = _DemoMid()


async def _mid_story(story: _Story, t: TRE, factory_dir: Path) -> None:
    """The operator provisions a MID bound to this device; the device runs UMTS AKA."""
    story.title("A MID: the operator's package, bound to this device, then UMTS AKA inside mno")
    mid = _MID
    key = await story.call(t, "mno", "mid_key")
    issuer = attestation.load_private_key_pem((factory_dir / "owners" / "mno.key").read_bytes())
    assert isinstance(issuer, Ed25519PrivateKey)
    header = pack_header(mid.imsi, os.urandom(TXID_LEN), time.time_ns(), key["ueid"])
    secret = {"imsi": mid.imsi, "k": mid.k, "opc": mid.opc, "sqn": 0, "amf": mid.amf}
    enc, ct = hpke_seal(
        X25519PublicKey.from_public_bytes(key["public"]),
        msgpack.packb(secret, use_bin_type=True),
        mid_info(key["ueid"]),
        header,
    )
    sig = issuer.sign(signed_bytes(header, enc, ct))
    package = msgpack.packb({"header": header, "enc": enc, "ct": ct, "sig": sig}, use_bin_type=True)
    installed = await story.call(t, "mno", "install_package", {"package": package})
    story.line(
        f"HPKE-sealed to mno's key, signed by the operator: installed IMSI {installed['imsi']}"
        " (K and OPc opened inside the keystore, never in the domain)"
    )
    await story.call(t, "mno", "enable", {"imsi": mid.imsi})
    m = Milenage(mid.k, mid.opc)  # the network side (the operator's AuC)
    sqn = mid.sqn.to_bytes(6, "big")
    ak = m.f5(mid.rand)
    autn = bytes(a ^ b for a, b in zip(sqn, ak, strict=True)) + mid.amf
    autn += m.f1(mid.rand, sqn, mid.amf)
    answer = await story.call(
        t, "mno", "authenticate", {"imsi": mid.imsi, "rand": mid.rand, "autn": autn}
    )
    ok = "matches TS 35.208 test set 1" if answer["res"].hex() == mid.res else "MISMATCH"
    story.line(f"AKA with the network's AUTN: RES {answer['res'].hex()} ({ok}), CK and IK derived")
    replay = await story.call(
        t, "mno", "authenticate", {"imsi": mid.imsi, "rand": mid.rand, "autn": autn}
    )
    story.line(f"the same AUTN again: resynchronisation token AUTS {replay['auts'].hex()[:12]}...")
    story.counts["mid"] = int("auts" in replay and answer["res"].hex() == mid.res)


async def _second_boot(
    story: _Story,
    state: Path,
    first_key: bytes,
    factory_dir: Path,
    interval: float,
    utility_owner: bytes | None,
) -> None:
    async with open_tre(state=state) as t:
        story.title(f"Reboot (boot {t.device.boot_count}): keys survive, sealed to each domain")
        info = await story.call(t, "oem", "info")
        same = "the same" if info["timestamp_key"] == first_key else "a DIFFERENT"
        story.line(f"oem's timestamp key after reboot: {same} key, unsealed from its keystore")

        worked = await _utility_story(story, t, interval)
        story.counts["host_users"] = int(await _host_story(story, t))
        await _mid_story(story, t, factory_dir)

        story.title("Remote attestation: a verifier checks the device with its own nonce")
        verifier_nonce = os.urandom(16)
        evidence = t.attest(verifier_nonce)
        ca = t._kernel.device.ca_cert
        reference = _golden(t)
        now = dt.datetime.now(dt.UTC)
        result = attestation.verify_evidence(
            evidence, ca=ca, nonce=verifier_nonce, now=now, reference=reference
        )
        story.line(
            f"EAT of {len(evidence)} bytes (COSE_Sign1 by the DeviceID key, {len(t.domains())} "
            f"nested domain tokens): {result.status}"
        )
        story.line(
            "vector: "
            + ", ".join(f"{k} {v}" for k, v in sorted(result.vector.items()) if v != "none")
        )
        replay = attestation.verify_evidence(
            evidence, ca=ca, nonce=os.urandom(16), now=now, reference=reference
        )
        story.line(f"the same evidence under another nonce (a replay): {replay.status}")
        token = result.domains.get(UTILITY, {})
        owner_hash = attestation.owner_key_hash(utility_owner) if utility_owner else b""
        named = "Gridco's package key" if token.get("owner_hash") == owner_hash.hex() else "?"
        story.line(
            f"utility's nested token: {token.get('verdict', 'missing')}, owner hash of {named}"
        )
        story.counts["post_issue"] = int(
            worked and token.get("verdict") == "affirming" and named != "?"
        )
        story.counts["verified"] = int(
            result.status == "affirming" and replay.status != "affirming"
        )

        story.title("Tamper response: a physical attack on mno's part of the device is detected")
        locked = await t.tamper("mno", "enclosure opened near the modem")
        story.line(f"locked: {', '.join(locked)}; its keys cannot be used from now on")
        await story.call(t, "mno", "status")
        reading = await story.call(t, "oem", "time")
        story.line(f"host -> oem.time (unaffected): monotonic {reading['monotonic']:.3f}")

        story.title("Summary")
        c = story.counts
        story.line(
            f"{c['ok']} calls answered, {c['denied']} denied by policy, {c['aborted']} aborted "
            f"by a failing domain, {c['locked']} refused as locked, {c['other']} other errors"
        )
        for d in t.domains():
            story.line(f"{d.id:<7} state {d.state:<8} generation {d.generation}  served {d.served}")


def _audit_verification(story: _Story, state: Path, user: str | None = None) -> bool:
    """The secure audit record, checked as the device owner would (``tre audit verify``);
    with ``user``, also the TRE-wide entries that name that user of the host interface
    (a denial and a failed login must be among them)."""
    story.title("Audit verification: the secure audit record of both boots")
    with open_audit_state(state) as view:
        mno = view.read("mno")
        tre_wide = view.read("tre") if user is not None else []
        cp = view.latest()
        proof = view.prove_inclusion(mno[-1].seq) if mno[-1].seq < cp.size else None
        result = view.verify()
    kinds = ", ".join(sorted({e.kind for e in mno}))
    story.line(f"mno's own entries ({len(mno)}, readable only with mno's audit key): {kinds}")
    named = {
        e.kind
        for e in tre_wide
        if isinstance(e.body, dict) and f"user {user!r}" in str(e.body.get("detail", ""))
    }
    if user is not None:
        story.line(
            f"TRE-wide entries naming user {user!r} (the host interface): "
            f"{', '.join(sorted(named)) or 'none'}"
        )
    if proof is not None:
        story.line(
            f"entry {proof.data['index']} is in the checkpoint of size {cp.size} "
            f"(signed by the DeviceID key): inclusion proof of {len(proof.data['proof'])} "
            f"hashes {'verified' if proof.verified else 'NOT verified'}"
        )
    verdict = "verified" if result.ok else f"NOT verified: {result.problems[0]}"
    story.line(f"audit log: {result.entries} entries, {result.checkpoints} checkpoints, {verdict}")
    users_ok = user is None or {"denied", "login_failed"} <= named
    return result.ok and (proof is None or proof.verified) and users_ok


async def _demo(out: TextIO, interval: float) -> int:
    story = _Story(out)
    with tempfile.TemporaryDirectory(prefix="tre-demo-") as tmp:
        state = _factory_and_provision(story, Path(tmp), interval)
        factory_dir = Path(tmp) / "factory"
        first_key = await _first_boot(story, state, interval)
        owner = await trio.to_thread.run_sync(_post_issue_install, story, state, factory_dir)
        added = await trio.to_thread.run_sync(_add_operator, story, state)
        await _second_boot(story, state, first_key, factory_dir, interval, owner)
        audited = await trio.to_thread.run_sync(_audit_verification, story, state, OPERATOR)
    c = story.counts
    ok = c["ok"] >= 6 and c["aborted"] >= 1 and c["denied"] >= 2 and c["locked"] == 1
    ok = ok and c["other"] == 0 and c["verified"] == 1 and c["mid"] == 1 and audited
    ok = ok and c["post_issue"] == 1 and added and c["host_users"] == 1
    print("\ndemo " + ("completed" if ok else "did NOT go as expected"), file=out)
    return 0 if ok else 1


def run_demo(
    interval: float = 0.1, out: TextIO | None = None, runner: Callable[..., Any] = trio.run
) -> int:
    # sys.stdout is looked up at call time (a default argument would freeze the stream
    # that was current at import, which test runners replace).
    return int(runner(_demo, out if out is not None else sys.stdout, interval))
