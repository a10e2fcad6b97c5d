"""Attacks on attestation at the level of real devices and a running kernel.

tests/attestation/test_attacks.py attacks the verifier with hand-built evidence; this
module completes it with what only whole devices and a running TRE can show. Each test (or
table row) names what it expects: a problem code and status of
:func:`attestation.verify_evidence`, or the outcome the session layer gives.

Evidence: devices A and B of one factory (same build), C of the same factory with an extra
folder plugin (another build), X of another manufacturer; nested tokens swapped between
devices; a domain's code changed or rolled back after the reference was taken; domains
and the whole TRE locked by a tamper response (from the CLI, the API, another process).
Sessions and reports, through the kernel: peers that fail ``expect``; a report made for A
relayed by C; old, replayed, reflected and reordered session messages; a session whose
responder restarts.

What the verifier does with a locked domain: the problem ``domain-locked``, the domain's
verdict and the executables claim "contraindicated" (AR4SI 96), so never affirming; the
other domains keep their own verdicts. A locked TRE adds ``tre-not-secured`` (hardware 96).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import cbor2
import pytest
import trio
from cryptography import x509

import attestation
import ipc
import tre
from attestation._cose import encode
from tests.attest_helpers import (
    NONCE,
    NONCE_HEX,
    appraise,
    attest,
    check_token,
    copy_plugin,
    load_ca,
    plugin_config,
    resign,
    set_svn,
    submods,
    take_reference,
    tre_cli,
)
from tests.device_helpers import IMEI, make_factory, provision_device
from tre._config import load_config
from tre._provision import provision
from tre.testing import open_test_tre, spec

REFERENCE_DOMAINS = ("meter", "mno", "oem", "vault")
OTHER_NONCE = bytes(range(0x30, 0x50))


# --- devices ----------------------------------------------------------------------------------


@attrs.frozen
class Fleet:
    """Devices the table rows only read: their states, evidence for NONCE, references."""

    root: Path
    factory: Path
    ca: x509.Certificate
    a: Path
    b: Path
    c: Path
    x: Path
    evidence: Mapping[str, bytes]
    reference: Mapping[str, attestation.Reference]


def provision_with_plugin(state: Path, factory: Path, folder: Path, svn: int | None = None) -> Path:
    """A device of ``factory`` with the reference domains and a copy of the hello plugin
    (in ``folder``/hello, whose code the test may then change)."""
    plugin = copy_plugin(folder / "hello", svn)
    provision(state, factory, config=load_config(plugin_config(folder / "config", plugin)))
    return plugin


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    root = tmp_path_factory.mktemp("fleet")
    factory = make_factory(root / "factory")
    a, b, c, x = (root / n for n in ("a", "b", "c", "x"))
    provision_device(a, factory, imei=IMEI)
    provision_device(b, factory)
    provision_with_plugin(c, factory, root / "c-build")
    provision_device(x, make_factory(root / "other-factory"))
    states = {"a": a, "b": b, "c": c, "x": x}
    return Fleet(
        root=root,
        factory=factory,
        ca=load_ca(factory),
        a=a,
        b=b,
        c=c,
        x=x,
        evidence={name: attest(state) for name, state in states.items()},
        reference={name: take_reference(state) for name, state in states.items()},
    )


def fresh(fleet: Fleet, tmp_path: Path) -> Path:
    """A device of the fleet's factory that a test may boot and tamper with."""
    state = tmp_path / "dev"
    provision_device(state, fleet.factory)
    return state


def problems_by_domain(result: attestation.Appraisal) -> dict[str, list[str]]:
    return {name: list(entry["reasons"]) for name, entry in result.domains.items()}


# --- evidence rows (table) ---------------------------------------------------------------

Built = tuple[bytes, dict[str, Any]]


@attrs.frozen
class Row:
    name: str
    build: Callable[[Fleet], Built]
    #: every problem code the appraisal must report (no other)
    problems: frozenset[str]
    status: str
    #: domain -> the verdict it must get
    verdicts: Mapping[str, str] = attrs.field(factory=dict)


