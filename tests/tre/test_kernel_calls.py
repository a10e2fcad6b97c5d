# mypy: allow-untyped-decorators
"""The kernel's call path: every outcome of a call, one test (or table row) each.

A call ends in exactly one of: a reply, or a typed error (DENIED, BUSY, TOO_LARGE,
INVALID_FRAME, NO_SUCH_DOMAIN, NO_SUCH_METHOD, REMOTE_ERROR; TIMEOUT and ABORTED are covered
in test_deadlines.py and test_supervision.py). The sender is stamped by the kernel and no
Python object ever crosses between two domains.
"""

from __future__ import annotations

import traceback
from typing import Any

import pytest
import trio
import trio.testing

import ipc
import tre
from tests.kernel_helpers import PROBE, allow, call_code
from tre.testing import open_test_tre, spec

pytestmark = pytest.mark.usefixtures("probe")

# --- test plumbing -----------------------------------------------------------------------


def outcome(exc: BaseException) -> dict[str, Any]:
    code = getattr(exc, "code", type(exc).__name__)
    return {"error": code, "type": type(exc).__name__}


# --- domains -----------------------------------------------------------------------------


class Echo(tre.Domain):
    @tre.service
    async def echo(self, caller: str, body: Any) -> Any:
        PROBE.seen.append((self.ctx.id, caller, body))
        return {"caller": caller, "body": body}

    @tre.service
    async def secret(self, caller: str, body: Any) -> Any:
        PROBE.seen.append((self.ctx.id, caller, body))
        return "secret"


class Sink(tre.Domain):
    """Records what it receives; replies with nothing (so replies never fail to encode)."""

    @tre.service
    async def put(self, caller: str, body: Any) -> Any:
        PROBE.seen.append((self.ctx.id, caller, body))
        return None


class Isolated(tre.Domain):
    @tre.service
    async def x(self, caller: str, body: Any) -> Any:
        PROBE.seen.append((self.ctx.id, caller, body))
        return None

    async def run(self) -> None:
        # An isolated domain has no channel at all, not even to a domain that would allow it.
        try:
            await self.ctx.call("echo", "echo", "from isolated")
        except tre.CallError as exc:
            PROBE.isolated.append(outcome(exc))
        PROBE.entered.set()


class Client(tre.Domain):
    """Makes the calls a test asks it to make, and reports their outcome."""

    @tre.service
    async def call_out(self, caller: str, body: Any) -> Any:
        try:
            reply = await self.ctx.call(
                body["domain"],
                body["method"],
                body.get("body"),
                timeout=body.get("timeout"),
                wait=body.get("wait", True),
            )
        except (tre.CallError, tre.InvalidFrame) as exc:
            return outcome(exc)
        return {"ok": reply}

    @tre.service
    async def fan(self, caller: str, body: Any) -> Any:
        """Make ``body["n"]`` concurrent calls; return their outcomes, sorted."""
        results: list[str] = []

        async def one() -> None:
            results.append(
                await call_code(self.ctx, body["domain"], body["method"], body.get("body"))
            )

        async with trio.open_nursery() as nursery:
            for _ in range(body["n"]):
                nursery.start_soon(one)
        return sorted(results)

    @tre.service
    async def keep_mine(self, caller: str, body: Any) -> Any:
        """Send an object of ours to a mutating callee; report whether ours changed."""
        mine = {"items": [1, 2, 3], "nested": {"k": "v"}}
        reply = await self.ctx.call("mutator", "mutate", mine)
        reply["items"].append("reply mutated by caller")
        return {"mine": mine, "reply": reply}


async def via(
    t: tre.TRE, client: str, domain: str, method: str, body: Any = None, **kw: Any
) -> Any:
    """Have domain ``client`` call ``domain.method`` and return its report."""
    return await t.call(
        client, "call_out", {"domain": domain, "method": method, "body": body, **kw}
    )


def client_spec(calls: dict[str, list[str]], **fields: Any) -> tre.DomainSpec:
    """The ``client`` domain: serves the host, may call what ``calls`` declares."""
    return spec(Client, id="client", services=allow(Client, "host"), calls=calls, **fields)


class Gate(tre.Domain):
    """A handler that blocks until the test releases it."""

    @tre.service
    async def hold(self, caller: str, body: Any) -> Any:
        await PROBE.hold((self.ctx.id, caller, body))
        return body


