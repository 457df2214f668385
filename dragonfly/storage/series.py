"""One series (a VM's metric group) in the memory backend: raw points, newest last, then the
minute and hour roll-ups of what the raw points let go. Each point is counted in exactly one
tier; a query combines the tiers it needs (dragonfly/storage/reads.py)."""

from __future__ import annotations

import bisect
import math
import sys
from array import array
from collections.abc import Iterable

from dragonfly.storage import cells
from dragonfly.storage.budget import Limits, bucket_slack, raw_slack
from dragonfly.storage.layout import Layout
from dragonfly.storage.rollup import Rollup

MINUTE = 60.0
HOUR = 3600.0


def raw_room(limits: Limits) -> int:
    """Rows the raw arrays need: the limit, the slice past it, and the point that starts a trim."""
    return limits.raw + raw_slack(limits.raw) + 1


def _resized(a: array[float], used: int, size: int) -> array[float]:
    """A new array of exactly `size` floats beginning with the first `used` of `a` (arrays made by
    repetition are allocated to size, where growing ones over-allocate)."""
    out = _ZERO * size
    out[:used] = a[:used]
    return out


_ZERO = array("d", [0.0])


class Series:
    """Times and values of raw points as flat float arrays (`layout.width` values per point,
    NaN where a point lacks a field), sorted by time; older points rolled up by the minute and,
    older still, by the hour.

    The raw arrays have a fixed room, the limit plus a slice, and `count` says how much of it is
    used: a write fills the next row and a trim moves the kept rows to the front, so a series in
    its steady state allocates nothing (a growing or shrinking array would be reallocated at
    every slice, and 60,000 of them interleaved leave the heap full of holes)."""

    __slots__ = ("count", "hours", "layout", "minutes", "since", "times", "values")

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.times: array[float] = array("d")
        self.values: array[float] = array("d")
        self.count = 0
        # Every raw point at or after this time is here; older ones went to the roll-ups.
        self.since = -math.inf
        self.minutes = Rollup(MINUTE)
        self.hours = Rollup(HOUR)

    def add(self, t: float, row: Iterable[float], room: int) -> None:
        """One point, its values in layout order. Appending is the common case; a backlog older
        than the newest point is inserted in place, and one older than the raw points is
        rolled up at once. `room` is the most rows the raw arrays need (limit, slice and one)."""
        n, times, width = self.count, self.times, self.layout.width
        if n and t < times[n - 1]:
            if t < self.since:
                self._roll_up_late(t, array("d", row))
                return
            i = bisect.bisect_right(times, t, 0, n)
        else:
            i = n
        if n == len(times):
            # A new series doubles its room up to what it will need (fewer reallocations).
            self._reserve(min(max(16, 2 * n), max(room, n + 1)))
            times = self.times
        values = self.values
        if i < n:  # a backlog: the newer rows move up one
            times[i + 1:n + 1] = times[i:n]
            values[(i + 1) * width:(n + 1) * width] = values[i * width:n * width]
        times[i] = t
        values[i * width:(i + 1) * width] = array("d", row)
        self.count = n + 1

    def _reserve(self, rows: int) -> None:
        width = self.layout.width
        self.times = _resized(self.times, self.count, rows)
        self.values = _resized(self.values, self.count * width, rows * width)

    def covers(self, start: float) -> bool:
        """Whether the raw points hold everything from `start` on (and reach back to it)."""
        return self.since == -math.inf or (self.count > 0 and self.times[0] <= start)

    def _roll_up_late(self, t: float, row: array[float]) -> None:
        width = self.layout.width
        if t >= self.minutes.since:
            self.minutes.fold_point(t, row, width)
        elif t >= self.hours.since:
            self.hours.fold_point(t, row, width)
        # else: older than everything this series keeps

    def trim(self, limits: Limits) -> None:
        """Bring every tier back to its limit: the oldest raw points roll up into minutes, the
        oldest minutes into hours, the oldest hours go. Called when the raw points ran a slice
        past their limit, so a shrunken limit is applied on the series' next trim."""
        width, n = self.layout.width, self.count
        cut = n - limits.raw
        if cut > 0:
            times, values = self.times, self.values
            self.minutes.fold_rows(times, values, 0, cut, width)
            self.since = math.nextafter(times[cut - 1], math.inf)
            times[:n - cut] = times[cut:n]
            values[:(n - cut) * width] = values[cut * width:n * width]
            self.count = n = limits.raw
        room = raw_room(limits)
        if len(self.times) != room and n <= room:  # the limits changed
            self._reserve(room)
        if len(self.minutes) > limits.minutes + bucket_slack(limits.minutes):
            starts, old = self.minutes.evict(limits.minutes, width)
            size = width * cells.STATS
            for k, start in enumerate(starts):
                self.hours.add_cell(start, old, k * size, width)
        if len(self.hours) > limits.hours + bucket_slack(limits.hours):
            self.hours.evict(limits.hours, width)

    def widen(self, layout: Layout) -> None:
        """Take a layout with more fields (a sample brought a new one): stored points and
        buckets gain the new columns, empty."""
        old, new = self.layout.width, layout.width
        self.values = cells.widen_rows(self.values, old, new, len(self.times))  # the whole room
        self.minutes.widen(old, new)
        self.hours.widen(old, new)
        self.layout = layout

    def nbytes(self) -> int:
        """Bytes it holds: its objects and what its arrays have allocated (some ahead of use)."""
        parts = (self, self.minutes, self.hours, self.times, self.values, self.minutes.starts, self.minutes.cells,
                 self.hours.starts, self.hours.cells)
        return sum(map(sys.getsizeof, parts))