def swapped_oem(fleet: Fleet, *, resigned: bool) -> bytes:
    """A's evidence with its oem token replaced by B's (same factory, same code, same owner:
    the claims are identical but for the UEID and the alias certificate)."""
    tokens = {**submods(fleet.evidence["a"]), "oem": submods(fleet.evidence["b"])["oem"]}
    if resigned:  # a compromised TRE A, holding its DeviceID key
        return resign(fleet.a, fleet.evidence["a"], submods=tokens)
    # An attacker without the key edits the payload and keeps A's signature.
    item = cbor2.loads(fleet.evidence["a"])
    protected, unprotected, payload, signature = item.value
    claims = dict(cbor2.loads(payload))
    claims[266] = tokens
    return encode(cbor2.CBORTag(18, [protected, dict(unprotected), encode(claims), signature]))


def _everyone(verdict: str) -> dict[str, str]:
    return dict.fromkeys(REFERENCE_DOMAINS, verdict)


ROWS = [
    Row(
        "A's evidence with A's reference values",
        lambda f: (f.evidence["a"], {"reference": f.reference["a"]}),
        frozenset(),
        "affirming",
        _everyone("affirming"),
    ),
    Row(
        # Reference values describe a build (code, manifest, owner key, svn), not a device:
        # the identity of a device is its DeviceID chain and UEID.
        "A's evidence with B's reference values (same maker, same build)",
        lambda f: (f.evidence["a"], {"reference": f.reference["b"]}),
        frozenset(),
        "affirming",
        _everyone("affirming"),
    ),
    Row(
        "A's evidence with C's reference values (same maker, a build with one more domain)",
        lambda f: (f.evidence["a"], {"reference": f.reference["c"]}),
        # another build: its compiled policy differs too (the reference lists policy hashes)
        frozenset({"missing-domain", "unknown-policy"}),
        "contraindicated",  # an unknown policy (configuration) is contraindicated
        {**_everyone("affirming"), "hello": "warning"},
    ),
    Row(
        "C's evidence with A's reference values (a domain the verifier does not know)",
        lambda f: (f.evidence["c"], {"reference": f.reference["a"]}),
        frozenset({"unknown-domain", "unknown-policy"}),
        "contraindicated",
        {**_everyone("affirming"), "hello": "contraindicated"},
    ),
    Row(
        "A's evidence with X's reference values (another maker: other owner keys)",
        lambda f: (f.evidence["a"], {"reference": f.reference["x"]}),
        frozenset({"unknown-measurement", "owner-mismatch"}),
        "contraindicated",
        _everyone("contraindicated"),
    ),
    Row(
        "X's evidence under A's manufacturer CA",
        lambda f: (f.evidence["x"], {"reference": f.reference["x"]}),
        frozenset({"untrusted-chain"}),
        "contraindicated",
    ),
    Row(
        "oem's token swapped for B's oem token, re-signed with A's DeviceID key",
        lambda f: (swapped_oem(f, resigned=True), {"reference": f.reference["a"]}),
        frozenset({"submod-foreign-device"}),
        "contraindicated",
        {**_everyone("affirming"), "oem": "contraindicated"},
    ),
    Row(
        "oem's token swapped for B's oem token, A's signature kept",
        lambda f: (swapped_oem(f, resigned=False), {"reference": f.reference["a"]}),
        frozenset({"bad-signature"}),
        "contraindicated",
    ),
    Row(
        "A's evidence replayed under another nonce",
        lambda f: (f.evidence["a"], {"reference": f.reference["a"], "nonce": OTHER_NONCE}),
        frozenset({"nonce-mismatch"}),
        "contraindicated",
    ),
    Row(
        "A's evidence after the verifier saw a later boot of A",
        lambda f: (f.evidence["a"], {"reference": f.reference["a"], "last_bootcount": 1}),
        frozenset({"bootcount-rollback"}),
        "contraindicated",
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_evidence_row(fleet: Fleet, row: Row) -> None:
    evidence, over = row.build(fleet)
    result = appraise(evidence, fleet.ca, **over)
    assert set(result.problems) == row.problems, result.details
    assert result.status == row.status, result.details
    for domain, verdict in row.verdicts.items():
        assert result.domains[domain]["verdict"] == verdict, (domain, result.details)


def test_the_swapped_token_is_genuine_on_its_own(fleet: Fleet) -> None:
    """The row above is a real attack: B's oem token is a valid token of the same code and
    owner; only the alias certificate's issuer (B's DeviceID) and the UEID give it away."""
    a_oem = check_token(submods(fleet.evidence["a"])["oem"][2:])
    b_oem = check_token(submods(fleet.evidence["b"])["oem"][2:])
    differ = {k for k in a_oem.claims if a_oem.claims[k] != b_oem.claims[k]}
    assert differ <= {6, 256}  # iat and ueid
    assert a_oem.chain[0].issuer != b_oem.chain[0].issuer


# --- a domain's code or svn changed after the reference was taken ------------------------


async def test_a_domain_whose_code_changed_is_unknown(fleet: Fleet, tmp_path: Path) -> None:
    """Copy a plugin folder into a device's config, take the reference, change one byte of
    the plugin's code, attest again: ``unknown-measurement`` for that domain only."""
    state = tmp_path / "dev"
    plugin = await trio.to_thread.run_sync(provision_with_plugin, state, fleet.factory, tmp_path)
    reference = await trio.to_thread.run_sync(take_reference, state)
    assert appraise(attest(state), fleet.ca, reference=reference).status == "affirming"

    code = plugin / "hello.py"
    data = bytearray(code.read_bytes())
    data[data.index(b"minimal")] ^= 0x20  # "minimal" -> "Minimal", in the docstring
    code.write_bytes(bytes(data))

    offline = appraise(attest(state), fleet.ca, reference=reference)
    assert offline.problems == ("unknown-measurement",), offline.details
    assert offline.status == "warning"
    assert problems_by_domain(offline)["hello"] == ["unknown-measurement"]
    assert offline.domains["hello"]["verdict"] == "warning"
    assert {offline.domains[d]["verdict"] for d in REFERENCE_DOMAINS} == {"affirming"}
    assert offline.domains["hello"]["measurement"] not in {
        m.hex() for m in reference.domains["hello"].measurements
    }

    # At the next boot the integrity check (against the signed manifest) catches the change
    # before the domain runs: hello is locked, and the evidence says so.
    with trio.fail_after(20):
        async with tre.open_tre(state=state) as t:
            with pytest.raises(tre.Locked):
                await t.call("hello", "greet", "verifier")
            online = appraise(t.attest(NONCE), fleet.ca, reference=reference)
            assert "domain-locked" in online.problems, online.details
            assert online.domains["hello"]["measurement"] == t.measurement("hello").hex()


async def test_a_domain_rolled_back_below_the_minimum_svn(fleet: Fleet, tmp_path: Path) -> None:
    """Versions 1 and 2 are both known builds, but version 2 fixed a flaw (min svn 2): a
    device rolled back to version 1 is ``svn-too-low``; with only version 2 listed, it is
    also ``unknown-measurement``."""
    state = tmp_path / "dev"
    plugin = await trio.to_thread.run_sync(provision_with_plugin, state, fleet.factory, tmp_path)
    version_1 = await trio.to_thread.run_sync(take_reference, state)
    set_svn(plugin, 2)
    version_2 = await trio.to_thread.run_sync(take_reference, state)
    hello_1, hello_2 = version_1.domains["hello"], version_2.domains["hello"]
    assert (hello_1.min_svn, hello_2.min_svn) == (1, 2)
    both = attrs.evolve(
        version_2,
        domains={
            **version_2.domains,
            "hello": attrs.evolve(
                hello_2, measurements=hello_1.measurements | hello_2.measurements
            ),
        },
    )
    assert appraise(attest(state), fleet.ca, reference=both).status == "affirming"

    set_svn(plugin, 1)  # the rollback
    result = appraise(attest(state), fleet.ca, reference=both)
    assert result.problems == ("svn-too-low",), result.details
    assert result.status == "warning"
    assert result.domains["hello"]["svn"] == 1
    assert result.domains["hello"]["verdict"] == "warning"

    strict = appraise(attest(state), fleet.ca, reference=version_2)
    assert set(strict.problems) == {"unknown-measurement", "svn-too-low"}, strict.details
    assert problems_by_domain(strict)["hello"] == ["unknown-measurement", "svn-too-low"]


# --- the TRE's own code and policy ----------------------------------------------------------------


def _tre_code_changed(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The TRE's code as measured at boot (tre/_measure.py): another build of the TRE.
    monkeypatch.setattr("tre._device.tre_code_hash", lambda: hashlib.sha256(b"evil").digest())


def _policy_changed(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The device's config edited: the host loses its grants on mno (status and the MIDs).
    config = state / "config.toml"
    text = config.read_text()
    grant = re.compile(r'\[\[host\.calls\]\]\ndomain = "mno"\nmethods = \[[^\]]*"status"[^\]]*\]\n')
    assert grant.search(text)
    config.write_text(grant.sub("", text))


TRE_CHANGES = {
    "tre-measurement": (_tre_code_changed, "unknown-tre-measurement"),
    "policy-hash": (_policy_changed, "unknown-policy"),
}


@pytest.mark.parametrize("change", TRE_CHANGES, ids=TRE_CHANGES.keys())
def test_a_changed_tre_is_caught_by_a_reference_that_lists_it(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """The verifier checks the TRE's own measurement and policy hash when the reference
    lists them (added here by hand from the known-good evidence)."""
    state = fresh(fleet, tmp_path)
    good = check_token(attest(state)).claims
    reference = attrs.evolve(
        take_reference(state),
        tre_measurements=frozenset({good[-75001]}),
        policy_hashes=frozenset({good[-75002]}),
    )
    assert appraise(attest(state), fleet.ca, reference=reference).status == "affirming"
    apply, problem = TRE_CHANGES[change]
    apply(state, monkeypatch)
    result = appraise(attest(state), fleet.ca, reference=reference)
    assert result.problems == (problem,), result.details
    assert result.status == "contraindicated"


@pytest.mark.parametrize("change", TRE_CHANGES, ids=TRE_CHANGES.keys())
def test_a_changed_tre_is_caught_by_the_reference_tre_reference_writes(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    state = fresh(fleet, tmp_path)
    reference_file = tmp_path / "reference.json"
    take_reference(state, reference_file)
    apply, problem = TRE_CHANGES[change]
    apply(state, monkeypatch)
    attest(state, NONCE, tmp_path / "ev.cbor")
    code, out, _ = tre_cli(
        "verify", "--evidence", tmp_path / "ev.cbor", "--ca", fleet.factory / "ca.pem",
        "--nonce", NONCE_HEX, "--reference", reference_file, "--json",
    )  # fmt: skip
    assert code == 1
    assert problem in json.loads(out)["problems"]


# --- tamper responses -----------------------------------------------------------------------------


def assert_locked(result: attestation.Appraisal, locked: set[str], *, tre_locked: bool) -> None:
    expected = {"domain-locked"} | ({"tre-not-secured"} if tre_locked else set())
    assert set(result.problems) == expected, result.details
    assert result.status == "contraindicated"
    assert result.vector["executables"] == "contraindicated"
    for name, entry in result.domains.items():
        if name in locked:
            assert entry["state"] == "locked"
            assert entry["reasons"] == ["domain-locked"]
            assert entry["verdict"] == "contraindicated"
        else:
            assert entry["state"] in {"installed", "active"}
            assert entry["verdict"] == "affirming"
    if tre_locked:
        assert result.vector["hardware"] == "contraindicated"


@pytest.mark.parametrize("scope", ["domain", "all"])
def test_tre_tamper_then_tre_attest_and_verify(fleet: Fleet, tmp_path: Path, scope: str) -> None:
    state = fresh(fleet, tmp_path)
    reference = tmp_path / "reference.json"
    take_reference(state, reference)
    which = ["--domain", "mno"] if scope == "domain" else ["--all"]
    code, out, err = tre_cli("tamper", "--state", state, *which)
    assert code == 0, err
    evidence = attest(state, NONCE, tmp_path / "ev.cbor")
    lifecycle = check_token(evidence).claims[-75003]
    assert lifecycle == ("secured" if scope == "domain" else "locked")

    code, out, err = tre_cli(
        "verify", "--evidence", tmp_path / "ev.cbor", "--ca", fleet.factory / "ca.pem",
        "--nonce", NONCE_HEX, "--reference", reference, "--json",
    )  # fmt: skip
    assert (code, err) == (1, "")
    locked = {"mno"} if scope == "domain" else set(REFERENCE_DOMAINS)
    values = attestation.parse_reference(json.loads(reference.read_text()))
    result = appraise(evidence, fleet.ca, reference=values)
    assert_locked(result, locked, tre_locked=scope == "all")
    assert json.loads(out)["problems"] == list(result.problems)


@pytest.mark.parametrize("scope", ["domain", "all"])
async def test_tamper_at_run_time_shows_in_the_next_evidence(
    fleet: Fleet, tmp_path: Path, scope: str
) -> None:
    state = fresh(fleet, tmp_path)
    reference = await trio.to_thread.run_sync(take_reference, state)
    with trio.fail_after(20):
        async with tre.open_tre(state=state) as t:
            before = appraise(t.attest(NONCE), fleet.ca, reference=reference)
            assert before.status == "affirming", before.details
            locked = await t.tamper("mno" if scope == "domain" else None, "test")
            assert t.domain("mno").state == "locked"
            after = appraise(t.attest(NONCE), fleet.ca, reference=reference)
            assert_locked(after, set(locked), tre_locked=scope == "all")
            assert after.bootcount == before.bootcount == 1
    # ...and a later boot of the device still says so.
    with trio.fail_after(20):
        async with tre.open_tre(state=state) as t:
            again = appraise(t.attest(NONCE), fleet.ca, reference=reference)
            assert_locked(again, set(locked), tre_locked=scope == "all")
            assert again.bootcount == 2


async def test_a_tamper_from_another_process_reaches_the_running_evidence(
    fleet: Fleet, tmp_path: Path
) -> None:
    state = fresh(fleet, tmp_path)
    reference = await trio.to_thread.run_sync(take_reference, state)
    with trio.fail_after(20):
        async with tre.open_tre(state=state, lifecycle_poll=0.05) as t:
            assert appraise(t.attest(NONCE), fleet.ca, reference=reference).problems == ()
            code, _, err = await trio.to_thread.run_sync(
                tre_cli, "tamper", "--state", state, "--domain", "vault"
            )
            assert code == 0, err
            await t.wait_for("vault", "locked")
            result = appraise(t.attest(NONCE), fleet.ca, reference=reference)
            assert_locked(result, {"vault"}, tre_locked=False)


# --- sessions and reports through the kernel ------------------------------------------------------


class Shared:
    """What the session domains share with the test (reset before each test)."""

    def __init__(self) -> None:
        self.alpha_expect = tre.Expect()
        self.bravo_expect = tre.Expect()
        self.sessions: list[ipc.SecureSession] = []
        self.received: list[bytes] = []


SHARED = Shared()


@pytest.fixture
def shared() -> Iterator[Shared]:
    SHARED.__init__()  # type: ignore[misc]
    yield SHARED


class Alpha(tre.Domain):
    """The responder: accepts sessions, stores sealed messages, authenticates callers by a
    local report (its own nonce, the report's subject must be the caller)."""

    def __init__(self, ctx: tre.Context) -> None:
        super().__init__(ctx)
        self.nonces: dict[str, bytes] = {}

    @tre.service
    async def session(self, caller: str, body: Any) -> Any:
        return self.ctx.accept_session(caller, body, expect=SHARED.alpha_expect)

    @tre.service
    async def put(self, caller: str, body: Any) -> Any:
        session = self.ctx.session(caller)
        plain = session.open(body)
        SHARED.received.append(plain)
        return session.seal(b"ack:" + plain)

    @tre.service
    async def nonce(self, caller: str, body: Any) -> bytes:
        self.nonces[caller] = os.urandom(16)
        return self.nonces[caller]

    @tre.service
    async def auth(self, caller: str, body: Any) -> Any:
        nonce = self.nonces.pop(caller, None)
        if nonce is None:
            raise tre.ServiceError("NO_NONCE", "ask for a nonce first")
        try:
            report = self.ctx.check_report(body)
        except attestation.ReportInvalid:
            raise tre.ServiceError("REPORT_INVALID", "not a report for alpha") from None
        if report.subject != caller:
            raise tre.ServiceError("NOT_THE_CALLER", f"the report is about {report.subject}")
        if report.nonce != nonce:
            raise tre.ServiceError("STALE", "the report is not for this nonce")
        return {"subject": report.subject, "svn": report.svn}

    @tre.service
    async def has_session(self, caller: str, body: Any) -> bool:
        try:
            self.ctx.session(body)
        except tre.SessionRefused:
            return False
        return True

    @tre.service
    async def crash(self, caller: str, body: Any) -> None:
        raise RuntimeError("injected fault")


class Bravo(tre.Domain):
    """The initiator; hands its sessions to the test, which seals what Bravo then sends."""

    @tre.service
    async def open(self, caller: str, body: Any) -> Any:
        try:
            session = await self.ctx.open_session("alpha", expect=SHARED.bravo_expect)
        except tre.SessionRefused as exc:
            return {"refused": exc.reason}
        SHARED.sessions.append(session)
        return {"opened": len(SHARED.sessions)}

    @tre.service
    async def send(self, caller: str, body: Any) -> Any:
        try:
            return await self.ctx.call("alpha", "put", body)
        except tre.RemoteError as exc:
            return {"remote": exc.remote_code, "message": exc.remote_message}

    @tre.service
    async def report_for(self, caller: str, body: Any) -> bytes:
        """A report about bravo for anyone who asks (naive, on purpose)."""
        return self.ctx.report(body["target"], body["nonce"], body["data"])

    @tre.service
    async def auth(self, caller: str, body: Any) -> Any:
        nonce = await self.ctx.call("alpha", "nonce")
        return await self.ctx.call("alpha", "auth", self.ctx.report("alpha", nonce, bytes(32)))


class Charlie(tre.Domain):
    """Tries to pass for bravo with alpha."""

    async def _auth(self, report: bytes) -> Any:
        try:
            return await self.ctx.call("alpha", "auth", report)
        except tre.RemoteError as exc:
            return exc.remote_code

    async def _bravo_report(self, target: str, nonce: bytes, data: bytes) -> bytes:
        body = {"target": target, "nonce": nonce, "data": data}
        report: bytes = await self.ctx.call("bravo", "report_for", body)
        return report

    @tre.service
    async def relay(self, caller: str, body: Any) -> Any:
        """A report bravo made for alpha, bound to alpha's nonce for charlie, presented by
        charlie."""
        nonce = await self.ctx.call("alpha", "nonce")
        return await self._auth(await self._bravo_report("alpha", nonce, bytes(32)))

    @tre.service
    async def misdirected(self, caller: str, body: Any) -> Any:
        """A report bravo made for charlie, presented to alpha."""
        nonce = await self.ctx.call("alpha", "nonce")
        return await self._auth(await self._bravo_report("charlie", nonce, bytes(32)))

    @tre.service
    async def own(self, caller: str, body: Any) -> Any:
        nonce = await self.ctx.call("alpha", "nonce")
        return await self._auth(self.ctx.report("alpha", nonce, bytes(32)))

    @tre.service
    async def impersonate(self, caller: str, body: Any) -> Any:
        """A session handshake with alpha, finished with bravo's report bound to it."""
        hs = ipc.Handshake.initiator()
        hello = {"step": "hello", "nonce": hs.nonce, "public": hs.public}
        reply = await self.ctx.call("alpha", "session", hello)
        report = await self._bravo_report("alpha", reply["nonce"], hs.transcript_hello())
        try:
            await self.ctx.call("alpha", "session", {"step": "finish", "report": report})
        except tre.RemoteError as exc:
            return [exc.remote_code, exc.remote_message]
        return "accepted"

    @tre.service
    async def stale_finish(self, caller: str, body: Any) -> Any:
        """Two handshakes with alpha; the second finished with charlie's own report made
        for the first (a replayed handshake message)."""
        first, second = ipc.Handshake.initiator(), ipc.Handshake.initiator()
        reply = await self.ctx.call(
            "alpha", "session", {"step": "hello", "nonce": first.nonce, "public": first.public}
        )
        stale = self.ctx.report("alpha", reply["nonce"], first.transcript_hello())
        await self.ctx.call(
            "alpha", "session", {"step": "hello", "nonce": second.nonce, "public": second.public}
        )
        try:
            await self.ctx.call("alpha", "session", {"step": "finish", "report": stale})
        except tre.RemoteError as exc:
            return [exc.remote_code, exc.remote_message]
        return "accepted"


ALPHA = ["session", "put", "nonce", "auth"]
HOST = {
    "alpha": ["has_session", "crash"],
    "bravo": ["open", "send", "auth"],
    "charlie": ["relay", "misdirected", "own", "impersonate", "stale_finish"],
}


def session_domains() -> list[tre.DomainSpec]:
    return [
        spec(
            Alpha,
            id="alpha",
            owner="Alpha Corp",
            svn=2,
            services={
                **{m: ["bravo", "charlie"] for m in ALPHA},
                "has_session": ["host"],
                "crash": ["host"],
            },
        ),
        spec(
            Bravo,
            id="bravo",
            owner="Bravo Ltd",
            svn=1,
            services={
                "open": ["host"],
                "send": ["host"],
                "auth": ["host"],
                "report_for": ["charlie"],
            },
            calls={"alpha": ALPHA},
        ),
        spec(
            Charlie,
            id="charlie",
            owner="Charlie Inc",
            svn=1,
            services={m: ["host"] for m in HOST["charlie"]},
            calls={"alpha": ALPHA, "bravo": ["report_for"]},
        ),
    ]


def owner_hash(t: tre.TRE, domain: str) -> bytes:
    """What a domain's owner hash is, as anyone can read it from its alias certificate."""
    return attestation.read_tcb_info(t.alias_certificate(domain))["owner_hash"]


async def seal_and_send(t: tre.TRE, session: ipc.SecureSession, plain: bytes) -> bytes:
    reply = await t.call("bravo", "send", session.seal(plain))
    assert isinstance(reply, bytes), reply
    return session.open(reply)


EXPECTS: dict[str, tuple[str, Callable[[tre.TRE], tre.Expect], str]] = {
    "initiator expects another domain's measurement": (
        "bravo",
        lambda t: tre.Expect(measurements={t.measurement("charlie")}),
        "the peer's measurement is not an expected one",
    ),
    "initiator expects another owner": (
        "bravo",
        lambda t: tre.Expect(owner_hash=owner_hash(t, "charlie")),
        "the peer's owner is not the expected one",
    ),
    "responder expects another domain's measurement": (
        "alpha",
        lambda t: tre.Expect(measurements={t.measurement("charlie")}),
        "the peer refused: the peer's measurement is not an expected one",
    ),
    "responder expects another owner": (
        "alpha",
        lambda t: tre.Expect(owner_hash=owner_hash(t, "charlie")),
        "the peer refused: the peer's owner is not the expected one",
    ),
}


@pytest.mark.parametrize("case", EXPECTS, ids=EXPECTS.keys())
async def test_a_session_peer_that_fails_expect_is_refused(
    autojump_clock: trio.abc.Clock, shared: Shared, case: str
) -> None:
    side, make, reason = EXPECTS[case]
    async with open_test_tre(*session_domains(), host_calls=HOST) as t:
        # The right expectation opens a session (the owners differ: the check has teeth).
        peer = "alpha" if side == "bravo" else "bravo"
        right = tre.Expect(measurements={t.measurement(peer)}, owner_hash=owner_hash(t, peer))
        assert owner_hash(t, "alpha") != owner_hash(t, "charlie") != owner_hash(t, "bravo")
        setattr(shared, f"{side}_expect", right)
        assert await t.call("bravo", "open") == {"opened": 1}

        setattr(shared, f"{side}_expect", make(t))
        assert await t.call("bravo", "open") == {"refused": reason}
        assert len(shared.sessions) == 1


async def test_a_report_made_for_alpha_is_useless_to_charlie(
    autojump_clock: trio.abc.Clock, shared: Shared
) -> None:
    async with open_test_tre(*session_domains(), host_calls=HOST) as t:
        # Bravo authenticates itself to alpha with a report for alpha's nonce.
        assert await t.call("bravo", "auth") == {"subject": "bravo", "svn": 1}
        # Charlie relays a report bravo made for alpha, bound to alpha's nonce for charlie:
        # valid for alpha, but about bravo, and the kernel stamps charlie as the caller.
        assert await t.call("charlie", "relay") == "NOT_THE_CALLER"
        # A report bravo made for charlie does not even check at alpha.
        assert await t.call("charlie", "misdirected") == "REPORT_INVALID"
        # Charlie can only ever prove that it is charlie.
        assert await t.call("charlie", "own") == {"subject": "charlie", "svn": 1}


async def test_a_relayed_report_cannot_finish_a_session_handshake(
    autojump_clock: trio.abc.Clock, shared: Shared
) -> None:
    async with open_test_tre(*session_domains(), host_calls=HOST) as t:
        code, message = await t.call("charlie", "impersonate")
        assert code == "SESSION_REFUSED"
        assert message == "the report is about another domain"
        assert await t.call("alpha", "has_session", "charlie") is False
        assert await t.call("alpha", "has_session", "bravo") is False


async def test_a_replayed_handshake_report_is_refused(
    autojump_clock: trio.abc.Clock, shared: Shared
) -> None:
    async with open_test_tre(*session_domains(), host_calls=HOST) as t:
        code, message = await t.call("charlie", "stale_finish")
        assert code == "SESSION_REFUSED"
        assert message == "the report is not bound to this handshake"
        assert await t.call("alpha", "has_session", "charlie") is False


async def test_old_replayed_reflected_and_reordered_messages(
    autojump_clock: trio.abc.Clock, shared: Shared
) -> None:
    refused = {"remote": "SESSION", "message": "the message was refused"}
    async with open_test_tre(*session_domains(), host_calls=HOST) as t:
        assert await t.call("bravo", "open") == {"opened": 1}
        first = shared.sessions[0]
        old = first.seal(b"in the first session")
        assert first.open(await t.call("bravo", "send", old)) == b"ack:in the first session"

        assert await t.call("bravo", "open") == {"opened": 2}
        second = shared.sessions[1]
        # A message of the previous session, sent again: other keys.
        assert await t.call("bravo", "send", old) == refused
        # Alpha's own sealed reply, reflected back to it: the other direction's key.
        reply = await t.call("bravo", "send", second.seal(b"a"))
        assert second.open(reply) == b"ack:a"
        assert await t.call("bravo", "send", reply) == refused
        # A tampered message.
        tampered = bytearray(second.seal(b"b"))
        tampered[-1] ^= 1
        assert await t.call("bravo", "send", bytes(tampered)) == refused

        # 70 messages (counters 2..71); the newest arrives first.
        batch = [second.seal(b"m%d" % i) for i in range(70)]
        assert await seal_and_send_raw(t, second, batch[69]) == b"ack:m69"
        assert await t.call("bravo", "send", batch[0]) == refused  # behind the 64 window
        assert await seal_and_send_raw(t, second, batch[30]) == b"ack:m30"  # late but in it
        assert await t.call("bravo", "send", batch[30]) == refused  # replayed
        # The refusals left the session usable.
        assert await seal_and_send(t, second, b"after") == b"ack:after"
        assert shared.received == [b"in the first session", b"a", b"m69", b"m30", b"after"]


async def seal_and_send_raw(t: tre.TRE, session: ipc.SecureSession, message: bytes) -> bytes:
    reply = await t.call("bravo", "send", message)
    assert isinstance(reply, bytes), reply
    return session.open(reply)


async def test_a_restarted_responder_has_forgotten_the_session(
    autojump_clock: trio.abc.Clock, shared: Shared
) -> None:
    async with open_test_tre(*session_domains(), host_calls=HOST) as t:
        assert await t.call("bravo", "open") == {"opened": 1}
        old = shared.sessions[0]
        assert await seal_and_send(t, old, b"one") == b"ack:one"
        assert await t.call("alpha", "has_session", "bravo") is True

        with pytest.raises(tre.Aborted):
            await t.call("alpha", "crash")
        with trio.fail_after(10):
            await t.wait_for("alpha", "running", generation=2)

        # The new generation of alpha holds no session: calls with the old one fail cleanly.
        assert await t.call("alpha", "has_session", "bravo") is False
        reply = await t.call("bravo", "send", old.seal(b"two"))
        assert reply == {"remote": "SESSION_REFUSED", "message": "no open session with 'bravo'"}
        # A new session opens, and the old one's messages do not pass on it.
        assert await t.call("bravo", "open") == {"opened": 2}
        new = shared.sessions[1]
        assert await seal_and_send(t, new, b"three") == b"ack:three"
        reply = await t.call("bravo", "send", old.seal(b"four"))
        assert reply == {"remote": "SESSION", "message": "the message was refused"}
        assert shared.received == [b"one", b"three"]
        assert t.domain("alpha").restarts == 1