class Slow(tre.Domain):
    @tre.service
    async def slow(self, caller: str, body: Any) -> Any:
        await trio.sleep(1)
        return body


class Big(tre.Domain):
    @tre.service
    async def give(self, caller: str, body: Any) -> Any:
        return "x" * body


class Failing(tre.Domain):
    @tre.service
    async def fail(self, caller: str, body: Any) -> Any:
        PROBE.seen.append((self.ctx.id, caller, body))
        code, message = body
        raise tre.ServiceError(code, message)

    @tre.service
    async def bad_reply(self, caller: str, body: Any) -> Any:
        return {"a set": {1, 2}}

    @tre.service
    async def ok(self, caller: str, body: Any) -> Any:
        return "still fine"


class Mutator(tre.Domain):
    def __init__(self, ctx: tre.Context) -> None:
        super().__init__(ctx)
        self.store: dict[str, Any] = {"items": [1, 2], "owner": "mutator"}

    @tre.service
    async def mutate(self, caller: str, body: Any) -> Any:
        body["items"].append("mutated by callee")
        body["nested"]["k"] = "changed"
        body["added"] = True
        return body

    @tre.service
    async def get(self, caller: str, body: Any) -> Any:
        return self.store

    @tre.service
    async def types(self, caller: str, body: Any) -> Any:
        PROBE.seen.append((self.ctx.id, caller, body))
        return {"tuple": (1, (2, 3)), "bytes": b"\x00\xff"}


class Relay(tre.Domain):
    """``hop(path)``: call ``path[0].hop(path[1:])``; at the end of the path answer its id."""

    @tre.service
    async def hop(self, caller: str, body: Any) -> Any:
        if not body:
            return {"at": self.ctx.id, "caller": caller}
        try:
            return await self.ctx.call(body[0], "hop", body[1:])
        except tre.CallError as exc:
            return {"at": self.ctx.id, **outcome(exc)}


# --- 1. DENIED / NO_SUCH_DOMAIN / NO_SUCH_METHOD: a policy table ------------------------

POLICY_SPECS = (
    spec(Echo, id="echo", services={"echo": ["host", "client"], "secret": ["client"]}),
    spec(Isolated, id="iso", isolated=True, services={"x": []}),
    client_spec({"echo": ["echo"], "ghost": ["x"], "sink": ["put"]}),
    spec(Sink, id="sink", services={"put": ["host"]}),
)
POLICY_HOST_CALLS = {
    "echo": ["echo", "secret", "nope"],
    "iso": ["x"],
    "ghost": ["anything"],
    "client": ["call_out"],
}

# (caller, callee, method, expected error): the caller is "host" or a domain driven by it
POLICY_ROWS = [
    pytest.param("host", "echo", "echo", None, id="allowed: reply"),
    pytest.param("host", "echo", "undeclared", tre.Denied, id="host did not declare the method"),
    pytest.param("host", "sink", "put", tre.Denied, id="host did not declare the domain"),
    pytest.param("host", "echo", "secret", tre.Denied, id="callee does not allow the caller"),
    pytest.param("host", "iso", "x", tre.Denied, id="callee is isolated"),
    pytest.param("host", "ghost", "anything", tre.NoSuchDomain, id="declared, not installed"),
    pytest.param("host", "echo", "nope", tre.NoSuchMethod, id="declared, method not offered"),
    pytest.param("client", "echo", "echo", None, id="domain allowed: reply"),
    pytest.param("client", "echo", "secret", tre.Denied, id="domain did not declare the method"),
    pytest.param("client", "iso", "x", tre.Denied, id="domain did not declare the isolated"),
    pytest.param("client", "ghost", "x", tre.NoSuchDomain, id="domain: declared, not installed"),
    pytest.param("client", "sink", "put", tre.Denied, id="domain declared, callee does not allow"),
]


@pytest.mark.parametrize(("caller", "domain", "method", "expected"), POLICY_ROWS)
async def test_policy_outcomes(
    autojump_clock: trio.testing.MockClock,
    caller: str,
    domain: str,
    method: str,
    expected: type[tre.CallError] | None,
) -> None:
    async with open_test_tre(*POLICY_SPECS, host_calls=POLICY_HOST_CALLS) as t:
        if caller == "host":
            if expected is None:
                assert await t.call(domain, method, 1) == {"caller": "host", "body": 1}
            else:
                with pytest.raises(expected):
                    await t.call(domain, method, 1)
        else:
            report = await via(t, caller, domain, method, 1)
            if expected is None:
                assert report == {"ok": {"caller": caller, "body": 1}}
            else:
                assert report["error"] == expected.code
                assert report["type"] == expected.__name__
        if expected is not None:
            # the callee never saw the refused call
            assert PROBE.seen == []


