"""The embedded backend: per series, a bounded ring of raw points and rings of minute and
hour roll-ups (min, max, sum, count, last per field), so memory stays bounded while
queries still reach back a day (minutes) or a month (hours)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from dragonfly.storage import Query, Result, Sample

# A cell of a roll-up: [min, max, sum, count, last, time of last] per field.
Cell = dict[str, list[float]]


def _merge(cell: Cell, t: float, values: dict[str, float]) -> None:
    for name, v in values.items():
        agg = cell.get(name)
        if agg is None:
            cell[name] = [v, v, v, 1.0, v, t]
        else:
            agg[0], agg[1] = min(agg[0], v), max(agg[1], v)
            agg[2] += v
            agg[3] += 1.0
            if t >= agg[5]:  # points may arrive out of order (a backlog): last is the newest in time
                agg[4], agg[5] = v, t


def _combine(into: Cell, cell: Cell) -> None:
    for name, agg in cell.items():
        mine = into.get(name)
        if mine is None:
            into[name] = list(agg)
            continue
        mine[0], mine[1] = min(mine[0], agg[0]), max(mine[1], agg[1])
        mine[2] += agg[2]
        mine[3] += agg[3]
        if agg[5] >= mine[5]:
            mine[4], mine[5] = agg[4], agg[5]


def _finish(cell: Cell, aggregate: str) -> dict[str, float]:
    pick = {"min": lambda a: a[0], "max": lambda a: a[1], "avg": lambda a: a[2] / a[3], "last": lambda a: a[4]}
    fn = pick[aggregate]
    return {name: fn(agg) for name, agg in cell.items()}


@dataclass
class Rollup:
    """Fixed-width buckets, newest last, at most `limit` of them."""

    width_s: float
    limit: int
    starts: list[float] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)

    def add(self, t: float, values: dict[str, float]) -> None:
        start = t - t % self.width_s
        i = bisect.bisect_left(self.starts, start)
        if i == len(self.starts) or self.starts[i] != start:
            if i == 0 and len(self.starts) >= self.limit:
                return  # older than everything kept
            self.starts.insert(i, start)
            self.cells.insert(i, {})
        _merge(self.cells[i], t, values)
        if len(self.starts) > self.limit:
            del self.starts[0], self.cells[0]


@dataclass
class SeriesData:
    raw_limit: int
    times: list[float] = field(default_factory=list)
    values: list[dict[str, float]] = field(default_factory=list)
    minutes: Rollup = field(default_factory=lambda: Rollup(60.0, 1440))
    hours: Rollup = field(default_factory=lambda: Rollup(3600.0, 720))
    # Whether older raw points were ever let go (then only the roll-ups reach further back).
    trimmed: bool = False

    def add(self, t: float, values: dict[str, float]) -> None:
        i = bisect.bisect_right(self.times, t)
        self.times.insert(i, t)
        self.values.insert(i, values)
        # Trim in slices, not one point at a time, to keep appends cheap.
        if len(self.times) > self.raw_limit + max(16, self.raw_limit // 10):
            cut = len(self.times) - self.raw_limit
            del self.times[:cut], self.values[:cut]
            self.trimmed = True
        self.minutes.add(t, values)
        self.hours.add(t, values)

    def read(self, q: Query) -> list[tuple[float, dict[str, float]]]:
        lo, hi = bisect.bisect_left(self.times, q.start), bisect.bisect_right(self.times, q.end)
        raw_covers = not self.trimmed or self.times[0] <= q.start
        if q.step_s <= 0:
            return list(zip(self.times[lo:hi], self.values[lo:hi], strict=True))
        if raw_covers or q.step_s < 60:
            buckets: dict[float, Cell] = {}
            for t, v in zip(self.times[lo:hi], self.values[lo:hi], strict=True):
                _merge(buckets.setdefault(t - t % q.step_s, {}), t, v)
            return [(start, _finish(cell, q.aggregate)) for start, cell in sorted(buckets.items())]
        # Older than the raw ring: combine the roll-up that fits the step.
        rollup = self.minutes if q.step_s < 3600 else self.hours
        combined: dict[float, Cell] = {}
        for start, cell in zip(rollup.starts, rollup.cells, strict=True):
            if q.start - rollup.width_s < start <= q.end:
                _combine(combined.setdefault(start - start % q.step_s, {}), cell)
        return [(start, _finish(cell, q.aggregate)) for start, cell in sorted(combined.items())]


class MemoryBackend:
    """Everything in this process: fast, bounded, and gone when the process goes."""

    def __init__(self, raw_points: int = 3600) -> None:
        self.raw_points = raw_points
        self._series: dict[tuple[str, str], SeriesData] = {}
        self.points = 0

    async def write(self, samples: Sequence[Sample]) -> None:
        for s in samples:
            key = (s.vm, s.group)
            data = self._series.get(key)
            if data is None:
                data = self._series[key] = SeriesData(self.raw_points)
            data.add(s.time, s.values)
        self.points += len(samples)

    async def query(self, q: Query) -> list[Result]:
        out = []
        for (vm, group), data in sorted(self._series.items()):
            if group == q.group and (vm == q.vm_prefix or (q.vm_prefix.endswith(".") and vm.startswith(q.vm_prefix))):
                out.append(Result(vm, group, data.read(q)))
        return out

    async def close(self) -> None:
        self._series.clear()
