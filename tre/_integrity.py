"""Integrity of the TRE code base (R13): full coverage, at boot, in the background, during
dormancy and before operations that rely on it.

The reference is a **manifest** per scope -- the TRE's own code (every file of ``tre``,
``ipc`` and ``attestation`` as installed) and each installed domain (every file of its
folder) -- listing each file with its SHA-256, signed: the TRE's by the manufacturer CA key,
a domain's by its owner's key (the manufacturer's for a domain installed without one).
``tre integrity seal`` writes them into ``STATE/integrity/`` (provisioning does it too).

A check measures every file again and compares: a changed, added or missing file is a
mismatch. At boot a mismatch in the TRE's own code refuses to boot (:class:`IntegrityError`
names the files); a mismatch in a domain locks that domain and the rest boots. At run time
the :class:`IntegrityMonitor` re-measures on a schedule, when the TRE has been idle for a
while (dormancy), and keeps a *freshness* flag that operations relying on integrity (key
use, sealing, attestation) require: if the last successful check is older than the bound,
they are refused with :class:`IntegrityStale` and a check is started. Hashing runs in a
worker thread, never on the event loop.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

import attestation
from ipc import TREError

from ._bytecode import bytecode_mismatches
from ._measure import code_files, file_digests, read_code, read_tree, tre_roots

if TYPE_CHECKING:
    from ._kernel import Kernel
    from ._loader import DomainSpec

__all__ = [
    "IntegrityError",
    "IntegrityMonitor",
    "IntegritySettings",
    "IntegrityStale",
    "Mismatch",
    "check_folder",
    "domain_files",
    "manifest_path",
    "measure_scope",
    "read_manifest",
    "write_manifest",
]

log = logging.getLogger("tre.integrity")

MANIFEST_DIR = "integrity"
TRE_SCOPE = "tre"


class IntegrityError(TREError):
    """The TRE's own code does not match its signed manifest: the TRE refuses to boot (or,
    found at run time, locks). ``files`` names what differs."""

    code = "INTEGRITY"

    def __init__(self, message: str, files: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.files = files


class IntegrityStale(TREError):
    """An operation that relies on integrity was refused: no successful check within the
    configured bound. A check has been started; retry after it."""

    code = "INTEGRITY_STALE"


@attrs.frozen
class IntegritySettings:
    """When to check (seconds). Defaults suit a device that wakes every few minutes."""

    #: re-measure everything this often while running
    interval: float = 300.0
    #: run a full check after this long without any call (dormancy)
    dormancy_after: float = 60.0
    #: operations relying on integrity need a successful check at most this old
    max_age: float = 900.0


@attrs.frozen
class Mismatch:
    scope: str
    changed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()

    @property
    def files(self) -> tuple[str, ...]:
        return self.changed + self.added + self.missing

    def describe(self) -> str:
        kinds = (("changed", self.changed), ("added", self.added), ("missing", self.missing))
        # names are escaped: a file name cannot forge lines in an error or a log
        parts = [
            f"{what}: {', '.join(json.dumps(f)[1:-1] for f in files)}"
            for what, files in kinds
            if files
        ]
        return f"{self.scope}: " + "; ".join(parts)


# --- manifests -----------------------------------------------------------------------------------


def manifest_path(state_dir: Path, scope: str) -> Path:
    folder = Path(state_dir) / MANIFEST_DIR
    return folder / "tre.json" if scope == TRE_SCOPE else folder / "domains" / f"{scope}.json"


def _document_bytes(scope: str, files: Mapping[str, bytes]) -> bytes:
    listed = {k: v.hex() for k, v in sorted(files.items())}
    document = {"version": 1, "scope": scope, "files": listed}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def write_manifest(
    state_dir: Path, scope: str, files: Mapping[str, bytes], key: Ed25519PrivateKey
) -> Path:
    """Sign and write the manifest of ``scope`` (the TRE or a domain id)."""
    body = _document_bytes(scope, files)
    path = manifest_path(state_dir, scope)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"document": json.loads(body), "signature": key.sign(body).hex()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_manifest(state_dir: Path, scope: str, public: Ed25519PublicKey) -> dict[str, bytes]:
    """Read and verify a manifest; :class:`IntegrityError` if missing, malformed or forged."""
    path = manifest_path(state_dir, scope)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        document = record["document"]
        files = {str(k): bytes.fromhex(v) for k, v in document["files"].items()}
        signature = bytes.fromhex(record["signature"])
        if document.get("scope") != scope or document.get("version") != 1:
            raise ValueError("wrong scope or version")
        public.verify(signature, _document_bytes(scope, files))
    except OSError:
        raise IntegrityError(f"{scope}: no integrity manifest at {path}") from None
    except InvalidSignature:
        raise IntegrityError(f"{scope}: the integrity manifest's signature is invalid") from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise IntegrityError(f"{scope}: the integrity manifest is malformed") from None
    return files


def domain_files(spec: DomainSpec) -> list[tuple[str, bytes]]:
    """The files of a domain, as its manifest lists them."""
    folder = spec.manifest.directory
    if folder is None:
        return []
    return [(rel, read_code(path)) for rel, path in code_files(folder)]


def measure_scope(
    scope: str, spec: DomainSpec | None, roots: Mapping[str, Path] | None
) -> dict[str, bytes]:
    if spec is None:
        return file_digests(read_tree(roots or tre_roots()))
    return file_digests(domain_files(spec))


def compare(
    scope: str, expected: Mapping[str, bytes], actual: Mapping[str, bytes]
) -> Mismatch | None:
    changed = tuple(sorted(p for p in expected if p in actual and actual[p] != expected[p]))
    added = tuple(sorted(p for p in actual if p not in expected))
    missing = tuple(sorted(p for p in expected if p not in actual))
    if changed or added or missing:
        return Mismatch(scope, changed, added, missing)
    return None


def check_folder(scope: str, expected: Mapping[str, bytes], folder: Path) -> Mismatch | None:
    """Measure every code file of ``folder`` against ``expected`` (path -> SHA-256), then
    the bytecode caches Python would run instead of them. OSError if a file cannot be read."""
    actual = file_digests([(rel, read_code(path)) for rel, path in code_files(folder)])
    problem = compare(scope, expected, actual)
    if problem is None:
        problem = _bytecode_problem(scope, bytecode_mismatches(folder))
    return problem


def _bytecode_problem(scope: str, files: list[str]) -> Mismatch | None:
    """Cache files Python would run instead of the measured sources (tre/_bytecode.py)."""
    if not files:
        return None
    return Mismatch(scope, changed=tuple(f"{f} (its __pycache__ bytecode)" for f in files))


# --- checking at run time ------------------------------------------------------------------------


class IntegrityMonitor:
    """Kernel-side: runs the checks and keeps the freshness gate (see the module docstring).

    ``fresh`` is True while the last successful check is younger than ``max_age``; the
    keystore and the evidence maker read it (one attribute, nothing on their hot path
    scales with the number of files)."""

    def __init__(
        self,
        state_dir: Path,
        tre_key: Ed25519PublicKey,
        domains: Mapping[str, tuple[DomainSpec, Ed25519PublicKey]],
        settings: IntegritySettings,
        roots: Mapping[str, Path] | None = None,
        references: Mapping[str, Mapping[str, bytes]] | None = None,
        bad_references: Mapping[str, str] | None = None,
        tre_reference: Mapping[str, bytes] | None = None,
    ) -> None:
        self.state_dir = state_dir
        #: domains installed from a package: their reference is the package's file list
        #: (verified by the caller), not a manifest file; ``bad_references`` could not be
        #: verified (id -> why) and always mismatch
        self._references = {k: dict(v) for k, v in (references or {}).items()}
        self._bad_references = dict(bad_references or {})
        #: the TRE's own code package, once installed: the TRE's reference (not tre.json)
        self._tre_reference = None if tre_reference is None else dict(tre_reference)
        self.settings = settings
        self.roots = roots
        self._tre_key = tre_key
        self._domains = dict(domains)
        self._manifests: dict[str, dict[str, bytes]] = {}
        #: hash of the TRE's code as the last check read it (the same function as the
        #: evidence's tre-measurement, which the device computes when it opens)
        self.tre_code_hash = b""
        self.fresh = False
        self.last: dict[str, dict[str, Any]] = {}
        self._fresh_until = -math.inf
        self._kick = trio.Event()
        self.kernel: Kernel | None = None
        #: called after each run-time check with (kind, result record); persists it
        self.on_result: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None

    # The whole check, synchronous (run in a worker thread).
    def _manifest(self, scope: str, key: Ed25519PublicKey) -> dict[str, bytes]:
        """A manifest, read and verified once; later checks use the verified copy (a file
        swapped on disk while running changes nothing)."""
        if scope in self._bad_references:
            raise IntegrityError(f"{scope}: {self._bad_references[scope]}")
        if scope in self._references:
            return self._references[scope]
        cached = self._manifests.get(scope)
        if cached is None:
            cached = self._manifests[scope] = read_manifest(self.state_dir, scope, key)
        return cached

    def check_sync(self) -> tuple[Mismatch | None, dict[str, Mismatch]]:
        tre_problem: Mismatch | None
        try:
            expected = (
                self._tre_reference
                if self._tre_reference is not None
                else self._manifest(TRE_SCOPE, self._tre_key)
            )
            roots = self.roots or tre_roots()
            files = read_tree(roots)
            # The same bytes give the TRE measurement that attestation evidence carries.
            self.tre_code_hash = attestation.hash_files(files)
            tre_problem = compare(TRE_SCOPE, expected, file_digests(files))
            if tre_problem is None:
                tre_problem = _bytecode_problem(
                    TRE_SCOPE,
                    [
                        f"{name}/{rel}"
                        for name, root in roots.items()
                        for rel in bytecode_mismatches(root)
                    ],
                )
        except IntegrityError as exc:
            tre_problem = Mismatch(TRE_SCOPE, changed=(exc.message,))
        except OSError as exc:  # a file vanished or became unreadable during the check
            tre_problem = Mismatch(TRE_SCOPE, missing=(str(exc.filename),))
        domain_problems: dict[str, Mismatch] = {}
        for domain_id, (spec, key) in self._domains.items():
            try:
                expected = self._manifest(domain_id, key)
                folder = spec.manifest.directory
                if folder is None:  # a domain built in code: its class's source file
                    problem = compare(domain_id, expected, measure_scope(domain_id, spec, None))
                else:
                    problem = check_folder(domain_id, expected, Path(folder))
            except IntegrityError as exc:
                problem = Mismatch(domain_id, changed=(exc.message,))
            except OSError as exc:
                problem = Mismatch(domain_id, missing=(str(exc.filename),))
            if problem is not None:
                domain_problems[domain_id] = problem
        return tre_problem, domain_problems

    def boot_check(self) -> set[str]:
        """At boot, before any domain runs: raise for the TRE's own code, return the ids
        of the domains to lock."""
        tre_problem, domain_problems = self.check_sync()
        self._record("boot", tre_problem, domain_problems)
        if tre_problem is not None:
            raise IntegrityError(
                f"integrity check failed, the TRE refuses to boot: {tre_problem.describe()}",
                tre_problem.files,
            )
        return set(domain_problems)  # the caller marks the check fresh (trio's clock)

    def _record(
        self, kind: str, tre_problem: Mismatch | None, domains: Mapping[str, Mismatch]
    ) -> None:
        problems = ([tre_problem] if tre_problem else []) + list(domains.values())
        self.last[kind] = {
            "time": time.time(),
            "result": "ok" if not problems else "mismatch",
            "detail": [p.describe() for p in problems],
        }

    def mark_fresh(self, now: float) -> None:
        self.fresh = True
        self._fresh_until = now + self.settings.max_age

    def require(self) -> None:
        """Gate for operations relying on integrity."""
        if not self.fresh:
            self._kick.set()
            raise IntegrityStale("no recent successful integrity check; one has been started")

    async def check(self, kind: str) -> bool:
        """Run a full check off the event loop; apply the result. True if all matched."""
        tre_problem, domain_problems = await trio.to_thread.run_sync(self.check_sync)
        self._record(kind, tre_problem, domain_problems)
        if self.on_result is not None:
            await self.on_result(kind, self.last[kind])
        kernel = self.kernel
        if kernel is not None:
            await self._apply(kernel, kind, tre_problem, domain_problems)
        if tre_problem is None:
            self.mark_fresh(trio.current_time())
            return not domain_problems
        self.fresh = False
        return False

    async def _apply(
        self,
        kernel: Kernel,
        kind: str,
        tre_problem: Mismatch | None,
        domains: Mapping[str, Mismatch],
    ) -> None:
        from ._endoflife import tamper  # the lifecycle tables of the root of trust

        outcome = "ok" if not (tre_problem or domains) else "mismatch"
        kernel.record("integrity", "tre", f"{kind}: {outcome}")
        if tre_problem is not None:
            reason = f"integrity ({kind}): {tre_problem.describe()}"
            await tamper(kernel.device, None, reason)
            for each in kernel.domains.values():
                kernel.lock(each, reason)
            kernel.evidence.forget()
            return
        for domain_id, problem in domains.items():
            reason = f"integrity ({kind}): {problem.describe()}"
            target = kernel.domains.get(domain_id)
            if target is not None and target.state.value != "locked":
                if domain_id in kernel.device.records:
                    await tamper(kernel.device, domain_id, reason)
                kernel.lock(target, reason)
                kernel.evidence.forget()

    async def run(self) -> None:
        """The background task: the schedule, dormancy, freshness expiry and kicks from
        gated operations. Time comes from trio's clock (MockClock drives it in tests).

        Dormancy: once the TRE has been idle (no call) for ``dormancy_after``, one check;
        the next dormancy check waits for a new call and a new idle period."""
        settings = self.settings
        kernel = self.kernel
        next_scheduled = trio.current_time() + settings.interval
        idle_checked = math.nan  # the last_call whose idle period was already checked
        while True:
            now = trio.current_time()
            last_call = kernel.last_call if kernel is not None else math.inf
            if last_call == idle_checked:  # look again later: a call may start a new period
                dormancy_due = now + settings.dormancy_after
            else:
                dormancy_due = last_call + settings.dormancy_after
            expiry = self._fresh_until if self.fresh else math.inf
            with trio.move_on_at(min(next_scheduled, dormancy_due, expiry)):
                await self._kick.wait()
            now = trio.current_time()
            last_call = kernel.last_call if kernel is not None else math.inf
            if self._kick.is_set():
                self._kick = trio.Event()
                await self.check("pre-operation")
            elif now >= next_scheduled:
                next_scheduled = now + settings.interval
                await self.check("scheduled")
            elif last_call != idle_checked and now >= last_call + settings.dormancy_after:
                idle_checked = last_call
                await self.check("dormancy")
            elif self.fresh and now >= self._fresh_until:
                self.fresh = False  # expired: the next gated operation kicks a check
