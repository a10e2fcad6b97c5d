"""A test domain that runs keystore operations on request (see domain.toml).

``ks`` runs one public method of ``self.ctx.keystore`` named by the request and answers
with its result as plain data (a :class:`tre.KeyInfo` as a dict). A keystore error is
answered as a :class:`tre.ServiceError` carrying the error's ``code``, so the test sees
exactly which typed error the domain got; any other exception is answered as ``UNTYPED``
(and the domain carries on). ``agree``/``respond``/``check`` make two domains agree on an
AEAD key by X25519, talking only through the kernel; ``handoff`` tries to pass keystore
objects to a peer.

The tests change one byte of the marker on the next line to make a "changed code" domain.
"""

# code variant: 0

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

import tre

#: The context of every instance of this module's domains, newest last (read by tests).
CONTEXTS: list[tre.Context] = []


def plain(value: Any) -> Any:
    """A keystore result as plain data that crosses the kernel."""
    if isinstance(value, tre.KeyInfo):
        return {
            "label": value.label,
            "kind": value.kind.value,
            "version": value.version,
            "policy": value.policy.value,
            "public": value.public,
            "created": value.created,
            "available": value.available,
        }
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


@contextlib.contextmanager
def typed_errors() -> Iterator[None]:
    """Answer the caller with the keystore error's code (or UNTYPED for anything else)."""
    try:
        yield
    except tre.KeystoreError as exc:
        raise tre.ServiceError(exc.code, exc.message) from None
    except (tre.CallError, tre.InvalidFrame):
        raise
    except Exception as exc:
        raise tre.ServiceError("UNTYPED", f"{type(exc).__name__}: {exc}") from None


class KeystoreProbe(tre.Domain):
    def __init__(self, ctx: tre.Context) -> None:
        super().__init__(ctx)
        CONTEXTS.append(ctx)

    @tre.service
    async def ks(self, caller: str, body: Any) -> Any:
        """``{"op": NAME, "args": [...], "kwargs": {...}, "enums": bool}``: with ``enums``,
        the ``kind`` and ``policy`` keyword arguments are passed as enum members."""
        op = body["op"]
        args = list(body.get("args", []))
        kwargs = dict(body.get("kwargs", {}))
        if body.get("enums"):
            if "kind" in kwargs:
                kwargs["kind"] = tre.KeyKind(kwargs["kind"])
            if "policy" in kwargs:
                kwargs["policy"] = tre.SealPolicy(kwargs["policy"])
        if not isinstance(op, str) or op.startswith("_"):
            raise tre.ServiceError("BAD_OP", repr(op))
        with typed_errors():
            result = getattr(self.ctx.keystore, op)(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return plain(result)

    @tre.service
    async def agree(self, caller: str, body: Any) -> Any:
        """Agree on an AEAD key with ``body["peer"]`` (X25519 + HKDF with
        ``body["context"]``), then exchange one message each way under it."""
        peer, context = body["peer"], body["context"]
        ks = self.ctx.keystore
        with typed_errors():
            mine = await ks.generate(f"dh-{peer}", tre.KeyKind.X25519)
            reply = await self.ctx.call(
                peer, "respond", {"public": mine.public, "context": context}
            )
            await ks.derive(
                f"shared-{peer}", f"dh-{peer}", peer_public=reply["public"], context=context
            )
            heard = ks.decrypt(f"shared-{peer}", reply["sealed"], b"agree")
            note = f"hello {peer} from {self.ctx.id}".encode()
            read = await self.ctx.call(
                peer, "check", {"sealed": ks.encrypt(f"shared-{peer}", note, b"agree")}
            )
            return {"heard": heard, "peer_read": read}

    @tre.service
    async def respond(self, caller: str, body: Any) -> Any:
        ks = self.ctx.keystore
        with typed_errors():
            mine = await ks.generate(f"dh-{caller}", "x25519")
            await ks.derive(
                f"shared-{caller}",
                f"dh-{caller}",
                peer_public=body["public"],
                context=body["context"],
            )
            note = f"hello {caller} from {self.ctx.id}".encode()
            return {"public": mine.public, "sealed": ks.encrypt(f"shared-{caller}", note, b"agree")}

    @tre.service
    async def check(self, caller: str, body: Any) -> Any:
        with typed_errors():
            return self.ctx.keystore.decrypt(f"shared-{caller}", body["sealed"], b"agree")

    @tre.service
    async def handoff(self, caller: str, body: Any) -> Any:
        """Try to send keystore objects to ``body["peer"]``; the outcome code of each."""
        ks = self.ctx.keystore
        info = await ks.generate("handoff", tre.KeyKind.ED25519) if not ks.list() else ks.list()[0]
        outcomes: dict[str, str] = {}
        for name, thing in [
            ("keystore", ks),
            ("keyinfo", info),
            ("method", ks.sign),
            ("context", self.ctx),
        ]:
            try:
                await self.ctx.call(body["peer"], "check", {"sealed": thing})
            except (tre.CallError, tre.InvalidFrame) as exc:
                outcomes[name] = exc.code
            else:  # pragma: no cover - the point of the test is that this never happens
                outcomes[name] = "SENT"
        return outcomes
