# mypy: allow-untyped-decorators
"""Device port grants are policy: ``Policy.compile(..., ports=config.ports)`` knows, per port,
who claims it and who is granted it; the kernel's port registry asks that policy (one source
of truth); ``policy.digest()`` (and so attestation evidence) covers the grants;
``tre policy show`` lists them; ``tre.testing.open_test_tre(ports=...)`` declares them.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
import trio.testing

import tre
from tests.attest_helpers import NONCE, attest, check_token, take_reference, tre_cli
from tests.device_helpers import HOLDER_MANIFEST, cli, write_config
from tre import Manifest, Policy, PortDecision, PortSpec
from tre.testing import open_test_tre, spec

LIMIT = 10  # seconds of (mock) time any one TRE test may take


def manifest(domain_id: str, ports: Iterable[str] = (), **fields: Any) -> Manifest:
    data = {"id": domain_id, "owner": "t", "version": "1", "svn": 0, "entry": "m:C"}
    return tre.parse_manifest({**data, "ports": list(ports), **fields}, f"<{domain_id}>")


def world() -> list[Manifest]:
    return [
        manifest(
            "alpha",
            ["modem", "gpio", "nowhere"],
            services={"ping": {"allow": ["host", "beta"]}},
        ),
        manifest(
            "beta", ["modem", "gpio", "secret"], calls=[{"domain": "alpha", "methods": ["ping"]}]
        ),
        manifest("gamma"),  # claims nothing
    ]


HOST = {"alpha": frozenset({"ping"})}


def ports(**changes: dict[str, Any]) -> dict[str, PortSpec]:
    """The config's ports, as parsed from a ``[ports]`` table (``changes`` replace one)."""
    table: dict[str, Any] = {
        "modem": {"domains": ["alpha", "beta", "ghost"]},  # ghost: granted, not installed
        "gpio": {"exclusive": False, "domains": ["alpha", "gamma"]},  # beta claims, no grant
        "secret": {"domains": ["alpha"]},  # beta claims it, alpha is granted it
        "spare": {"domains": ["gamma"], "buffer": 16},  # granted, claimed by nobody
    }
    table.update(changes)
    return dict(tre.parse_config({"ports": table}).ports)


def compiled(ms: Iterable[Manifest] | None = None, /, **changes: dict[str, Any]) -> Policy:
    return Policy.compile(world() if ms is None else ms, HOST, ports=ports(**changes))


def calls_only_digest(policy: Policy) -> str:
    """The digest as it was before ports were part of the policy: edges and isolation."""
    canon = msgpack.packb([sorted(policy.edges), sorted(policy.isolated)], use_bin_type=True)
    return hashlib.sha256(canon).hexdigest()


# --- the compiled policy --------------------------------------------------------------------------


def test_the_policy_knows_who_claims_who_is_granted_and_who_may_open_each_port() -> None:
    policy = compiled()
    assert set(policy.ports) == {"modem", "gpio", "secret", "spare"}
    assert policy.ports["gpio"].exclusive is False and policy.ports["modem"].exclusive
    assert policy.port_claims == {
        "alpha": {"modem", "gpio", "nowhere"},
        "beta": {"modem", "gpio", "secret"},
        "gamma": frozenset(),
    }
    # who may open: claimed AND granted (a grant to a domain not installed opens nothing)
    assert policy.port_access == {
        "modem": {"alpha", "beta"},
        "gpio": {"alpha"},
        "secret": frozenset(),
        "spare": frozenset(),
    }


@pytest.mark.parametrize(
    ("domain", "port", "code", "reason"),
    [
        ("alpha", "modem", "OK", "claimed in its manifest and granted by the TRE config"),
        ("beta", "modem", "OK", "claimed in its manifest and granted by the TRE config"),
        ("beta", "gpio", "PORT_DENIED", "not granted by the TRE config"),  # claimed, not granted
        ("alpha", "secret", "PORT_DENIED", "not claimed in its manifest"),  # granted, unclaimed
        ("gamma", "gpio", "PORT_DENIED", "not claimed in its manifest"),
        ("alpha", "nowhere", "NO_SUCH_PORT", "not declared in the TRE config"),
        # the claim comes first: an unclaimed name says nothing of whether it is declared
        ("gamma", "nowhere", "PORT_DENIED", "not claimed in its manifest"),
        ("ghost", "modem", "NO_SUCH_DOMAIN", "granted to a domain that is not installed"),
    ],
)
def test_check_port_says_whether_and_why(domain: str, port: str, code: str, reason: str) -> None:
    decision = compiled().check_port(domain, port)
    assert decision == PortDecision(code == "OK", code, reason)
    assert tre.PortDecision is PortDecision


