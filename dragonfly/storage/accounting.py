"""The memory backend's accounting on the service's Prometheus /metrics (CB_DRAGONFLY_METRICS_PORT):
what it holds against its budget, and what the budget lets each series keep now.

Read at each scrape rather than kept up to date on every write, so the write path pays nothing."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, CollectorRegistry

from dragonfly.storage.memory import MemoryBackend


class MemoryAccounting:
    """A Prometheus collector that reads a memory backend's stats when scraped."""

    def __init__(self, backend: MemoryBackend) -> None:
        self.backend = backend

    def collect(self) -> Iterator[Metric]:
        stats = self.backend.stats()
        yield GaugeMetricFamily("cb_dragonfly_memory_series", "Series (VM and metric group) the memory backend holds",
                                value=stats.series)
        yield GaugeMetricFamily("cb_dragonfly_memory_held_bytes",
                                "Bytes the memory backend holds: its series' objects and allocated arrays",
                                value=stats.bytes_held)
        yield GaugeMetricFamily("cb_dragonfly_memory_budget_bytes", "The memory backend's budget (CB_DRAGONFLY_MEMORY_MB)",
                                value=stats.budget_bytes)
        limits = GaugeMetricFamily("cb_dragonfly_memory_series_limit",
                                   "What each series may keep now: raw points, minute buckets, hour buckets",
                                   labels=["tier"])
        for tier, value in (("raw", stats.limits.raw), ("minute", stats.limits.minutes), ("hour", stats.limits.hours)):
            limits.add_metric([tier], value)
        yield limits
        yield CounterMetricFamily("cb_dragonfly_memory_points", "Points written to the memory backend",
                                  value=stats.points)


def register(backend: MemoryBackend, registry: CollectorRegistry = REGISTRY) -> MemoryAccounting:
    """Show `backend`'s accounting in `registry` (by default the one /metrics serves)."""
    accounting = MemoryAccounting(backend)
    registry.register(accounting)
    return accounting


def unregister(accounting: MemoryAccounting, registry: CollectorRegistry = REGISTRY) -> None:
    registry.unregister(accounting)
