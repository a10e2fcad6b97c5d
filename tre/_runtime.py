"""The embedding API: ``async with tre.open_tre(...) as t``.

``open_tre`` resolves the config, loads the domain plugins, compiles the policy, starts the
kernel's deadline task and boots each domain in boot order under its supervisor. Leaving
the block cancels every domain cleanly. The yielded :class:`TRE` is the host's handle: the
device software outside the TRE calls in as the caller ``"host"``, within the grants of the
config's ``[host]`` table (and only where the callee's manifest allows ``"host"``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import attestation

from ._audit import AuditLog, attach_audit_log
from ._config import TREConfig, default_config, load_config
from ._device import Device, EventHook
from ._endoflife import tamper
from ._errors import ConfigError, DomainFailed
from ._evidence import EvidenceMaker
from ._host import HostGateway, HostSession
from ._hostserver import ServerLimits, serve_host
from ._installed import device_specs, package_references, untrusted_packages
from ._integrity import IntegrityError, IntegrityMonitor, IntegritySettings
from ._integrity_seal import domain_verify_keys
from ._kernel import Kernel
from ._keystore import load_counters, load_keys
from ._lifecycle import DomainLifecycle, DomainState, TREState
from ._loader import DomainSpec, resolve
from ._policy import Policy
from ._ports import PortEnd
from ._records import KernelEvent
from ._runlock import state_lock
from ._supervisor import supervise
from ._users import Users, users_key

__all__ = ["TRE", "DeviceInfo", "DomainInfo", "open_tre"]


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


@attrs.frozen
class DeviceInfo:
    """The device a TRE runs on."""

    ueid: str
    imei: str | None
    lifecycle: str
    boot_count: int
    state_dir: str | None  # None for a throw-away in-memory device


class TRE:
    """The host's handle on a running TRE (see :func:`open_tre`)."""

    def __init__(
        self, kernel: Kernel, boot_seconds: float, gateway: HostGateway | None = None
    ) -> None:
        self._kernel = kernel
        self._gateway = gateway
        #: wall-clock seconds the boot of every domain took
        self.boot_seconds = boot_seconds

    def _host_gateway(self) -> HostGateway:
        if self._gateway is None:
            raise ConfigError(
                "<open_tre>", "state", "users exist only on a provisioned device (state=...)"
            )
        return self._gateway

    async def host(self, *, user: str, password: str) -> HostSession:
        """Log ``user`` in (the same challenge-response, lockout and grants as the host
        socket) and return a :class:`HostSession` whose ``call`` acts as that user.
        Raises :class:`ipc.AuthFailed` (``UserLocked`` while locked out or backing off)."""
        return await self._host_gateway().login(user, password)

    async def serve_host(
        self,
        path: Path,
        *,
        limits: ServerLimits | None = None,
        task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve the host interface on a Unix socket at ``path`` until cancelled (use
        ``await nursery.start(t.serve_host, path)``); see :mod:`tre._hostserver`."""
        await serve_host(
            self._host_gateway(), path, limits=limits or ServerLimits(), task_status=task_status
        )

    @property
    def config(self) -> TREConfig:
        return self._kernel.config

    @property
    def device(self) -> DeviceInfo:
        d = self._kernel.device
        return DeviceInfo(
            ueid=d.ueid.hex(),
            imei=d.imei or None,
            lifecycle=d.tre_state.value,
            boot_count=d.boot_count,
            state_dir=None if d.state_dir is None else str(d.state_dir),
        )

    def measurement(self, domain_id: str) -> bytes:
        """The domain's measurement (code, manifest, owner key, svn) as its keys use it."""
        keys = self._kernel.domains[domain_id].keys
        assert keys is not None
        return keys.measurement

    def alias_certificate(self, domain_id: str) -> x509.Certificate:
        """``domain_id``'s alias certificate, chaining to the DeviceID certificate
        (:attr:`device_certificate`) and from there to the manufacturer CA."""
        keys = self._kernel.domains[domain_id].keys
        assert keys is not None
        return self._kernel.device.alias_certificate(keys)

    @property
    def device_certificate(self) -> x509.Certificate:
        return self._kernel.device.device_cert

    def attest(self, nonce: bytes) -> bytes:
        """Remote attestation evidence for a verifier's ``nonce`` (8 to 64 bytes): an EAT
        signed by the DeviceID key with one nested token per domain (see tre/_evidence.py).
        Each request is recorded (the audit log keeps it)."""
        kernel = self._kernel
        kernel.record("attest", "tre", f"evidence requested (nonce of {len(nonce)} bytes)")
        return kernel.evidence.evidence(nonce)

    async def tamper(self, domain: str | None = None, reason: str = "tamper detected") -> list[str]:
        """Tamper response from inside the device (a tamper sensor): lock ``domain``, or
        the whole TRE when None. Locked domains stop at once; their callers and every
        later caller get :class:`~tre.Locked`; their keys cannot be used. Permanent."""
        kernel = self._kernel
        locked = await tamper(kernel.device, domain, reason)
        # The whole TRE: every running domain, installed or added in code.
        for domain_id in locked if domain is not None else list(kernel.domains):
            kernel.lock(kernel.domains[domain_id], reason)
        kernel.evidence.forget()
        return locked

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

    def port(self, name: str) -> PortEnd:
        """The device's side of the config's port ``name`` (:class:`~tre.NoSuchPort` if it
        declares none): the software outside the TRE plays the hardware through it, writing
        what the domains holding the port read and reading what they write."""
        return self._kernel.ports.end(name)

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


#: How often a TRE running on a state folder re-reads its lifecycle (seconds), so that a
#: ``tre tamper`` from another process locks the running domains.
LIFECYCLE_POLL = 1.0


@contextlib.asynccontextmanager
async def open_tre(
    config: TREConfig | str | Path | None = None,
    *,
    state: str | Path | None = None,
    domains: Iterable[DomainSpec] = (),
    on_event: EventHook | None = None,
    lifecycle_poll: float = LIFECYCLE_POLL,
    code_roots: Mapping[str, Path] | None = None,
) -> AsyncIterator[TRE]:
    """Boot a TRE and yield its host handle; shut every domain down on exit.

    With ``state``, boot the device provisioned in that folder (``tre provision``) with
    the config it was provisioned with; each boot is counted. Without it, boot ``config``
    (a :class:`TREConfig`, a path to a TOML config, or None for the embedded default) on a
    throw-away in-memory device, so domains still have keystores. ``domains`` adds specs
    built in code (see :mod:`tre.testing`). ``on_event`` receives every lifecycle event.
    On a provisioned device every file of the TRE and of each domain is checked against
    its signed integrity manifest before any domain runs (``code_roots`` points the check
    at other copies of the tre/ipc/attestation folders, for tests).

    Config errors raise :class:`~tre.ConfigError` before anything starts; a terminated
    device raises :class:`~tre.Terminated`. If a domain whose abort action is
    ``propagate`` fails, the block is cancelled and :class:`~tre.DomainFailed` is raised.
    """
    run_lock = contextlib.ExitStack()
    if state is not None:
        if config is not None:
            raise ConfigError(str(state), "", "a provisioned state carries its own config")
        run_lock.enter_context(state_lock(Path(state), "boot"))
        try:
            device = await Device.open(Path(state))
        except BaseException:
            run_lock.close()
            raise
        cfg = device.config
        try:
            # Installed packages are measured before any of their code is imported: one
            # that does not match is locked now, and its code never loaded.
            untrusted = await trio.to_thread.run_sync(
                untrusted_packages, Path(state), device.records
            )
            for domain_id, why in sorted(untrusted.items()):
                if device.records[domain_id].state is not DomainLifecycle.LOCKED:
                    await tamper(device, domain_id, f"integrity (boot): {domain_id}: {why}")
            specs: Sequence[DomainSpec] = device_specs(
                Path(state), cfg, device.records, domains, untrusted
            )
        except BaseException:
            with trio.CancelScope(shield=True):
                await device.close()
            run_lock.close()
            raise
    else:
        cfg = _as_config(config)
        specs = resolve(cfg, domains)
        device = Device.ephemeral(cfg, list(specs))
    audit: AuditLog | None = None
    try:
        if on_event is not None:
            device.hooks.append(on_event)
        await device.boot()
        kernel = Kernel(cfg, specs, device)
        await _prepare_keys(kernel, device)
        audit = await attach_audit_log(kernel)  # the secure audit record (R11)
        kernel.evidence = EvidenceMaker(
            device,
            bytes.fromhex(kernel.policy.digest()),
            {i: rt.keys for i, rt in kernel.domains.items() if rt.keys is not None},
        )
        monitor = None
        if device.state_dir is not None:
            monitor = await _check_integrity_at_boot(kernel, device, specs, code_roots)
        await device.activate([s.id for s in specs if not _locked_at_boot(device, s.id)])
        async with trio.open_nursery() as nursery:
            kernel.build_routes()
            nursery.start_soon(kernel.deadlines.run)
            nursery.start_soon(audit.serve)
            started = time.perf_counter()
            for rt in kernel.domains_in_boot_order():
                if _locked_at_boot(device, rt.id):
                    kernel.lock(rt, "locked by tamper response")
                    continue
                await nursery.start(_supervise_task, kernel, rt)
            if device.state_dir is not None:
                nursery.start_soon(_watch_lifecycle, kernel, device, lifecycle_poll)
            if monitor is not None:
                nursery.start_soon(monitor.run)
            gateway = None
            if device.state_dir is not None:
                gateway = HostGateway(kernel, Users(device.store.sync, users_key(device)))
            handle = TRE(kernel, time.perf_counter() - started, gateway)
            try:
                yield handle
            finally:
                nursery.cancel_scope.cancel()
                kernel.ports.close()  # every port claim ends; the host's port ends close
    except BaseExceptionGroup as group:
        error = _collapse(group)
        if error is group:
            raise
        error.__suppress_context__ = True
        raise error from error.__cause__
    finally:
        with trio.CancelScope(shield=True):
            if audit is not None:
                await audit.aclose()  # what is queued is written before the store closes
            await device.close()
            run_lock.close()


async def _check_integrity_at_boot(
    kernel: Kernel,
    device: Device,
    specs: Sequence[DomainSpec],
    code_roots: Mapping[str, Path] | None,
) -> IntegrityMonitor:
    """Measure every file before any domain runs: the TRE's own code must match (else
    :class:`IntegrityError` and no boot); a domain that does not match is locked."""
    assert device.state_dir is not None
    state_dir = device.state_dir
    ca_public = device.ca_cert.public_key()
    assert isinstance(ca_public, Ed25519PublicKey)
    keys = domain_verify_keys(state_dir, ca_public)
    references, bad_references = package_references(device.records)
    tre_reference = None
    if device.tre_package is not None:
        try:
            if device.tre_package_role is None:
                raise attestation.MalformedPackage("no root role recorded with it")
            package = attestation.installed_package(
                device.tre_package, device.tre_package_role, attestation.TRE_TARGET
            )
        except attestation.UpdateError as exc:
            message = f"the installed TRE package does not verify: {exc.message}"
            kernel.record("integrity", "tre", f"boot: refused: {message}")
            refused = f"integrity check failed, the TRE refuses to boot: {message}"
            raise IntegrityError(refused) from None
        tre_reference = {path: info.sha256 for path, info in package.files.items()}
    monitor = IntegrityMonitor(
        state_dir,
        ca_public,
        {s.id: (s, keys.get(s.id, ca_public)) for s in specs},
        IntegritySettings(**device.config.integrity),
        code_roots,
        references,
        bad_references,
        tre_reference,
    )

    async def persist(kind: str, entry: dict[str, Any]) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO integrity_checks VALUES (?, ?, ?, ?) ON CONFLICT(kind) DO UPDATE "
                "SET time = excluded.time, result = excluded.result, detail = excluded.detail",
                (kind, entry["time"], entry["result"], "\n".join(entry["detail"])),
            )

        await device.store.write(write)

    try:
        to_lock = await trio.to_thread.run_sync(monitor.boot_check)
    except IntegrityError as exc:
        kernel.record("integrity", "tre", f"boot: refused: {exc.message}")  # to the audit log
        raise
    finally:
        if "boot" in monitor.last:
            await persist("boot", monitor.last["boot"])
    monitor.mark_fresh(trio.current_time())
    detail = "; ".join(monitor.last["boot"]["detail"])
    for domain_id in sorted(to_lock):
        if domain_id in device.records:
            await tamper(device, domain_id, f"integrity (boot): {detail}")
        else:
            kernel.lock(kernel.domains[domain_id], f"integrity (boot): {detail}")
    monitor.kernel = kernel
    monitor.on_result = persist
    kernel.integrity = monitor
    kernel.evidence.gate = monitor
    for rt in kernel.domains.values():
        if rt.keys is not None:
            rt.keys.gate = monitor
    kernel.record("integrity", "tre", "boot: " + monitor.last["boot"]["result"])
    return monitor


