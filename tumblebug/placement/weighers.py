"""Weighers: each gives every candidate that passed the filters a score in [0, 1], higher is better.

Each weigher turns one figure into a score by min-max normalisation over the candidates being
weighed (as Nova does): the best candidate scores 1, the worst 0, all equal scores 1. A candidate
whose figure cannot be known (no price, no coordinates) scores 0. Every weigher also hands back the
figures it used and which of them are estimates, so a result can say why it ranks where it does.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from tumblebug.placement.candidates import Bools, CandidateTable, Floats, Ints
from tumblebug.placement.errors import PlacementError
from tumblebug.placement.latency import RttMatrix, haversine_km, rtt_estimate_ms
from tumblebug.placement.plugins import Registry
from tumblebug.placement.requirements import WeighOptions


@dataclass(frozen=True)
class Context:
    """What weighers read besides the rows: the catalog, the request's options, measured RTTs."""

    table: CandidateTable
    options: WeighOptions
    rtt: RttMatrix


@dataclass(frozen=True)
class Weighing:
    """Scores of the weighed rows, the figures (name → per-row values) and estimate flags."""

    score: Floats
    figures: dict[str, Floats]
    estimated: Bools
    # Figures held per table row rather than per weighed row, and the weighed rows to reach them.
    by_row: dict[str, np.ndarray] | None = None
    rows: Ints | None = None

    def figures_at(self, pos: int) -> dict[str, float]:
        """Every figure of the weighed row at position `pos`."""
        out = {k: float(v[pos]) for k, v in self.figures.items()}
        if self.by_row and self.rows is not None:
            out.update({k: float(v[self.rows[pos]]) for k, v in self.by_row.items()})
        return out


class Weigher(ABC):
    """Scores candidates on one concept."""

    name: ClassVar[str]

    def __init_subclass__(cls, name: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name:
            cls.name = name
            WEIGHERS.add(name, cls)

    @abstractmethod
    def weigh(self, ctx: Context, rows: Ints) -> Weighing:
        """Scores in [0, 1] for `rows` (higher is better), with the figures used and their estimate flags."""


WEIGHERS: Registry[Weigher] = Registry("weigher", "cb.tumblebug.placement.weighers")


def normalise(values: Floats, higher_is_better: bool) -> Floats:
    """Min-max onto [0, 1] (best 1); NaN (unknown) scores 0; all equal score 1."""
    lo, hi = float(np.min(values, initial=np.inf)), float(np.max(values, initial=-np.inf))
    if not (np.isnan(lo) or np.isnan(hi)):  # the common case: two reductions and two in-place passes
        if hi <= lo:
            return np.ones(len(values))
        out = values - lo
        out /= hi - lo
        if not higher_is_better:
            np.subtract(1.0, out, out=out)
        return out
    known = ~np.isnan(values)
    if not known.any():
        return np.zeros(len(values))
    lo, hi = float(np.min(values[known])), float(np.max(values[known]))
    if hi == lo:
        return known.astype(np.float64)
    scaled = (values - lo) / (hi - lo)
    out = scaled if higher_is_better else 1.0 - scaled
    return np.where(known, out, 0.0)


def _known_price(table: CandidateTable, rows: Ints) -> Floats:
    price = table.price[rows]
    return price if float(np.min(price, initial=1.0)) > 0 else np.where(price > 0, price, np.nan)


class Cost(Weigher, name="cost"):
    """Cheaper is better (price per hour). An unknown price (0) scores 0 and is flagged."""

    def weigh(self, ctx: Context, rows: Ints) -> Weighing:
        price = _known_price(ctx.table, rows)
        return Weighing(normalise(price, False), {}, np.isnan(price), {"price_per_hour": ctx.table.price}, rows)


class Performance(Weigher, name="performance"):
    """Faster is better: the measured mean of `options.metric`, or its estimate (flagged)."""

    def weigh(self, ctx: Context, rows: Ints) -> Weighing:
        col = ctx.table.metric(ctx.options.metric)
        value = col.value[rows]
        # Samples and spread are read for the few results only (`Weighing.row` maps positions back).
        return Weighing(normalise(value, True), {ctx.options.metric: value}, col.estimated[rows],
                        {"samples": col.samples, "spread": col.spread}, rows)


class PerformancePerCost(Weigher, name="performance_per_cost"):
    """More of `options.metric` per unit of price is better."""

    def weigh(self, ctx: Context, rows: Ints) -> Weighing:
        col = ctx.table.metric(ctx.options.metric)
        price = _known_price(ctx.table, rows)
        ratio = col.value[rows] / price
        return Weighing(normalise(ratio, True),
                        {f"{ctx.options.metric}_per_price": ratio}, col.estimated[rows] | np.isnan(price),
                        {"price_per_hour": ctx.table.price}, rows)


def _worst_per_site(per_source: Floats) -> Floats:
    """The worst (largest) of several sources' figures for each site: fairness to all of them."""
    if per_source.shape[0] == 1:
        return np.asarray(per_source[0])
    return np.asarray(np.max(per_source, axis=0))


class Location(Weigher, name="location"):
    """Closer is better: Haversine km to `options.points`; with several points the farthest of them
    counts (fairness: no point is served badly)."""

    def weigh(self, ctx: Context, rows: Ints) -> Weighing:
        points = ctx.options.points
        if not points:
            raise PlacementError("options.points", "the location weigher needs at least one point")
        t = ctx.table
        lat = np.array([p.latitude for p in points])[:, None]
        lon = np.array([p.longitude for p in points])[:, None]
        per_site = _worst_per_site(haversine_km(lat, lon, t.site_lat[None, :], t.site_lon[None, :]))
        km = per_site[t.site[rows]]
        return Weighing(normalise(km, False), {"distance_km": km}, np.isnan(km))


class Latency(Weigher, name="latency"):
    """Lower RTT is better, from `options.rtt_from` sites and `options.rtt_points`: measured where
    benchmarks have the pair, else estimated from distance (flagged). Several sources: the worst
    RTT counts."""

    def weigh(self, ctx: Context, rows: Ints) -> Weighing:
        o, t = ctx.options, ctx.table
        if not o.rtt_from and not o.rtt_points:
            raise PlacementError("options.rtt_from", "the latency weigher needs a site or point to measure from")
        parts, flags = [], []
        if o.rtt_from:
            ms, est = ctx.rtt.from_sources(o.rtt_from, t.sites.names, t.site_lat, t.site_lon)
            parts.append(ms)
            flags.append(est)
        if o.rtt_points:
            lat = np.array([p.latitude for p in o.rtt_points])[:, None]
            lon = np.array([p.longitude for p in o.rtt_points])[:, None]
            parts.append(rtt_estimate_ms(haversine_km(lat, lon, t.site_lat[None, :], t.site_lon[None, :])))
            flags.append(np.ones(parts[-1].shape, bool))
        ms_all, est_all = np.vstack(parts), np.vstack(flags)
        per_site = _worst_per_site(ms_all)
        site_est = est_all.any(axis=0) | np.isnan(per_site)
        sites = t.site[rows]
        ms = per_site[sites]
        return Weighing(normalise(ms, False), {"rtt_ms": ms}, site_est[sites])
