"""Roll-up cells in flat float arrays: per field six floats — min, max, sum, count, last and the
time of last — so a bucket of n fields is 6n floats and holds no Python object per value.

Raw rows are flat too (n floats per point, in layout order). A field a point lacks is NaN,
which every function here skips: a column's sum is NaN exactly when it has a gap (or holds
both infinities), so the common case takes C-speed `min`, `max` and `sum` over a strided slice."""

from __future__ import annotations

import math
from array import array

STATS = 6
MIN, MAX, SUM, COUNT, LAST, TLAST = range(STATS)
# A field no point has reached yet: any value replaces min and max; count 0 means absent.
_EMPTY = (math.inf, -math.inf, 0.0, 0.0, math.nan, -math.inf)


def empty(fields: int, buckets: int = 1) -> array[float]:
    """Cells for `buckets` buckets of `fields` fields, none reached yet."""
    return array("d", _EMPTY * (fields * buckets))


def _merge(cell: array[float], at: int, low: float, high: float, total: float, count: float, last: float,
           last_t: float) -> None:
    if low < cell[at]:
        cell[at] = low
    if high > cell[at + MAX]:
        cell[at + MAX] = high
    cell[at + SUM] += total
    cell[at + COUNT] += count
    # Points may arrive out of order (a backlog): last is the newest in time, the later arrival on a tie.
    if last_t >= cell[at + TLAST]:
        cell[at + LAST] = last
        cell[at + TLAST] = last_t


def fold_rows(cell: array[float], at: int, times: array[float], values: array[float], lo: int, hi: int,
              fields: int) -> None:
    """Merge raw rows `lo`..`hi` (sorted by time) into the cell at offset `at`."""
    if hi <= lo:
        return
    for j in range(fields):
        column = values[lo * fields + j:hi * fields:fields]
        total = sum(column)
        if total == total:
            _merge(cell, at + j * STATS, min(column), max(column), total, float(hi - lo), column[-1], times[hi - 1])
            continue
        kept = [(t, v) for t, v in zip(times[lo:hi], column, strict=True) if v == v]
        if kept:
            present = [v for _, v in kept]
            _merge(cell, at + j * STATS, min(present), max(present), sum(present), float(len(present)),
                   kept[-1][1], kept[-1][0])


def fold_point(cell: array[float], at: int, t: float, row: array[float]) -> None:
    """Merge one raw row at time `t` into the cell at offset `at`."""
    for j, v in enumerate(row):
        if v == v:
            _merge(cell, at + j * STATS, v, v, v, 1.0, v, t)


def combine(into: array[float], at: int, cell: array[float], src: int, fields: int) -> None:
    """Merge the cell at `src` of `cell` into the cell at `at` of `into`."""
    for j in range(0, fields * STATS, STATS):
        s = src + j
        if cell[s + COUNT]:
            _merge(into, at + j, cell[s], cell[s + MAX], cell[s + SUM], cell[s + COUNT], cell[s + LAST],
                   cell[s + TLAST])


def finish(cell: array[float], at: int, names: tuple[str, ...], aggregate: str) -> dict[str, float]:
    """The fields a cell has reached, each reduced by `aggregate` (min, max, avg, last)."""
    out: dict[str, float] = {}
    for j, name in enumerate(names):
        s = at + j * STATS
        count = cell[s + COUNT]
        if not count:
            continue
        if aggregate == "min":
            out[name] = cell[s]
        elif aggregate == "max":
            out[name] = cell[s + MAX]
        elif aggregate == "avg":
            out[name] = cell[s + SUM] / count
        else:
            out[name] = cell[s + LAST]
    return out


def widen(cells: array[float], old: int, new: int, buckets: int) -> array[float]:
    """`buckets` cells of `old` fields as cells of `new` fields (the added ones not reached)."""
    if old == new:
        return cells
    old_w, new_w = old * STATS, new * STATS
    out = empty(new, buckets)
    for k in range(old_w):
        out[k::new_w] = cells[k::old_w]
    return out


def widen_rows(values: array[float], old: int, new: int, rows: int) -> array[float]:
    """Raw rows of `old` fields as rows of `new` fields (the added ones NaN)."""
    if old == new:
        return values
    out = array("d", [math.nan]) * (rows * new)
    for j in range(old):
        out[j::new] = values[j::old]
    return out
