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
from dragonfly.storage.budget import Limits, slack
from dragonfly.storage.layout import Layout
from dragonfly.storage.rollup import Rollup

MINUTE = 60.0
HOUR = 3600.0


class Series:
    """Times and values of raw points as flat float arrays (`layout.width` values per point,
    NaN where a point lacks a field), sorted by time; older points rolled up by the minute and,
    older still, by the hour."""

    __slots__ = ("hours", "layout", "minutes", "since", "times", "values")

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.times: array[float] = array("d")
        self.values: array[float] = array("d")
        # Every raw point at or after this time is here; older ones went to the roll-ups.
        self.since = -math.inf
        self.minutes = Rollup(MINUTE)
        self.hours = Rollup(HOUR)

    def add(self, t: float, row: Iterable[float]) -> None:
        """One point, its values in layout order. Appending is the common case; a backlog older
        than the newest point is inserted in place, and one older than the raw points is
        rolled up at once."""
        times = self.times
        if not times or t >= times[-1]:
            times.append(t)
            self.values.extend(row)
        elif t >= self.since:
            i = bisect.bisect_right(times, t)
            times.insert(i, t)
            width = self.layout.width
            self.values[i * width:i * width] = array("d", row)
        else:
            self._roll_up_late(t, array("d", row))

    def covers(self, start: float) -> bool:
        """Whether the raw points hold everything from `start` on (and reach back to it)."""
        return self.since == -math.inf or (bool(self.times) and self.times[0] <= start)

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
        width = self.layout.width
        cut = len(self.times) - limits.raw
        if cut > 0:
            self.minutes.fold_rows(self.times, self.values, 0, cut, width)
            self.since = math.nextafter(self.times[cut - 1], math.inf)
            if cut > 2 * slack(limits.raw):
                # The limit shrank: fresh arrays of the kept size give back what it frees.
                self.times, self.values = self.times[cut:], self.values[cut * width:]
            else:  # in place: the arrays keep their room for the next slice
                del self.times[:cut], self.values[:cut * width]
        if len(self.minutes) > limits.minutes + slack(limits.minutes):
            starts, old = self.minutes.evict(limits.minutes, width)
            size = width * cells.STATS
            for k, start in enumerate(starts):
                self.hours.add_cell(start, old, k * size, width)
        if len(self.hours) > limits.hours + slack(limits.hours):
            self.hours.evict(limits.hours, width)

    def widen(self, layout: Layout) -> None:
        """Take a layout with more fields (a sample brought a new one): stored points and
        buckets gain the new columns, empty."""
        old, new = self.layout.width, layout.width
        self.values = cells.widen_rows(self.values, old, new, len(self.times))
        self.minutes.widen(old, new)
        self.hours.widen(old, new)
        self.layout = layout

    def nbytes(self) -> int:
        """Bytes it holds: its objects and what its arrays have allocated (some ahead of use)."""
        parts = (self, self.minutes, self.hours, self.times, self.values, self.minutes.starts, self.minutes.cells,
                 self.hours.starts, self.hours.cells)
        return sum(map(sys.getsizeof, parts))
