"""Local attestation and attested sessions between domains, through the kernel."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import attestation
import ipc
import tre
from tre.testing import open_test_tre, spec

NONCE = bytes(range(16))
DATA = bytes(32)


class Server(tre.Domain):
    """Accepts sessions from whoever its manifest lets call it, if they meet EXPECT."""

    expect = tre.Expect()
    received: list[bytes] = []

    @tre.service
    async def session(self, caller: str, body: Any) -> Any:
        return self.ctx.accept_session(caller, body, expect=Server.expect)

    @tre.service
    async def put(self, caller: str, body: Any) -> Any:
        s = self.ctx.session(caller)
        Server.received.append(s.open(body))
        return s.seal(b"ack:" + Server.received[-1])

    @tre.service
    async def check(self, caller: str, body: Any) -> Any:
        """Check a report handed over by a caller; say what it claims."""
        try:
            report = self.ctx.check_report(body)
        except attestation.ReportInvalid:
            return "invalid"
        return {"subject": report.subject, "svn": report.svn}


class Client(tre.Domain):
    """Opens a session with the server on the host's request, or makes reports."""

    expect = tre.Expect()

    @tre.service
    async def go(self, caller: str, body: Any) -> Any:
        try:
            s = await self.ctx.open_session("server", expect=Client.expect)
        except tre.SessionRefused as exc:
            return {"refused": exc.reason}
        except tre.RemoteError as exc:
            return {"remote": exc.remote_code}
        reply = await self.ctx.call("server", "put", s.seal(body))
        return {"ack": s.open(reply)}

    @tre.service
    async def replay(self, caller: str, body: Any) -> Any:
        """Send one sealed message twice, and two out of order."""
        s = await self.ctx.open_session("server", expect=Client.expect)
        first, second = s.seal(b"one"), s.seal(b"two")
        out = []
        for message in (second, first, first):
            try:
                out.append(s.open(await self.ctx.call("server", "put", message)))
            except tre.RemoteError as exc:
                out.append(exc.remote_code.encode())
        return out

    @tre.service
    async def report_for(self, caller: str, body: Any) -> Any:
        return self.ctx.report(body, NONCE, DATA)


class Third(tre.Domain):
    @tre.service
    async def present(self, caller: str, body: Any) -> Any:
        """Present a report made for someone else to the server."""
        return await self.ctx.call("server", "check", body)


def domains(server_svn: int = 2, client_svn: int = 1) -> list[tre.DomainSpec]:
    return [
        spec(
            Server,
            id="server",
            svn=server_svn,
            services={"session": ["client"], "put": ["client"], "check": ["client", "third"]},
        ),
        spec(
            Client,
            id="client",
            svn=client_svn,
            services={"go": ["host"], "replay": ["host"], "report_for": ["host", "third"]},
            calls={"server": ["session", "put", "check"]},
        ),
        spec(
            Third,
            id="third",
            services={"present": ["host"]},
            calls={"server": ["check"], "client": ["report_for"]},
        ),
    ]


HOST = {"client": ["go", "replay", "report_for"], "third": ["present"]}


@pytest.fixture(autouse=True)
def reset() -> None:
    Server.expect = tre.Expect()
    Client.expect = tre.Expect()
    Server.received = []


async def test_two_domains_open_an_attested_session(autojump_clock: trio.abc.Clock) -> None:
    async with open_test_tre(*domains(), host_calls=HOST) as t:
        Client.expect = tre.Expect(measurements={t.measurement("server")}, min_svn=2)
        Server.expect = tre.Expect(min_svn=1)
        assert await t.call("client", "go", b"secret") == {"ack": b"ack:secret"}
        assert Server.received == [b"secret"]


@pytest.mark.parametrize(
    ("side", "expect", "reason"),
    [
        ("client", tre.Expect(min_svn=3), "svn"),
        ("client", tre.Expect(measurements={bytes(32)}), "measurement"),
        ("client", tre.Expect(owner_hash=bytes(32)), "owner"),
        ("server", tre.Expect(min_svn=5), "svn"),
    ],
)
async def test_a_peer_that_fails_expect_is_refused(
    autojump_clock: trio.abc.Clock, side: str, expect: tre.Expect, reason: str
) -> None:
    if side == "client":
        Client.expect = expect
    else:
        Server.expect = expect
    async with open_test_tre(*domains(), host_calls=HOST) as t:
        result = await t.call("client", "go", b"x")
        assert reason in result["refused"]
        if side == "server":  # refused by the peer: the client hears why
            assert result["refused"].startswith("the peer refused")
        assert Server.received == []


async def test_a_report_for_one_domain_is_useless_to_another(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_test_tre(*domains(), host_calls=HOST) as t:
        for_server = await t.call("client", "report_for", "server")
        # The server checks a report made for it: it names the client.
        # (Presented by a third domain, it still says "client": the subject is in the MAC.)
        assert await t.call("third", "present", for_server) == {"subject": "client", "svn": 1}
        # A report the client made for the third domain is useless to the server.
        for_third = await t.call("client", "report_for", "third")
        assert await t.call("third", "present", for_third) == "invalid"
        flipped = bytearray(for_server)
        flipped[10] ^= 1
        assert await t.call("third", "present", bytes(flipped)) == "invalid"


async def test_replayed_and_reordered_session_messages(autojump_clock: trio.abc.Clock) -> None:
    async with open_test_tre(*domains(), host_calls=HOST) as t:
        out = await t.call("client", "replay")
        # reordered within the window: accepted once each; the replay is refused
        assert out[0] == b"ack:two"
        assert out[1] == b"ack:one"
        assert (
            out[2] == b"UPSTREAM_SESSION" or out[2].startswith(b"SERVICE") or b"SESSION" in out[2]
        )
        assert Server.received == [b"two", b"one"]


async def test_reports_need_a_channel(autojump_clock: trio.abc.Clock) -> None:
    class Lonely(tre.Domain):
        @tre.service
        async def ask(self, caller: str, body: Any) -> Any:
            try:
                return self.ctx.report("server", NONCE, DATA)
            except tre.SessionRefused:
                return "refused"

    async with open_test_tre(
        *domains(),
        spec(Lonely, id="lonely", services={"ask": ["host"]}),
        host_calls={**HOST, "lonely": ["ask"]},
    ) as t:
        assert await t.call("lonely", "ask") == "refused"


def test_session_errors_are_typed() -> None:
    assert issubclass(ipc.SessionError, tre.TREError)
    assert tre.SessionRefused("x").code == "SESSION_REFUSED"
