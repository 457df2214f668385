"""Spec recommendation: filter, weigh, combine, rank.

    total(spec) = Σ_w m_w · s_w(spec) / Σ_w |m_w|

where s_w ∈ [0, 1] is weigher w's normalised score and m_w the request's weight for it (a
negative weight turns a preference around). With non-negative weights the total is in [0, 1].
Every weigher counts (unlike "the last priority wins"). Ties go to the cheaper spec, then the
catalog order. Only the top `limit` rows are sorted (argpartition), so the cost is linear.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from tumblebug.placement.candidates import Candidate, CandidateTable, Floats, Ints
from tumblebug.placement.errors import PlacementError
from tumblebug.placement.filters import FILTERS, passing
from tumblebug.placement.latency import RttMatrix
from tumblebug.placement.requirements import Requirements, WeighOptions
from tumblebug.placement.weighers import WEIGHERS, Context, Weighing

DEFAULT_WEIGHTS: Mapping[str, float] = {"cost": 1.0}
MAX_LIMIT = 1000


@dataclass(frozen=True)
class RecommendRequest:
    """Requirements, the filters to apply by name (None: all registered), weights by weigher name
    (empty: cost only), the weighers' options, and how many results."""

    requirements: Requirements = field(default_factory=Requirements)
    weights: Mapping[str, float] = field(default_factory=dict)
    filters: tuple[str, ...] | None = None
    options: WeighOptions = field(default_factory=WeighOptions)
    limit: int = 10


@dataclass(frozen=True)
class WeigherScore:
    """One weigher's part in a result: its weight, the score, the figures used, whether estimated."""

    weigher: str
    weight: float
    score: float
    figures: dict[str, float]
    estimated: bool


@dataclass(frozen=True)
class Ranked:
    """One recommended spec with its total score and each weigher's part."""

    candidate: Candidate
    score: float
    scores: tuple[WeigherScore, ...]

    @property
    def estimated(self) -> bool:
        """True if any figure behind the score is an estimate (no benchmark yet)."""
        return any(s.estimated for s in self.scores)


@dataclass(frozen=True)
class Recommendation:
    """The ranked specs, how many the catalog held and how many passed the filters."""

    ranked: list[Ranked]
    catalog_size: int
    passed: int


def _check(req: RecommendRequest) -> Mapping[str, float]:
    if not 0 < req.limit <= MAX_LIMIT:
        raise PlacementError("limit", f"must be 1 to {MAX_LIMIT}")
    weights = req.weights or DEFAULT_WEIGHTS
    for name, w in weights.items():
        WEIGHERS.get(name, "weights")
        if not np.isfinite(w):
            raise PlacementError("weights", f"the weight of {name} is not a number")
    if not any(weights.values()):
        raise PlacementError("weights", "at least one weight must be non-zero")
    return weights


def top_k(total: Floats, price: Floats, k: int) -> Ints:
    """Positions of the k best totals, best first; ties to the lower price, then position."""
    n = len(total)
    if k < n:
        part = np.argpartition(-total, k - 1)[:k]
        # Rows tied with the k-th must compete on price too: take every row at least as good.
        cut = total[part].min()
        part = np.flatnonzero(total >= cut)
    else:
        part = np.arange(n)
    order = np.lexsort((part, price[part], -total[part]))
    return np.asarray(part[order][:k])


def score_rows(table: CandidateTable, rows: Ints, weights: Mapping[str, float], options: WeighOptions,
               rtt: RttMatrix) -> tuple[Floats, dict[str, Weighing]]:
    """The weighted total of `rows` and each weigher's weighing (shared with group placement)."""
    ctx = Context(table, options, rtt)
    norm = sum(abs(w) for w in weights.values())
    total = np.zeros(len(rows))
    parts: dict[str, Weighing] = {}
    for name, w in weights.items():
        if not w:
            continue
        weighing = WEIGHERS.get(name, "weights")().weigh(ctx, rows)
        parts[name] = weighing
        total += weighing.score * (w / norm)
    return total, parts


def recommend(table: CandidateTable, req: RecommendRequest, rtt: RttMatrix | None = None) -> Recommendation:
    """The best `req.limit` specs of `table` for `req`, each explained."""
    weights = _check(req)
    chosen = FILTERS.choose(FILTERS.names() if req.filters is None else req.filters, "filters")
    rows = np.flatnonzero(passing(table, req.requirements, chosen))
    if not len(rows):
        return Recommendation([], len(table), 0)
    total, parts = score_rows(table, rows, weights, req.options, rtt or RttMatrix())
    best = top_k(total, table.price[rows], req.limit)
    ranked = []
    for pos in best:
        scores = tuple(
            WeigherScore(name, float(weights[name]), float(p.score[pos]),
                         p.figures_at(int(pos)), bool(p.estimated[pos]))
            for name, p in parts.items())
        ranked.append(Ranked(table.candidates[int(rows[pos])], float(total[pos]), scores))
    return Recommendation(ranked, len(table), len(rows))
