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
# Python objects around one series' numbers: the series and its two tiers, six array headers and
# their smallest allocations, its entry in the index (60,000 series of one point each measured
# ~880 bytes of resident memory apiece, ~47 of them the point).
SERIES_OVERHEAD = 840
# An array allocates about a sixteenth ahead of what it holds.
ALLOCATED = 1 + 1 / 16
# Raw points roll up a slice at a time, at least this many: folding costs per call more than per
# point, so a write pays ~0.9 µs for it with 32 rather than ~1.3 µs with 11.
RAW_SLICE = 32


def raw_slack(limit: int) -> int:
    """How far the raw points may run past `limit` before they are trimmed back in one slice."""
    return max(RAW_SLICE, limit // 16)


def bucket_slack(limit: int) -> int:
    """The same for a roll-up tier (trimmed only when raw points roll up, so rarely)."""
    return max(4, limit // 16)


@dataclass(frozen=True)
class Limits:
    """What each series keeps: raw points, minute buckets, hour buckets."""

    raw: int
    minutes: int
    hours: int

    def bytes_per_series(self, fields: float) -> float:
        """What a series of `fields` fields holds at these limits, at its peak (limit plus slice)."""
        buckets = self.minutes + bucket_slack(self.minutes) + self.hours + bucket_slack(self.hours)
        return SERIES_OVERHEAD + ALLOCATED * ((self.raw + raw_slack(self.raw)) * raw_row_bytes(fields)
                                              + buckets * bucket_bytes(fields))

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

    def at(self, fraction: float) -> Limits:
        """Every tier at `fraction` of its ceiling, but not below its floor."""
        return Limits(*(max(f, min(c, int(c * fraction)))
                        for f, c in zip(self.floors.as_tuple(), self.ceilings.as_tuple(), strict=True)))

    def limits(self, series: int, fields: float) -> Limits:
        """Per-series limits for `series` series of `fields` fields on average: the largest
        common fraction of the ceilings whose cost fits the budget (bisected; the cost only
        grows with the fraction)."""
        if series <= 0 or self.held_at(self.ceilings, series, fields) <= self.total_bytes:
            return self.ceilings
        if self.exceeded(self.floors, series, fields):
            return self.floors
        fits, over = 0.0, 1.0
        for _ in range(24):  # to 1/16M of a ceiling: finer than one point
            middle = (fits + over) / 2
            if self.exceeded(self.at(middle), series, fields):
                over = middle
            else:
                fits = middle
        return self.at(fits)

    def held_at(self, limits: Limits, series: int, fields: float) -> float:
        """Bytes `series` series of `fields` fields hold at `limits`, at their peak."""
        return series * limits.bytes_per_series(fields)

    def exceeded(self, limits: Limits, series: int, fields: float) -> bool:
        """Whether `series` series at `limits` would hold more than the budget."""
        return self.held_at(limits, series, fields) > self.total_bytes