async def test_denials_are_recorded_as_kernel_events(autojump_clock: trio.testing.MockClock):
    async with open_test_tre(*POLICY_SPECS, host_calls=POLICY_HOST_CALLS) as t:
        with pytest.raises(tre.Denied):
            await t.call("echo", "secret")
        denied = [e for e in t.events if e.kind == "denied" and e.domain == "host"]
        assert len(denied) == 1
        assert denied[0].domain == "host"
        assert "echo.secret" in denied[0].detail


async def test_isolated_caller_is_denied(autojump_clock: trio.testing.MockClock):
    # "echo" would even allow "iso"... but an isolated domain cannot declare calls, and the
    # kernel refuses whatever it tries.
    async with open_test_tre(*POLICY_SPECS, host_calls=POLICY_HOST_CALLS):
        await PROBE.entered.wait()
        assert PROBE.isolated == [{"error": "DENIED", "type": "Denied"}]
        assert PROBE.seen == []


# --- 1. DENIED for re-entrant calls -----------------------------------------------------

RELAYS = ("a", "b", "c")


def relay_specs() -> list[tre.DomainSpec]:
    return [
        spec(
            Relay,
            id=me,
            services={"hop": ["host", *(o for o in RELAYS if o != me)]},
            calls={o: ["hop"] for o in RELAYS if o != me},
        )
        for me in RELAYS
    ]


CHAIN_ROWS = [
    pytest.param("a", ["b"], {"at": "b", "caller": "a"}, id="A->B"),
    pytest.param("a", ["b", "c"], {"at": "c", "caller": "b"}, id="A->B->C"),
    pytest.param("a", ["b", "a"], {"at": "b", "error": "DENIED", "type": "Denied"}, id="A->B->A"),
    pytest.param(
        "a", ["b", "c", "a"], {"at": "c", "error": "DENIED", "type": "Denied"}, id="A->B->C->A"
    ),
    pytest.param(
        "a", ["b", "c", "b"], {"at": "c", "error": "DENIED", "type": "Denied"}, id="A->B->C->B"
    ),
    pytest.param("b", ["c", "a"], {"at": "a", "caller": "c"}, id="B->C->A"),
]


@pytest.mark.parametrize(("first", "path", "expected"), CHAIN_ROWS)
async def test_reentrant_calls_are_denied(
    autojump_clock: trio.testing.MockClock, first: str, path: list[str], expected: Any
):
    async with open_test_tre(*relay_specs(), host_calls={r: ["hop"] for r in RELAYS}) as t:
        start = trio.current_time()
        assert await t.call(first, "hop", path) == expected
        # refused at once, never a deadlock waiting for a deadline
        assert trio.current_time() == start
        # and every domain of the cycle still serves
        for r in RELAYS:
            assert await t.call(r, "hop", []) == {"at": r, "caller": "host"}
        if "error" in expected:
            assert any(e.kind == "denied" and "re-entrant" in e.detail for e in t.events)


# --- 1. BUSY ------------------------------------------------------------------------------


async def test_busy_when_inbox_full_and_caller_will_not_wait(
    autojump_clock: trio.testing.MockClock,
):
    gate = spec(Gate, id="gate", services=allow(Gate, "host"), quotas={"inbox_depth": 2})
    async with open_test_tre(gate, host_calls={"gate": ["hold"]}) as t:
        replies: list[Any] = []

        async def call(i: int) -> None:
            replies.append(await t.call("gate", "hold", i))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, 0)
            await PROBE.entered.wait()  # call 0 is in the handler, the inbox is empty
            nursery.start_soon(call, 1)
            nursery.start_soon(call, 2)
            await trio.testing.wait_all_tasks_blocked()  # calls 1 and 2 fill the inbox
            with pytest.raises(tre.Busy, match="inbox is full"):
                await t.call("gate", "hold", "refused", wait=False)
            PROBE.release.set()
        assert sorted(replies) == [0, 1, 2]
        # the refused call never reached the handler
        assert sorted(body for _, _, body in PROBE.seen) == [0, 1, 2]
        # with room again, wait=False goes through
        assert await t.call("gate", "hold", 3, wait=False) == 3


