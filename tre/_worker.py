"""The callee side: a domain's worker tasks take requests from its inbox and serve them.

How a handler's ending becomes the caller's outcome:

- it returns: the value is encoded (against the *caller's* frame limit) and sent back;
- it raises :class:`ServiceError`: REMOTE_ERROR with the handler's code and message;
- a session handshake or message it was handed is refused (:class:`SessionRefused`,
  :class:`ipc.SessionError`): REMOTE_ERROR ``SESSION_REFUSED`` / ``SESSION``: a bad message
  from a peer is answered, never a fault of the domain that received it;
- it lets a :class:`CallError` (or an unencodable body) of a call *it* made escape:
  REMOTE_ERROR ``UPSTREAM_<CODE>``: the failure came from outside, the domain carries on;
- it is cancelled because its caller's deadline passed: nothing is sent (the caller already
  has TIMEOUT), the overrun is counted, the worker goes on;
- anything else: a fault of the domain. Its callers are aborted at once and the exception
  goes up to the supervisor.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import trio

import ipc

from ._errors import CallError, ServiceError, TooLarge
from ._integrity import IntegrityStale
from ._kernel import PASSTHROUGH
from ._keystore import KeystoreLocked
from ._records import CURRENT, DomainRuntime
from ._sessions import SessionRefused
from ._slot import ReplySlot

if TYPE_CHECKING:
    from ._kernel import Kernel

__all__ = ["worker"]

#: Largest ServiceError message passed to a caller (longer ones are cut).
MAX_ERROR_MESSAGE = 512
_SAFE_CODE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_UPSTREAM = (CallError, ipc.InvalidFrame)
#: Conditions of the TRE, not faults of the domain that met them: its keystore is locked,
#: or the code-base integrity check is stale. Answered with their code; the domain goes on.
_CONDITIONS = (IntegrityStale, KeystoreLocked)


def _safe(exc: ServiceError) -> str:
    code = exc.code if isinstance(exc.code, str) else ""
    if not code or len(code) > 48 or not set(code) <= _SAFE_CODE:
        code = "SERVICE_ERROR"
    message = str(exc.message)[:MAX_ERROR_MESSAGE]
    return f"{code}: {message}" if message else code


def _bad_reply(codec: ipc.LocalCodec, msgid: int, exc: ipc.InvalidFrame) -> bytes:
    if exc.reason == "too_large":
        return codec.error(msgid, TooLarge.code, "the reply is over the caller's frame limit")
    return codec.error(
        msgid, "REMOTE_ERROR", f"BAD_REPLY: the reply cannot be encoded ({exc.reason})"
    )


async def worker(
    kernel: Kernel, rt: DomainRuntime, instance: Any, handlers: dict[str, Any]
) -> None:
    """Serve ``rt``'s inbox until cancelled; re-raise the domain's faults."""
    recv = rt.inbox_recv
    codec = kernel.codec
    inflight = rt.inflight
    slot: ReplySlot | None = None
    while True:
        with trio.CancelScope() as scope:
            while True:
                try:
                    frame, slot, chain, caller, system = await recv.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    return  # the kernel closed the inbox: the domain is stopping or locked
                if slot is None:
                    slot = ReplySlot(trio.current_time() + rt.default_deadline)
                    await _one_way(
                        kernel, rt, instance, handlers, frame, caller, system, slot, scope
                    )
                    continue
                if slot.done:  # timed out or abandoned while queued
                    inflight.discard(slot)
                    continue
                assert frame is not None
                request = codec.unpack(frame)
                msgid = request[1]
                CURRENT.set((chain, slot.deadline))
                slot.serving = scope
                try:
                    result = await handlers[request[2]](caller.id, request[4])
                except ServiceError as exc:
                    reply = codec.error(msgid, "REMOTE_ERROR", _safe(exc))
                except _CONDITIONS as exc:
                    reply = codec.error(msgid, "REMOTE_ERROR", f"{exc.code}: {exc.message}")
                except SessionRefused as exc:
                    reply = codec.error(msgid, "REMOTE_ERROR", f"SESSION_REFUSED: {exc.reason}")
                except ipc.SessionError:
                    reply = codec.error(msgid, "REMOTE_ERROR", "SESSION: the message was refused")
                except _UPSTREAM as exc:
                    reply = codec.error(
                        msgid,
                        "REMOTE_ERROR",
                        f"UPSTREAM_{exc.code}: a call made to serve this one failed",
                    )
                except PASSTHROUGH:
                    raise
                except BaseException:
                    kernel.fault(rt)
                    raise
                else:
                    try:
                        reply = codec.response(msgid, result, caller.max_frame)
                    except ipc.InvalidFrame as exc:
                        reply = _bad_reply(codec, msgid, exc)
                slot.serving = None
                inflight.discard(slot)
                rt.served += 1
                slot.set(reply)
        # Our own scope was cancelled: the handler overran its caller's deadline.
        if slot is not None:
            slot.serving = None
            inflight.discard(slot)
        rt.overruns += 1
        kernel.record("overrun", rt.id, "handler cancelled at its caller's deadline")


async def _one_way(
    kernel: Kernel,
    rt: DomainRuntime,
    instance: Any,
    handlers: dict[str, Any],
    frame: bytes | None,
    caller: Any,
    system: tuple[str, str] | None,
    slot: ReplySlot,
    scope: trio.CancelScope,
) -> None:
    """A notification or a system event. No reply, but the same deadline (the domain's
    ``default_deadline``) as a call: a handler that hangs is cancelled."""
    CURRENT.set(((rt.id,), math.inf))
    slot.serving = scope
    kernel.deadlines.add(slot)
    try:
        if system is not None:
            event, peer = system
            hook = instance.on_domain_down if event == "domain_down" else instance.on_domain_up
            await hook(peer)
        else:
            assert frame is not None
            _, method, body = kernel.codec.unpack(frame)
            try:
                await handlers[method](caller.id, body)
            except (ServiceError, *_UPSTREAM, *_CONDITIONS) as exc:
                kernel.record("notification_error", rt.id, f"{method}: {exc.code}")
            rt.served += 1
    except PASSTHROUGH:
        raise
    except BaseException:
        kernel.fault(rt)
        raise
    finally:
        slot.serving = None
        slot.done = True
        kernel.deadlines.prune()
