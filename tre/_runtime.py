"""The embedding API: ``async with tre.open_tre(...) as t``.

``open_tre`` resolves the config, loads the domain plugins, compiles the policy, starts the
kernel's deadline task and boots each domain in boot order under its supervisor. Leaving
the block cancels every domain cleanly. The yielded :class:`TRE` is the host's handle: the
device software outside the TRE calls in as the caller ``"host"``, within the grants of the
config's ``[host]`` table (and only where the callee's manifest allows ``"host"``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from ._config import TREConfig, default_config, load_config
from ._errors import DomainFailed
from ._kernel import Kernel
from ._lifecycle import DomainState
from ._loader import DomainSpec, resolve
from ._policy import Policy
from ._records import KernelEvent
from ._supervisor import supervise

__all__ = ["TRE", "DomainInfo", "open_tre"]


@attrs.frozen
class DomainInfo:
    """A snapshot of one domain, as the host may see it."""

    id: str
    owner: str
    version: str
    svn: int
    isolated: bool
    state: str
    generation: int
    faults: int
    restarts: int
    served: int
    overruns: int


class TRE:
    """The host's handle on a running TRE (see :func:`open_tre`)."""

    def __init__(self, kernel: Kernel, boot_seconds: float) -> None:
        self._kernel = kernel
        #: wall-clock seconds the boot of every domain took
        self.boot_seconds = boot_seconds

    @property
    def config(self) -> TREConfig:
        return self._kernel.config

    @property
    def policy(self) -> Policy:
        return self._kernel.policy

    @property
    def events(self) -> list[KernelEvent]:
        """Recent kernel events (boot faults, restarts, stops, denials, overruns)."""
        return list(self._kernel.events)

    def call(
        self,
        domain: str,
        method: str,
        body: Any = None,
        *,
        timeout: float | None = None,
        wait: bool = True,
    ) -> Coroutine[Any, Any, Any]:
        """``await t.call(...)``: call ``domain.method`` as the host. Same outcomes as
        :meth:`Context.call`."""
        kernel = self._kernel
        return kernel.call(kernel.host, 0, domain, method, body, timeout, wait)

    def notify(self, domain: str, method: str, body: Any = None) -> None:
        """Send a one-way notification as the host."""
        self._kernel.notify(self._kernel.host, 0, domain, method, body)

    def domains(self) -> list[DomainInfo]:
        """Every installed domain, in boot order."""
        return [self.domain(spec.id) for spec in self._kernel.specs]

    def domain(self, domain_id: str) -> DomainInfo:
        rt = self._kernel.domains[domain_id]
        m = rt.spec.manifest
        return DomainInfo(
            id=rt.id,
            owner=m.owner,
            version=m.version,
            svn=m.svn,
            isolated=m.isolated,
            state=rt.state.value,
            generation=rt.generation,
            faults=rt.faults,
            restarts=max(0, rt.generation - 1),
            served=rt.served,
            overruns=rt.overruns,
        )

    async def wait_for(
        self, domain_id: str, state: str, *, generation: int | None = None
    ) -> DomainInfo:
        """Wait until ``domain_id`` is in ``state`` (and at least ``generation``).
        Handy in tests; combine with ``trio.fail_after`` for a bound."""
        target = DomainState(state)
        rt = self._kernel.domains[domain_id]
        while not (rt.state is target and (generation is None or rt.generation >= generation)):
            await self._kernel.changed.wait()
        return self.domain(domain_id)


def _collapse(group: BaseExceptionGroup[Any]) -> BaseException:
    """Surface the one real error of a nursery's group (ignoring cancellations). A
    :class:`DomainFailed` wins over the errors it caused (e.g. a host call it aborted)."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        e = stack.pop()
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
        elif not isinstance(e, trio.Cancelled):
            leaves.append(e)
    failed = [e for e in leaves if isinstance(e, DomainFailed)]
    if len(failed) == 1:
        return failed[0]
    return leaves[0] if len(leaves) == 1 else group


def _as_config(config: TREConfig | str | Path | None) -> TREConfig:
    if config is None:
        return default_config()
    if isinstance(config, TREConfig):
        return config
    return load_config(config)


@contextlib.asynccontextmanager
async def open_tre(
    config: TREConfig | str | Path | None = None,
    *,
    domains: Iterable[DomainSpec] = (),
) -> AsyncIterator[TRE]:
    """Boot a TRE and yield its host handle; shut every domain down on exit.

    ``config`` is a :class:`TREConfig`, a path to a TOML config, or None for the embedded
    default (the reference domains). ``domains`` adds specs built in code (see
    :mod:`tre.testing`). Config errors raise :class:`~tre.ConfigError` before anything
    starts. If a domain whose abort action is ``propagate`` fails, the block is cancelled
    and :class:`~tre.DomainFailed` is raised.
    """
    cfg = _as_config(config)
    specs: Sequence[DomainSpec] = resolve(cfg, domains)
    kernel = Kernel(cfg, specs)
    try:
        async with trio.open_nursery() as nursery:
            kernel.build_routes()
            nursery.start_soon(kernel.deadlines.run)
            started = time.perf_counter()
            for rt in kernel.domains_in_boot_order():
                await nursery.start(_supervise_task, kernel, rt)
            handle = TRE(kernel, time.perf_counter() - started)
            try:
                yield handle
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        error = _collapse(group)
        if error is group:
            raise
        error.__suppress_context__ = True
        raise error from error.__cause__


async def _supervise_task(
    kernel: Kernel, rt: Any, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    await supervise(kernel, rt, task_status=task_status)
