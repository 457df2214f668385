"""The embedded backend: every series in this process, as flat float arrays, within a byte budget.

Per series (a VM's metric group) raw points, then minute and hour roll-ups (min, max, sum,
count, last per field) of what the raw points let go, so queries still reach back a day
(minutes) or a month (hours). How much each series keeps follows from the budget and the
number of series (dragonfly/storage/budget.py): limits shrink as VMs appear, and a series
trims to the new limits on its next trim, in slices, so a write stays an append."""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dragonfly.storage import Query, Result, Sample
from dragonfly.storage.budget import CEILINGS, Budget, Limits, raw_slack
from dragonfly.storage.layout import Layouts
from dragonfly.storage.reads import read
from dragonfly.storage.series import Series, raw_room

log = logging.getLogger("dragonfly.storage")

MB = 1 << 20
# Limits are logged when one moved by more than this since the last line (they move with
# nearly every new series while thousands of VMs appear).
LOG_STEP = 0.1


@dataclass(frozen=True)
class MemoryStats:
    """What the backend holds against its budget (exported on /metrics)."""

    series: int
    fields: float  # per series, on average
    bytes_held: int
    budget_bytes: int
    limits: Limits
    layouts: int
    points: int  # written since start


class MemoryBackend:
    """Everything in this process: fast, bounded by `memory_mb`, and gone when the process goes.
    `raw_points` is the most raw points a series keeps (fewer when the budget is tight)."""

    def __init__(self, raw_points: int = CEILINGS.raw, memory_mb: float = 1024) -> None:
        ceilings = Limits(raw_points, CEILINGS.minutes, CEILINGS.hours)
        self.budget = Budget(int(memory_mb * MB), ceilings)
        self.limits = ceilings
        self.points = 0
        self._groups: dict[str, dict[str, Series]] = {}
        self._layouts = Layouts()
        self._series = 0
        self._fields = 0  # over every series: their average width sizes the limits
        self._raw_cap = ceilings.raw + raw_slack(ceilings.raw)
        self._raw_room = raw_room(ceilings)
        self._logged = ceilings
        self._warned = False
        # Series were added or widened since the limits were last worked out.
        self._stale = False

    async def write(self, samples: Sequence[Sample]) -> None:
        groups, room = self._groups, self._raw_room
        for s in samples:
            by_vm = groups.get(s.group)
            series = by_vm.get(s.vm) if by_vm is not None else None
            if series is None:
                series = self._add_series(s.group, s.vm, s.values)
            values = s.values
            # The agent sends a group's fields in the same order every time: the values go in as they are.
            if tuple(values) == series.layout.names:
                series.add(s.time, values.values(), room)
            else:
                series.add(s.time, self._row(series, values), room)
            if series.count > self._raw_cap:
                series.trim(self.limits)
        self.points += len(samples)
        if self._stale:  # once per batch, however many series it brought
            self._relimit()

    def _add_series(self, group: str, vm: str, values: Mapping[str, float]) -> Series:
        series = self._groups.setdefault(group, {})[vm] = Series(self._layouts.get(values))
        self._series += 1
        self._fields += series.layout.width
        self._stale = True
        return series

    def _row(self, series: Series, values: Mapping[str, float]) -> list[float]:
        """`values` in the series' layout order, NaN for what they lack; a field the series has
        not seen widens its layout first."""
        layout = series.layout
        if not values.keys() <= layout.index.keys():
            layout = self._layouts.widen(layout, values)
            self._fields += layout.width - series.layout.width
            series.widen(layout)
            self._stale = True
        row = [math.nan] * layout.width
        for name, v in values.items():
            row[layout.index[name]] = v
        return row

    def _relimit(self) -> None:
        self._stale = False
        fields = self._fields / self._series
        limits = self.budget.limits(self._series, fields)
        if limits != self.limits:
            self.limits = limits
            self._raw_cap = limits.raw + raw_slack(limits.raw)
            self._raw_room = raw_room(limits)
            if limits.moved(self._logged, LOG_STEP):
                self._logged = limits
                log.info("memory storage limits", extra={
                    "series": self._series, "raw_points": limits.raw, "minute_buckets": limits.minutes,
                    "hour_buckets": limits.hours, "budget_mb": round(self.budget.total_bytes / MB)})
        if not self._warned and self.budget.exceeded(limits, self._series, fields):
            # Only the floors can exceed the budget; said once, the gauges on /metrics go on telling.
            self._warned = True
            log.warning("memory storage: the floors of this many series exceed the budget; raise "
                        "CB_DRAGONFLY_MEMORY_MB or use victoriametrics", extra={
                            "series": self._series, "budget_mb": round(self.budget.total_bytes / MB),
                            "needed_mb": round(self.budget.held_at(limits, self._series, fields) / MB)})

    async def query(self, q: Query) -> list[Result]:
        by_vm = self._groups.get(q.group, {})
        if q.vm_prefix.endswith("."):
            vms = sorted(vm for vm in by_vm if vm.startswith(q.vm_prefix))
        else:
            vms = [q.vm_prefix] if q.vm_prefix in by_vm else []
        return [Result(vm, q.group, read(by_vm[vm], q)) for vm in vms]

    def stats(self) -> MemoryStats:
        """The backend's accounting. Safe from another thread (the /metrics server's): it reads
        snapshots of the index, taken whole under the interpreter lock."""
        indexes = list(self._groups.values())
        every = [series for by_vm in indexes for series in list(by_vm.values())]
        held = sum(series.nbytes() for series in every) + sum(map(sys.getsizeof, indexes))
        return MemoryStats(series=self._series, fields=self._fields / max(1, self._series),
                           bytes_held=held, budget_bytes=self.budget.total_bytes,
                           limits=self.limits, layouts=len(self._layouts), points=self.points)

    async def close(self) -> None:
        self._groups.clear()