def test_the_port_matrix_lists_every_claim_and_every_grant() -> None:
    rows = [(d, p, x.code) for d, p, x in compiled().port_matrix()]
    assert rows == [
        ("alpha", "gpio", "OK"),
        ("alpha", "modem", "OK"),
        ("alpha", "nowhere", "NO_SUCH_PORT"),
        ("alpha", "secret", "PORT_DENIED"),
        ("beta", "gpio", "PORT_DENIED"),
        ("beta", "modem", "OK"),
        ("beta", "secret", "PORT_DENIED"),
        ("gamma", "gpio", "PORT_DENIED"),
        ("gamma", "spare", "PORT_DENIED"),
        ("ghost", "modem", "NO_SUCH_DOMAIN"),
    ]


def test_existing_callers_compile_without_ports() -> None:
    policy = Policy.compile(world(), HOST)
    assert policy.ports == {} and policy.port_access == {}
    assert policy.port_claims["alpha"] == {"modem", "gpio", "nowhere"}
    assert policy.check_port("alpha", "modem").code == "NO_SUCH_PORT"
    assert Policy.compile(world(), HOST, ports={}).digest() == policy.digest()
    assert Policy.compile([]).port_matrix() == []


def test_a_port_declared_under_another_name_is_refused() -> None:
    with pytest.raises(ValueError, match="'modem' is declared with the name 'gpio'"):
        Policy.compile(world(), HOST, ports={"modem": PortSpec("gpio")})


# --- the digest covers the grants -----------------------------------------------------------------


def test_the_digest_is_deterministic() -> None:
    reference = compiled().digest()
    rng = random.Random(7)
    for _ in range(10):
        ms = world()
        rng.shuffle(ms)
        shuffled = list(ports().items())
        rng.shuffle(shuffled)
        again = {
            name: PortSpec(
                name, p.exclusive, frozenset(rng.sample(sorted(p.domains), len(p.domains)))
            )
            for name, p in shuffled
        }
        assert Policy.compile(ms, HOST, ports=again).digest() == reference
    # and it is not the digest of the calls alone
    assert reference != calls_only_digest(compiled())


def test_with_no_port_anyone_may_open_the_digest_is_the_one_of_the_calls() -> None:
    """A device that uses no ports keeps the digest (and reference values) it had."""
    nobody = {"modem": {"domains": ["gamma"]}, "gpio": {"domains": ["gamma"]}}
    for policy in (Policy.compile(world(), HOST), compiled(**nobody)):
        assert policy.digest() == calls_only_digest(policy)


@pytest.mark.parametrize(
    "change",
    [
        {"gpio": {"exclusive": False, "domains": ["alpha", "beta"]}},  # one more, who claims it
        {"modem": {"domains": ["beta"]}},  # a grant taken back
        {"modem": {"exclusive": False, "domains": ["alpha", "beta"]}},  # exclusivity flipped
        {"gpio": {"exclusive": True, "domains": ["alpha", "gamma"]}},  # ...the other way
        {"secret": {"domains": ["alpha", "beta"]}},  # a port nobody could open now can be
    ],
    ids=["grant-another", "revoke", "shared", "exclusive", "first-grant"],
)
def test_a_grant_or_exclusivity_change_changes_the_digest(change: dict[str, Any]) -> None:
    assert compiled(**change).digest() != compiled().digest()


def test_a_claim_dropped_changes_the_digest() -> None:
    ms = [manifest("beta", ["gpio", "secret"]) if m.id == "beta" else m for m in world()]
    assert compiled(ms).digest() != compiled().digest()


@pytest.mark.parametrize(
    "change",
    [
        {"gpio": {"exclusive": False, "domains": ["alpha", "gamma", "ghost"]}},  # not installed
        {"secret": {"domains": ["alpha", "gamma"]}},  # to a domain that does not claim it
        {"spare": {"exclusive": False, "domains": ["gamma"], "buffer": 16}},  # nobody opens it
        {"modem": {"domains": ["alpha", "beta", "ghost"], "buffer": 64, "description": "LTE"}},
        {"extra": {"domains": ["gamma"]}},  # a new port nobody may open
    ],
    ids=["ghost", "unclaimed", "unused-port", "buffer-description", "unused-new-port"],
)
def test_what_nobody_can_use_does_not_change_the_digest(change: dict[str, Any]) -> None:
    assert compiled(**change).digest() == compiled().digest()


