"""The memory backend's byte budget: how many raw points, minute buckets and hour buckets each
series may keep, given how many series there are and how many fields they have on average.

Every series gets the same share, and within it the three tiers share in proportion to what
each costs at its ceiling (about a quarter raw, a half minutes, a quarter hours for the agent's
groups): under pressure every tier keeps the same fraction of its full horizon, so a chart of
the last hour, day or month thins out evenly instead of one of them vanishing first. A tier
never goes below its floor; when floors bind, the others give up what the floors take, and
when all do, the floors win over the budget (the backend says so)."""

from __future__ import annotations

from dataclasses import dataclass

from dragonfly.storage import cells

FLOAT = 8
# Python objects around one series' numbers: the series and its two tiers, six array headers,
# its entry in the index (measured with bench/dragonfly_storage.py).
SERIES_OVERHEAD = 720
# A tier runs past its limit by a slice before it is trimmed (one trim per slice keeps appends
# cheap); an array also grows by about a sixteenth ahead of what it holds.
SLICE = 16
GROWTH = 1 + 1 / SLICE


def slack(limit: int) -> int:
    """How far a tier may run past `limit` before it is trimmed back in one slice."""
    return max(32, limit // SLICE)


@dataclass(frozen=True)
class Limits:
    """What each series keeps: raw points, minute buckets, hour buckets."""

    raw: int
    minutes: int
    hours: int

    def bytes_per_series(self, fields: float) -> float:
        """What a series of `fields` fields holds at these limits, at its peak (limit plus slice)."""
        return SERIES_OVERHEAD + GROWTH * (self.raw * raw_row_bytes(fields)
                                           + (self.minutes + self.hours) * bucket_bytes(fields))

    def moved(self, other: Limits, ratio: float) -> bool:
        """Whether any limit differs from `other`'s by more than `ratio` of it."""
        return any(abs(a - b) > ratio * b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True))

    def as_tuple(self) -> tuple[int, int, int]:
        return self.raw, self.minutes, self.hours


def raw_row_bytes(fields: float) -> float:
    """A raw point: its time and one float per field."""
    return FLOAT * (1 + fields)


def bucket_bytes(fields: float) -> float:
    """A roll-up bucket: its start and a cell per field."""
    return FLOAT * (1 + cells.STATS * fields)


# A day of minutes and a month of hours at most; the raw ceiling is a setting (raw_points).
CEILINGS = Limits(raw=3600, minutes=1440, hours=720)
# At least three minutes of raw points at a 1 s interval (15 at the default 5 s), an hour of
# minutes and a day of hours: less would leave the usual charts empty.
FLOORS = Limits(raw=180, minutes=60, hours=24)


@dataclass(frozen=True)
class Budget:
    """A total byte budget, and the ceilings and floors of each tier."""

    total_bytes: int
    ceilings: Limits = CEILINGS
    floors: Limits = FLOORS

    def __post_init__(self) -> None:
        # A floor above its ceiling (a small raw_points) is the ceiling.
        lowered = Limits(*(min(f, c) for f, c in zip(self.floors.as_tuple(), self.ceilings.as_tuple(), strict=True)))
        object.__setattr__(self, "floors", lowered)

    def limits(self, series: int, fields: float) -> Limits:
        """Per-series limits for `series` series of `fields` fields on average."""
        if series <= 0:
            return self.ceilings
        units = (raw_row_bytes(fields) * GROWTH, bucket_bytes(fields) * GROWTH, bucket_bytes(fields) * GROWTH)
        ceilings, floors = self.ceilings.as_tuple(), self.floors.as_tuple()
        share = self.total_bytes / series - SERIES_OVERHEAD
        pinned: set[int] = set()
        fraction = 0.0
        for _ in range(len(units)):  # each round pins at least one more tier to its floor, or ends
            free = [i for i in range(len(units)) if i not in pinned]
            left = share - sum(floors[i] * units[i] for i in pinned)
            cost = sum(ceilings[i] * units[i] for i in free)
            fraction = max(0.0, min(1.0, left / cost)) if cost else 0.0
            below = {i for i in free if ceilings[i] * fraction < floors[i]}
            if not below:
                break
            pinned |= below
        counts = [floors[i] if i in pinned else max(floors[i], min(ceilings[i], int(ceilings[i] * fraction)))
                  for i in range(len(units))]
        return Limits(*counts)

    def held_at(self, limits: Limits, series: int, fields: float) -> float:
        """Bytes `series` series of `fields` fields hold at `limits`, at their peak."""
        return series * limits.bytes_per_series(fields)

    def exceeded(self, limits: Limits, series: int, fields: float) -> bool:
        """Whether the floors hold more than the budget (then the floors win)."""
        return self.held_at(limits, series, fields) > self.total_bytes
