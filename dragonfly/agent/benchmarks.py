"""Benchmarks on request, run by the agent: each in turn, cut off if it overruns its share.

Where the values come from is a `Benchmarker`: the real host (`hostbench.HostBench`) or a
CloudTwin guest (`twinbench.TwinBench`). What may be asked and what is answered is the
protocol's (`dragonfly.protocol.benchmarks`), re-exported here for the agent's modules.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Protocol

from dragonfly.protocol.benchmarks import (  # noqa: F401 (re-exported for the agent's modules)
    DEFAULT_SLICE_S,
    FIELDS,
    MAX_BUDGET_S,
    MAX_TARGETS,
    MIN_BUDGET_S,
    NAMES,
    RTT,
    BenchReport,
    BenchRequest,
    FieldError,
    RttResult,
    Target,
    build_request,
    parse_target,
)

# Beyond its share, how long a benchmark may take to start and stop (worker processes, a last
# disk flush) before it is cut off and reported as an error.
GRACE_S = 5.0


class Benchmarker(Protocol):
    """Where benchmark values come from."""

    kind: str

    @property
    def cpu_count(self) -> int: ...

    async def measure(self, name: str, seconds: float) -> float:
        """The value of one of `FIELDS`' benchmarks, taking about `seconds`."""
        ...

    async def rtt(self, targets: Sequence[Target], seconds: float) -> list[RttResult]:
        """Connect times to every target, within about `seconds` in all."""
        ...

    def cleanup(self) -> None:
        """Remove what the request's benchmarks left (scratch files)."""
        ...


async def run(request: BenchRequest, bench: Benchmarker) -> BenchReport:
    """Run the request's benchmarks one after another, each within its share of the budget."""
    report = BenchReport(kind=bench.kind, cpu_count=bench.cpu_count, time=time.time())
    started = time.monotonic()
    share = request.slice_s
    try:
        for name in request.benchmarks:
            try:
                async with asyncio.timeout(share + GRACE_S):
                    if name == RTT:
                        report.rtt = await bench.rtt(request.rtt_targets, share)
                    else:
                        setattr(report, FIELDS[name], await bench.measure(name, share))
            except TimeoutError:
                report.errors[name] = f"did not finish within {share + GRACE_S:g}s"
            except (OSError, BenchmarkError) as err:
                report.errors[name] = str(err) or type(err).__name__
    finally:
        bench.cleanup()
    report.duration_s = round(time.monotonic() - started, 3)
    return report


class BenchmarkError(Exception):
    """A benchmark that cannot give a value here (no room on the disk, no true performance)."""