async def test_busy_when_max_outstanding_exceeded(autojump_clock: trio.testing.MockClock):
    specs = [
        spec(Slow, id="slow", services=allow(Slow, "client")),
        client_spec({"slow": ["slow"]}, quotas={"max_outstanding": 2}),
    ]
    async with open_test_tre(*specs, host_calls={"client": ["fan"]}) as t:
        body = {"domain": "slow", "method": "slow", "n": 3}
        assert await t.call("client", "fan", body) == ["BUSY", "OK", "OK"]
        # outstanding calls are counted down again when they complete
        assert await t.call("client", "fan", body) == ["BUSY", "OK", "OK"]
        assert await t.call("client", "fan", {**body, "n": 2}) == ["OK", "OK"]


async def test_call_rate_token_bucket_exact_arithmetic(autojump_clock: trio.testing.MockClock):
    rated = spec(
        Echo,
        id="rated",
        services=allow(Echo, "host", "client"),
        quotas={"calls_per_second": 4.0, "burst": 3},
    )
    client = client_spec({"rated": ["echo"]})
    async with open_test_tre(
        rated, client, host_calls={"rated": ["echo"], "client": ["call_out"]}
    ) as t:

        async def take(n: int) -> None:
            for _ in range(n):
                await t.call("rated", "echo")
            with pytest.raises(tre.Busy, match="call rate"):
                await t.call("rated", "echo")

        await take(3)  # a full burst, then BUSY
        # the bucket is per (caller, callee): another caller still has its own burst
        assert "ok" in await via(t, "client", "rated", "echo")
        await trio.sleep(0.25)  # 0.25 s * 4/s = exactly one token
        await take(1)
        await trio.sleep(0.125)  # half a token: not enough
        with pytest.raises(tre.Busy):
            await t.call("rated", "echo")
        await trio.sleep(0.125)  # the half token was kept: now one whole token
        await take(1)
        await trio.sleep(100)  # refill is capped at the burst
        await take(3)
        # notifications draw from the same bucket
        await trio.sleep(0.25)
        t.notify("rated", "echo", "note")
        with pytest.raises(tre.Busy):
            await t.call("rated", "echo")


# --- 1. TOO_LARGE -------------------------------------------------------------------------


async def test_request_over_callee_frame_limit_is_too_large(
    autojump_clock: trio.testing.MockClock,
):
    sink = spec(Sink, id="sink", services=allow(Sink, "host"), quotas={"max_frame_bytes": 128})
    async with open_test_tre(sink, host_calls={"sink": ["put"]}) as t:
        assert await t.call("sink", "put", "x" * 50) is None
        with pytest.raises(tre.TooLarge):
            await t.call("sink", "put", "x" * 200)
        with pytest.raises(tre.TooLarge):
            t.notify("sink", "put", "x" * 200)
        await trio.testing.wait_all_tasks_blocked()
        assert [body for _, _, body in PROBE.seen] == ["x" * 50]


async def test_reply_over_caller_frame_limit_is_too_large(autojump_clock: trio.testing.MockClock):
    specs = [
        spec(Big, id="big", services=allow(Big, "host", "client")),
        client_spec({"big": ["give"]}, quotas={"max_frame_bytes": 128}),
    ]
    async with open_test_tre(*specs, host_calls={"big": ["give"], "client": ["call_out"]}) as t:
        assert await via(t, "client", "big", "give", 10) == {"ok": "x" * 10}
        assert await via(t, "client", "big", "give", 500) == {
            "error": "TOO_LARGE",
            "type": "TooLarge",
        }
        # the same reply fits the host's (larger) limit, and the callee did not fail
        assert await t.call("big", "give", 500) == "x" * 500
        info = t.domain("big")
        assert (info.state, info.generation, info.faults) == ("running", 1, 0)


# --- 1. INVALID_FRAME ---------------------------------------------------------------------


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


class Opaque:
    pass