def _locked_at_boot(device: Device, domain_id: str) -> bool:
    if device.tre_state is not TREState.SECURED:
        return True
    record = device.records.get(domain_id)
    return record is not None and record.state is DomainLifecycle.LOCKED


async def _prepare_keys(kernel: Kernel, device: Device) -> None:
    for rt in kernel.domains.values():
        rt.keys = device.domain_keys(rt.spec)
    keys = [rt.keys for rt in kernel.domains.values() if rt.keys]
    await load_keys(device.store, device.key_index, keys)
    await load_counters(device.store, keys)


async def _watch_lifecycle(kernel: Kernel, device: Device, every: float) -> None:
    """Apply lifecycle changes made by another process (``tre tamper``) while running."""
    while True:
        await trio.sleep(every)
        tre_state, domains = await device.reload_lifecycle()
        device.tre_state = tre_state
        for domain_id, lifecycle in domains.items():
            if domain_id in device.records:
                device.set_record_state(domain_id, lifecycle)
        for domain_id, rt in kernel.domains.items():
            locked = domains.get(domain_id) is DomainLifecycle.LOCKED
            if (locked or tre_state is not TREState.SECURED) and rt.state is not DomainState.LOCKED:
                kernel.lock(rt, "locked by tamper response")
                kernel.evidence.forget()


async def _supervise_task(
    kernel: Kernel, rt: Any, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    await supervise(kernel, rt, task_status=task_status)
