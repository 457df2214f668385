"""How responsive a service's event loop is, on its Prometheus /metrics.

Every request a service answers waits for the loop: a callback that runs 200 ms, or a full
collection of the cyclic garbage collector, delays every reply by that much. Two histograms say
which: `cb_event_loop_lag_seconds` (how late a timer of PROBE_S fires) and `cb_gc_pause_seconds`
by generation (measured with `gc.callbacks`).
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from prometheus_client import Histogram

PROBE_S = 0.05
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

LOOP_LAG = Histogram("cb_event_loop_lag_seconds", "How late a timer of the event loop fired", buckets=BUCKETS)
GC_PAUSE = Histogram("cb_gc_pause_seconds", "Collections of the cyclic garbage collector", ["generation"],
                     buckets=BUCKETS)

_gc_started = 0.0


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
    else:
        GC_PAUSE.labels(str(info.get("generation", ""))).observe(time.perf_counter() - _gc_started)


def watch_gc() -> None:
    """Time every collection from now on (once per process)."""
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


async def probe_forever() -> None:
    """Observe the loop's lag every PROBE_S until cancelled."""
    while True:
        asked = time.perf_counter()
        await asyncio.sleep(PROBE_S)
        LOOP_LAG.observe(max(0.0, time.perf_counter() - asked - PROBE_S))