# --- the kernel enforces what the policy says -----------------------------------------------------

#: what each domain's ``open`` did, per generation (stale-name tests look here)
OPENED: list[tre.Port] = []


class Porter(tre.Domain):
    """Opens and closes ports on request; reports each outcome as a code."""

    @tre.service
    async def open(self, caller: str, body: Any) -> str:
        try:
            port = self.ctx.open_port(body)
        except tre.PortError as exc:
            return exc.code
        OPENED.append(port)
        port.close()
        return "OK"

    @tre.service
    async def open_lying_name(self, caller: str, body: Any) -> str:
        """Ask for ``body`` with a name that hashes like ``"modem"`` once, then like
        ``body``, and equals anything: the policy and the port lookup must see one name."""
        asked = [0]

        class Liar(str):
            __slots__ = ()

            def __hash__(self) -> int:
                asked[0] += 1
                return hash("modem" if asked[0] == 1 else str.__str__(self))

            def __eq__(self, other: object) -> bool:
                return True

        try:
            port = self.ctx.open_port(Liar(body))
        except tre.PortError as exc:
            return exc.code
        OPENED.append(port)
        return port.name


def porter(domain_id: str, claims: Iterable[str]) -> tre.DomainSpec:
    return spec(
        Porter,
        id=domain_id,
        services={s: ["host"] for s in Porter.service_names()},
        ports=list(claims),
    )


@pytest.fixture(autouse=True)
def _reset() -> None:
    OPENED.clear()


async def test_every_open_is_decided_by_the_compiled_policy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    domains = (
        porter("alpha", ["modem", "gpio", "nowhere"]),
        porter("beta", ["modem", "gpio", "secret"]),
        porter("gamma", []),
    )
    declared = ports()
    host = {d.id: Porter.service_names() for d in domains}
    with trio.fail_after(LIMIT):
        async with open_test_tre(*domains, host_calls=host, ports=declared) as t:
            expected = Policy.compile([d.manifest for d in domains], ports=declared)
            assert t.policy.port_access == expected.port_access
            matrix = [(d, p, x) for d, p, x in t.policy.port_matrix() if d != "ghost"]
            assert len(matrix) == 9
            for domain, port, decision in matrix:
                before = len(t.events)
                assert await t.call(domain, "open", port) == decision.code, (domain, port)
                if not decision.allowed:
                    (event,) = t.events[before:]
                    assert (event.kind, event.domain) == ("denied", domain)
                    assert event.detail == f"port {port!r}: {decision.reason}"
            # a name the domain made up, claimed by nobody, is refused like any unclaimed one
            assert await t.call("alpha", "open", "unheard-of") == "PORT_DENIED"


async def test_a_name_that_lies_about_itself_opens_only_what_it_is(
    autojump_clock: trio.testing.MockClock,
) -> None:
    alpha = porter("alpha", ["modem"])
    granted = {"modem": ["alpha"], "secret": {"domains": ["alpha"]}}
    with trio.fail_after(LIMIT):
        async with open_test_tre(
            alpha, host_calls={"alpha": ["open_lying_name"]}, ports=granted
        ) as t:
            # asked as "secret" (not claimed), though it first hashes like "modem" (granted)
            assert await t.call("alpha", "open_lying_name", "secret") == "PORT_DENIED"
            assert t.port("secret").holders == () and OPENED == []
            assert await t.call("alpha", "open_lying_name", "modem") == "modem"
            assert type(OPENED[0].name) is str


# --- tre.testing: ports without a TOML config -----------------------------------------------------


class Mno(tre.Domain):
    """The README's example of a domain that uses a port."""

    async def setup(self) -> None:
        self.modem = self.ctx.open_port("modem")

    @tre.service
    async def signal(self, caller: str, body: Any) -> bytes:
        await self.modem.write(b"AT+CSQ\r")
        return await self.modem.read(64)


