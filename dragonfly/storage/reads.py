"""Answering a query from one series of the memory backend.

Raw points come back as stored. Buckets `[start, start + step)` come from the raw points when
those reach back to the query's start (or the step is under a minute); otherwise from the roll-up
that fits the step — minutes under an hour, else hours — whole buckets from `start`'s on, with
the finer tiers folded in, since each point sits in exactly one tier."""

from __future__ import annotations

import bisect
from array import array

from dragonfly.storage import Query, cells
from dragonfly.storage.rollup import runs
from dragonfly.storage.series import HOUR, MINUTE, Series

Points = list[tuple[float, dict[str, float]]]


def read(series: Series, q: Query) -> Points:
    """The points of `series` that `q` asks for."""
    if q.step_s <= 0:
        return _raw_points(series, q)
    if series.covers(q.start) or q.step_s < MINUTE:
        return _raw_buckets(series, q)
    return _rolled_up(series, q, MINUTE if q.step_s < HOUR else HOUR)


def _raw_points(series: Series, q: Query) -> Points:
    times, values, names = series.times, series.values, series.layout.names
    width = len(names)
    out: Points = []
    n = series.count
    for i in range(bisect.bisect_left(times, q.start, 0, n), bisect.bisect_right(times, q.end, 0, n)):
        # A field the point lacks is NaN in storage, and absent from the answer.
        point = {name: v for name, v in zip(names, values[i * width:(i + 1) * width], strict=True) if v == v}
        if point:
            out.append((times[i], point))
    return out


def _raw_buckets(series: Series, q: Query) -> Points:
    times, values, names = series.times, series.values, series.layout.names
    width = len(names)
    n = series.count
    lo, hi = bisect.bisect_left(times, q.start, 0, n), bisect.bisect_right(times, q.end, 0, n)
    out: Points = []
    for start, first, end in runs(times, lo, hi, q.step_s):
        cell = cells.empty(width)
        cells.fold_rows(cell, 0, times, values, first, end, width)
        point = cells.finish(cell, 0, names, q.aggregate)
        if point:
            out.append((start, point))
    return out


def _rolled_up(series: Series, q: Query, width_s: float) -> Points:
    """Buckets of `width_s` from the bucket holding `q.start` to the one holding `q.end`, from
    that tier and every finer one, combined into buckets of the query's step."""
    names, step = series.layout.names, q.step_s
    width = len(names)
    first, end = q.start - q.start % width_s, q.end - q.end % width_s + width_s
    combined: dict[float, array[float]] = {}

    def into(start: float) -> array[float]:
        start -= start % width_s  # the tier's bucket (the hour of a minute bucket)
        key = start - start % step
        cell = combined.get(key)
        if cell is None:
            cell = combined[key] = cells.empty(width)
        return cell

    size = width * cells.STATS
    for tier in (series.hours, series.minutes) if width_s == HOUR else (series.minutes,):
        lo, hi = tier.span(first, end)
        for k in range(lo, hi):
            cells.combine(into(tier.starts[k]), 0, tier.cells, k * size, width)
    times, n = series.times, series.count
    lo, hi = bisect.bisect_left(times, first, 0, n), bisect.bisect_left(times, end, 0, n)
    for start, a, b in runs(times, lo, hi, width_s):
        cells.fold_rows(into(start), 0, times, series.values, a, b, width)
    out: Points = []
    for key, cell in sorted(combined.items()):
        point = cells.finish(cell, 0, names, q.aggregate)
        if point:
            out.append((key, point))
    return out
