"""A roll-up tier: fixed-width buckets (a minute, an hour), oldest first, in two flat arrays."""

from __future__ import annotations

import bisect
import math
from array import array
from collections.abc import Iterator

from dragonfly.storage import cells


def runs(times: array[float], lo: int, hi: int, width: float) -> Iterator[tuple[float, int, int]]:
    """(bucket start, first row, end row) of each bucket of `width` that sorted `times[lo:hi]` reach."""
    while lo < hi:
        t = times[lo]
        start = t - t % width
        end = bisect.bisect_left(times, start + width, lo + 1, hi)
        yield start, lo, end
        lo = end


class Rollup:
    """Buckets of `width` seconds, oldest first: their starts, and their cells (`cells.STATS`
    floats per field per bucket, in the series' layout order)."""

    __slots__ = ("cells", "since", "starts", "width")

    def __init__(self, width: float) -> None:
        self.width = width
        self.starts: array[float] = array("d")
        self.cells: array[float] = array("d")
        # Buckets before this were let go (to the next tier, or for good): a late point older
        # than it belongs there.
        self.since = -math.inf

    def __len__(self) -> int:
        return len(self.starts)

    def slot(self, start: float, fields: int) -> int:
        """Offset in `cells` of the bucket that starts at `start`, added (empty) if new."""
        starts, size = self.starts, fields * cells.STATS
        n = len(starts)
        if n and starts[-1] == start:
            return (n - 1) * size
        i = n if not n or starts[-1] < start else bisect.bisect_left(starts, start)
        if i < n and starts[i] == start:
            return i * size
        starts.insert(i, start)
        if i == n:
            self.cells.extend(cells.empty(fields))
        else:  # a backlog older than the newest bucket: rare
            self.cells[i * size:i * size] = cells.empty(fields)
        return i * size

    def fold_rows(self, times: array[float], values: array[float], lo: int, hi: int, fields: int) -> None:
        """Merge raw rows `lo`..`hi` (sorted by time) into their buckets."""
        for start, first, end in runs(times, lo, hi, self.width):
            cells.fold_rows(self.cells, self.slot(start, fields), times, values, first, end, fields)

    def fold_point(self, t: float, row: array[float], fields: int) -> None:
        cells.fold_point(self.cells, self.slot(t - t % self.width, fields), t, row)

    def add_cell(self, start: float, cell: array[float], src: int, fields: int) -> None:
        """Merge a cell of a finer tier, which starts at `start`, into the bucket that holds it."""
        cells.combine(self.cells, self.slot(start - start % self.width, fields), cell, src, fields)

    def evict(self, keep: int, fields: int) -> tuple[array[float], array[float]]:
        """Keep the newest `keep` buckets; the starts and cells of the others are returned."""
        cut = max(0, len(self.starts) - keep)
        size = fields * cells.STATS
        old = self.starts[:cut], self.cells[:cut * size]
        # Slices are fresh arrays of the kept size: what a shrunken limit frees is given back.
        self.starts, self.cells = self.starts[cut:], self.cells[cut * size:]
        if cut:
            self.since = self.starts[0] if self.starts else old[0][-1] + self.width
        return old

    def widen(self, old: int, new: int) -> None:
        self.cells = cells.widen(self.cells, old, new, len(self.starts))

    def span(self, first: float, end: float) -> tuple[int, int]:
        """Indexes of the buckets starting in [first, end)."""
        return bisect.bisect_left(self.starts, first), bisect.bisect_left(self.starts, end)