async def test_the_readme_example_of_testing_a_domain_with_a_port(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_tre(
        spec(Mno, services={"signal": ["host"]}, ports=["modem"]),
        host_calls={"mno": ["signal"]},
        ports={"modem": ["mno"]},
    ) as t:
        modem = t.port("modem")
        assert (modem.exclusive, modem.holders) == (True, ("mno",))
        await modem.write(b"+CSQ: 21,99\r\n")
        assert await t.call("mno", "signal") == b"+CSQ: 21,99\r\n"
        assert await modem.read() == b"AT+CSQ\r"


@pytest.mark.parametrize(
    ("grant", "expected"),
    [
        (["alpha", "beta"], PortSpec("line", True, frozenset({"alpha", "beta"}))),
        (("alpha",), PortSpec("line", True, frozenset({"alpha"}))),
        (
            {"exclusive": False, "domains": ["alpha", "beta"], "buffer": 8, "description": "d"},
            PortSpec("line", False, frozenset({"alpha", "beta"}), "d", 8),
        ),
        (
            PortSpec("line", False, frozenset({"beta"}), buffer=32),
            PortSpec("line", False, frozenset({"beta"}), buffer=32),
        ),
    ],
    ids=["ids", "tuple", "table", "portspec"],
)
async def test_open_test_tre_takes_ports_in_three_forms(
    autojump_clock: trio.testing.MockClock, grant: Any, expected: PortSpec
) -> None:
    domains = (porter("alpha", ["line"]), porter("beta", ["line"]))
    host = {d.id: ["open"] for d in domains}
    async with open_test_tre(*domains, host_calls=host, ports={"line": grant}) as t:
        assert t.policy.ports == {"line": expected}
        for domain in ("alpha", "beta"):
            want = "OK" if domain in expected.domains else "PORT_DENIED"
            assert await t.call(domain, "open", "line") == want
        assert t.port("line").exclusive is expected.exclusive


async def test_open_test_tre_without_ports_declares_none(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_tre(porter("alpha", ["line"]), host_calls={"alpha": ["open"]}) as t:
        assert t.policy.ports == {}
        assert await t.call("alpha", "open", "line") == "NO_SUCH_PORT"
        with pytest.raises(tre.NoSuchPort):
            t.port("line")


@pytest.mark.parametrize(
    ("ports_arg", "key"),
    [
        ({"line": "alpha"}, "ports.line"),  # one id is a str, not a list of them
        ({"line": {"exclusive": "no"}}, "ports.line.exclusive"),
        ({"line": {"domains": ["alpha"], "owner": "x"}}, "ports.line.owner"),
        ({"line": ["alpha", "Not An Id"]}, "ports.line.domains[1]"),
        ({"Line": ["alpha"]}, "ports.Line"),
        ({"line": PortSpec("other")}, "ports.line"),
    ],
)
async def test_open_test_tre_validates_ports_like_a_config(ports_arg: Any, key: str) -> None:
    with pytest.raises(tre.ConfigError) as info:
        async with open_test_tre(porter("alpha", ["line"]), ports=ports_arg):
            pass  # pragma: no cover - never boots
    assert info.value.key == key
    assert str(info.value).startswith(f"<test>: {key}: ")


# --- tre policy show ------------------------------------------------------------------------------


def claimer(folder: Path, domain_id: str, claims: list[str]) -> None:
    """A folder plugin (tests.device_helpers.Holder) whose manifest claims ``claims``."""
    folder.mkdir(parents=True, exist_ok=True)
    text = HOLDER_MANIFEST.format(id=domain_id).replace(
        "\n[services.hold]", f"ports = {json.dumps(claims)}\n\n[services.hold]", 1
    )
    (folder / "domain.toml").write_text(text)


PORTS_TOML = """
[ports.modem]
domains = ["radio", "ghost"]

[ports.gpio]
exclusive = false
domains = ["radio", "leds"]

[ports.spare]
domains = ["leds"]
"""


def port_config(folder: Path, ports_toml: str = PORTS_TOML) -> Path:
    """A config booting oem and two folder plugins that claim ports."""
    claimer(folder / "radio", "radio", ["modem", "gpio", "nowhere"])
    claimer(folder / "leds", "leds", ["gpio", "modem"])
    paths = 'paths = ["radio", "leds"]\n'
    config = write_config(folder, enable=("oem",), holder=False, extra=ports_toml)
    text = config.read_text().replace("[domains]\n", "[domains]\n" + paths, 1)
    config.write_text(text)
    return config


def test_policy_show_lists_the_ports_and_the_refused_claims(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = port_config(tmp_path)
    code, out, err = cli(capsys, "policy", "show", "--config", config)
    assert (code, err) == (0, "")
    section = out[out.index("Device ports") :]
    lines = section.splitlines()
    assert lines[2].split() == ["port", "mode", "may", "open"]
    assert [line.split(None, 2) for line in lines[4:7]] == [
        ["gpio", "shared", "leds, radio"],
        ["modem", "exclusive", "radio"],
        ["spare", "exclusive", "-"],
    ]
    refused = section[section.index("Claimed or granted but refused:") :].splitlines()[1:5]
    assert refused == [
        "  ghost -> port modem: NO_SUCH_DOMAIN (granted to a domain that is not installed)",
        "  leds -> port modem: PORT_DENIED (not granted by the TRE config)",
        "  leds -> port spare: PORT_DENIED (not claimed in its manifest)",
        "  radio -> port nowhere: NO_SUCH_PORT (not declared in the TRE config)",
    ]
    # the section comes before the digest, which covers it
    assert out.index("Device ports") < out.index("policy digest: ")
    digest = out.split("policy digest: ")[1].strip()

    code, out, _ = cli(capsys, "policy", "show", "--config", config, "--json")
    data = json.loads(out)
    assert data["digest"] == digest
    assert data["ports"]["declared"] == [
        {
            "port": "gpio",
            "exclusive": False,
            "granted": ["leds", "radio"],
            "domains": ["leds", "radio"],
        },
        {"port": "modem", "exclusive": True, "granted": ["ghost", "radio"], "domains": ["radio"]},
        {"port": "spare", "exclusive": True, "granted": ["leds"], "domains": []},
    ]
    entries = {
        (e["domain"], e["port"]): (e["decision"], e["reason"]) for e in data["ports"]["entries"]
    }
    assert len(entries) == 7
    assert entries[("radio", "modem")] == (
        "OK",
        "claimed in its manifest and granted by the TRE config",
    )
    assert entries[("leds", "modem")] == ("PORT_DENIED", "not granted by the TRE config")


def test_policy_show_digest_follows_the_grants(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def digest(name: str, ports_toml: str) -> str:
        code, out, err = cli(
            capsys, "policy", "show", "--config", port_config(tmp_path / name, ports_toml), "--json"
        )
        assert code == 0, err
        result: str = json.loads(out)["digest"]
        return result

    base = digest("base", PORTS_TOML)
    assert digest("same", PORTS_TOML) == base
    granted = PORTS_TOML.replace('domains = ["radio", "ghost"]', 'domains = ["radio", "leds"]')
    flipped = PORTS_TOML.replace("exclusive = false", "exclusive = true")
    unused = PORTS_TOML.replace('domains = ["leds"]', 'domains = ["radio"]')  # radio: no claim
    assert digest("granted", granted) != base
    assert digest("flipped", flipped) != base
    assert digest("unused", unused) == base


def test_policy_show_without_declared_ports(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = cli(capsys, "policy", "show", "--config", port_config(tmp_path, ""))
    assert code == 0
    assert "Device ports: the config declares none." in out
    assert "  radio -> port nowhere: NO_SUCH_PORT (not declared in the TRE config)" in out
    assert "  leds -> port gpio: NO_SUCH_PORT (not declared in the TRE config)" in out
    # neither ports nor claims: no ports section at all
    code, out, _ = cli(capsys, "policy", "show")
    assert code == 0
    assert "Device ports" not in out and "-> port " not in out
    code, out, _ = cli(capsys, "policy", "show", "--json")
    assert json.loads(out)["ports"] == {"declared": [], "entries": []}


# --- attestation evidence carries it --------------------------------------------------------------


def test_offline_evidence_and_reference_carry_the_digest_with_the_grants(tmp_path: Path) -> None:
    factory = tmp_path / "factory"
    assert tre_cli("factory", "init", "--factory", factory)[0] == 0
    hashes = {}
    for name, ports_toml in [
        ("base", PORTS_TOML),
        ("flipped", PORTS_TOML.replace("exclusive = false", "exclusive = true")),
    ]:
        config = port_config(tmp_path / name, ports_toml)
        state = tmp_path / name / "dev"
        code, _, err = tre_cli(
            "provision", "--state", state, "--factory", factory, "--config", config
        )
        assert code == 0, err
        code, out, err = tre_cli("policy", "show", "--config", config, "--json")
        assert code == 0, err
        shown = bytes.fromhex(json.loads(out)["digest"])
        claims = check_token(attest(state, NONCE)).claims
        assert claims[-75002] == shown  # policy-hash
        assert take_reference(state).policy_hashes == {shown}
        hashes[name] = shown
    assert hashes["base"] != hashes["flipped"]