INVALID_ROWS = [
    pytest.param({1, 2}, "unencodable", id="a set"),
    pytest.param(Opaque(), "unencodable", id="an object"),
    pytest.param({"fn": print}, "unencodable", id="a function inside a map"),
    pytest.param({1: "one"}, "bad_key", id="an int map key"),
    pytest.param({b"k": "v"}, "bad_key", id="a bytes map key"),
    pytest.param({"deep": {("t",): 1}}, "bad_key", id="a tuple map key, nested"),
    pytest.param(2**70, "unencodable", id="an int over 64 bits"),
    pytest.param(nested(33), "too_deep", id="nesting over max_depth"),
    pytest.param(nested(10_000), "too_deep", id="very deep nesting"),
]


@pytest.mark.parametrize(("body", "reason"), INVALID_ROWS)
async def test_unencodable_body_raises_invalid_frame_to_the_caller(
    autojump_clock: trio.testing.MockClock, body: Any, reason: str
):
    sink = spec(Sink, id="sink", services=allow(Sink, "host"))
    async with open_test_tre(sink, host_calls={"sink": ["put"]}) as t:
        with pytest.raises(ipc.InvalidFrame) as info:
            await t.call("sink", "put", body)
        assert info.value.reason == reason
        assert info.value.code == "INVALID_FRAME"
        with pytest.raises(tre.InvalidFrame):
            t.notify("sink", "put", body)
        await trio.testing.wait_all_tasks_blocked()
        # the callee never saw anything, and a valid body still goes through
        assert PROBE.seen == []
        assert t.domain("sink").served == 0
        assert await t.call("sink", "put", nested(32)) is None
        assert PROBE.seen == [("sink", "host", nested(32))]


# --- 1. REMOTE_ERROR ----------------------------------------------------------------------

REMOTE_ROWS = [
    pytest.param("BAD_INPUT", "why", "BAD_INPUT", "why", id="code and message"),
    pytest.param("BAD_INPUT", "", "BAD_INPUT", "", id="code only"),
    pytest.param("DENIED", "spoofed", "DENIED", "spoofed", id="cannot spoof DENIED"),
    pytest.param("ABORTED", "spoofed", "ABORTED", "spoofed", id="cannot spoof ABORTED"),
    pytest.param("TIMEOUT", "x", "TIMEOUT", "x", id="cannot spoof TIMEOUT"),
    pytest.param("INVALID_FRAME", "x", "INVALID_FRAME", "x", id="cannot spoof INVALID_FRAME"),
    pytest.param("REMOTE_ERROR", "x", "REMOTE_ERROR", "x", id="code REMOTE_ERROR"),
    pytest.param("not a code!", "m", "SERVICE_ERROR", "m", id="an unsafe code is replaced"),
    pytest.param("A" * 49, "m", "SERVICE_ERROR", "m", id="an over-long code is replaced"),
    pytest.param("BAD", "y" * 2000, "BAD", "y" * 512, id="a long message is cut"),
    pytest.param("BAD", "a: b: c", "BAD", "a: b: c", id="a message with colons"),
]


@pytest.mark.parametrize(("code", "message", "remote_code", "remote_message"), REMOTE_ROWS)
async def test_service_error_reaches_the_caller_as_remote_error(
    autojump_clock: trio.testing.MockClock,
    code: str,
    message: str,
    remote_code: str,
    remote_message: str,
):
    failing = spec(Failing, id="failing", services=allow(Failing, "host", "client"))
    client = client_spec({"failing": ["fail"]})
    async with open_test_tre(
        failing, client, host_calls={"failing": ["fail", "ok"], "client": ["call_out"]}
    ) as t:
        with pytest.raises(tre.CallError) as info:
            await t.call("failing", "fail", [code, message])
        exc = info.value
        assert type(exc) is tre.RemoteError  # never a kernel outcome such as Denied
        assert exc.code == "REMOTE_ERROR"
        assert exc.remote_code == remote_code
        assert exc.remote_message == remote_message
        # nothing of the callee's exception crosses: no traceback, no type, no chaining
        text = str(exc) + repr(exc)
        for leak in ("Traceback", "ServiceError", "Failing", 'File "', "line "):
            assert leak not in text
        assert exc.__cause__ is None
        assert exc.__context__ is None
        frames = [f.name for f in traceback.extract_tb(exc.__traceback__)]
        assert "fail" not in frames
        # same from a domain
        assert await via(t, "client", "failing", "fail", [code, message]) == {
            "error": "REMOTE_ERROR",
            "type": "RemoteError",
        }
        # a ServiceError is an answer, not a fault
        assert await t.call("failing", "ok") == "still fine"
        info2 = t.domain("failing")
        assert (info2.state, info2.generation, info2.faults) == ("running", 1, 0)


