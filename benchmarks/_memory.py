"""Memory per idle domain, under ``tracemalloc``.

The traced memory with ``n`` idle domains booted minus that with none, divided by ``n``
(specs included: the TRE holds them). A snapshot difference by source line and by package
shows where those bytes go.
"""

from __future__ import annotations

import dataclasses
import gc
import tempfile
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

import tre
from tre.testing import open_test_tre

from ._loops import HOST_CALLS, TAG, domain_specs
from ._report import package_of, progress, short_path

__all__ = ["MemoryResult", "measure_memory"]


@dataclasses.dataclass
class MemoryResult:
    domains: int
    traced_delta: int
    snapshot_delta: int
    #: (source line, bytes per domain, blocks per domain), biggest first
    top: list[tuple[str, float, float]]
    #: package -> bytes per domain (allocations filed under the line that made them)
    by_package: dict[str, float]

    @property
    def bytes_per_domain(self) -> float:
        return self.traced_delta / self.domains

    @property
    def snapshot_bytes_per_domain(self) -> float:
        return self.snapshot_delta / self.domains


def _filtered(snapshot: tracemalloc.Snapshot) -> tracemalloc.Snapshot:
    return snapshot.filter_traces(
        (
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<unknown>"),
        )
    )


async def _traced_tre(specs: Sequence[tre.DomainSpec], dump_to: Path) -> int:
    """Boot ``specs`` under tracemalloc; return the traced bytes and dump a snapshot."""
    async with open_test_tre(*specs, host_calls=HOST_CALLS):
        gc.collect()
        current = tracemalloc.get_traced_memory()[0]
        # Dumped to a file, not kept: a snapshot held in memory would be traced itself.
        tracemalloc.take_snapshot().dump(str(dump_to))
    return current


def _site(traceback: tracemalloc.Traceback) -> str:
    frame = traceback[0]
    return f"{short_path(frame.filename)}:{frame.lineno}"


async def measure_memory(n: int) -> MemoryResult:
    """Bytes per idle domain: a TRE with ``n`` idle domains vs one with none."""
    progress(TAG, f"memory: tracemalloc, 2 domains vs {n + 2} domains")
    with tempfile.TemporaryDirectory(prefix="tre-bench-") as tmp:
        small_file, big_file = Path(tmp, "small.snap"), Path(tmp, "big.snap")
        gc.collect()
        tracemalloc.start()
        try:
            small = await _traced_tre(domain_specs(0), small_file)
            # Fresh ids ("mem-N"): per-id state kept by libraries (loggers) is counted too.
            specs = domain_specs(n, prefix="mem")
            big = await _traced_tre(specs, big_file)
            del specs
        finally:
            tracemalloc.stop()
        snap_small = _filtered(tracemalloc.Snapshot.load(str(small_file)))
        snap_big = _filtered(tracemalloc.Snapshot.load(str(big_file)))
    size_small = sum(stat.size for stat in snap_small.statistics("filename"))
    size_big = sum(stat.size for stat in snap_big.statistics("filename"))
    top = [
        (_site(diff.traceback), diff.size_diff / n, diff.count_diff / n)
        for diff in snap_big.compare_to(snap_small, "lineno")[:12]
    ]
    by_package: dict[str, float] = {}
    for diff in snap_big.compare_to(snap_small, "filename"):
        group = package_of(diff.traceback[0].filename)
        by_package[group] = by_package.get(group, 0.0) + diff.size_diff / n
    by_package = {
        name: size
        for name, size in sorted(by_package.items(), key=lambda kv: -kv[1])
        if abs(size) >= 1
    }
    result = MemoryResult(n, big - small, size_big - size_small, top, by_package)
    progress(
        TAG,
        f"memory: {result.bytes_per_domain:.0f} B per idle domain (traced), "
        f"{result.snapshot_bytes_per_domain:.0f} B (snapshot)",
    )
    return result