async def test_unencodable_reply_is_a_remote_error_not_a_fault(
    autojump_clock: trio.testing.MockClock,
):
    failing = spec(Failing, id="failing", services=allow(Failing, "host"))
    async with open_test_tre(failing, host_calls={"failing": ["bad_reply", "ok"]}) as t:
        with pytest.raises(tre.RemoteError) as info:
            await t.call("failing", "bad_reply")
        assert info.value.remote_code == "BAD_REPLY"
        assert "set" not in str(info.value)
        assert await t.call("failing", "ok") == "still fine"
        assert t.domain("failing").faults == 0


# --- 2. the sender is stamped by the kernel ----------------------------------------------

SPOOF = {"caller": "client", "sender": "client", "from": "tre", "id": "kernel"}


async def test_sender_is_stamped_by_the_kernel(autojump_clock: trio.testing.MockClock):
    specs = [
        spec(Echo, id="echo", services={"echo": ["host", "client"], "secret": ["client"]}),
        client_spec({"echo": ["echo"]}),
    ]
    async with open_test_tre(
        *specs, host_calls={"echo": ["echo", "secret"], "client": ["call_out"]}
    ) as t:
        assert await t.call("echo", "echo", SPOOF) == {"caller": "host", "body": SPOOF}
        assert await via(t, "client", "echo", "echo", {**SPOOF, "caller": "host"}) == {
            "ok": {"caller": "client", "body": {**SPOOF, "caller": "host"}}
        }
        # claiming to be "client" in the body does not open client's channels to the host
        with pytest.raises(tre.Denied):
            await t.call("echo", "secret", SPOOF)
        t.notify("echo", "echo", SPOOF)
        await trio.testing.wait_all_tasks_blocked()
        assert PROBE.seen[-1] == ("echo", "host", SPOOF)


# --- 3. no object is ever shared ----------------------------------------------------------


async def test_bodies_are_fresh_copies_both_ways(autojump_clock: trio.testing.MockClock):
    specs = [
        spec(Mutator, id="mutator", services=allow(Mutator, "host", "client")),
        client_spec({"mutator": ["mutate"]}),
    ]
    async with open_test_tre(
        *specs, host_calls={"mutator": ["mutate", "get", "types"], "client": ["keep_mine"]}
    ) as t:
        # caller -> callee: the callee mutates its copy; the caller's object is untouched
        mine = {"items": [1, 2, 3], "nested": {"k": "v"}}
        reply = await t.call("mutator", "mutate", mine)
        assert mine == {"items": [1, 2, 3], "nested": {"k": "v"}}
        assert reply == {
            "items": [1, 2, 3, "mutated by callee"],
            "nested": {"k": "changed"},
            "added": True,
        }
        assert reply is not mine
        # callee -> caller: mutating a reply does not reach the callee's state
        state = await t.call("mutator", "get")
        state["items"].clear()
        state["owner"] = "host"
        assert await t.call("mutator", "get") == {"items": [1, 2], "owner": "mutator"}
        # the same between two domains
        report = await t.call("client", "keep_mine")
        assert report["mine"] == {"items": [1, 2, 3], "nested": {"k": "v"}}
        assert report["reply"]["items"] == [1, 2, 3, "mutated by callee", "reply mutated by caller"]


async def test_tuples_arrive_as_lists(autojump_clock: trio.testing.MockClock):
    mutator = spec(Mutator, id="mutator", services=allow(Mutator, "host"))
    async with open_test_tre(mutator, host_calls={"mutator": ["types"]}) as t:
        sent = (1, (2, 3), {"t": ("x",)}, b"\x01", bytearray(b"\x02"))
        reply = await t.call("mutator", "types", sent)
        ((_, _, seen),) = PROBE.seen
        assert seen == [1, [2, 3], {"t": ["x"]}, b"\x01", b"\x02"]
        assert type(seen) is list
        assert type(seen[1]) is list
        assert type(seen[2]["t"]) is list
        assert type(seen[4]) is bytes
        assert reply == {"tuple": [1, [2, 3]], "bytes": b"\x00\xff"}
        assert type(reply["tuple"]) is list
