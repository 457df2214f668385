"""Placement's catalog table, filters, weighers and recommendation (pure, no servers)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tumblebug.placement import (
    Candidate,
    CandidateTable,
    Measurement,
    PlacementError,
    Point,
    RecommendRequest,
    Requirements,
    RttMatrix,
    RttMeasurement,
    WeighOptions,
    recommend,
)
from tumblebug.placement.filters import FILTERS, passing
from tumblebug.placement.latency import haversine_km
from tumblebug.placement.weighers import WEIGHERS, Context, normalise

SEOUL, TOKYO, FRANKFURT = Point(37.5665, 126.9780), Point(35.6762, 139.6503), Point(50.1109, 8.6821)


def spec(conn: str, prov: str, region: str, name: str, vcpu: int, mem: float, price: float, arch: str = "x86_64",
         at: Point = SEOUL) -> Candidate:
    return Candidate(conn, prov, region, name, vcpu, mem, price, arch, at.latitude, at.longitude)


CATALOG = [
    spec("a-seoul", "aurora", "kr-seoul", "g1.small", 1, 4, 0.02),
    spec("a-seoul", "aurora", "kr-seoul", "c1.large", 4, 8, 0.10),
    spec("a-tokyo", "aurora", "jp-tokyo", "g1.large", 4, 16, 0.12, at=TOKYO),
    spec("n-tokyo", "nimbus", "jp-tokyo", "a1.large", 4, 16, 0.08, "arm64", at=TOKYO),
    spec("n-fra", "nimbus", "de-frankfurt", "m1.huge", 16, 128, 0.90, at=FRANKFURT),
    spec("n-fra", "nimbus", "de-frankfurt", "free", 2, 8, 0.0, at=FRANKFURT),  # price unknown
]


@pytest.fixture(scope="module")
def table() -> CandidateTable:
    return CandidateTable.build(CATALOG, [
        Measurement("a-seoul+c1.large", "cpu_multi", 4.0e6, samples=3, spread=1e5, measured_at=100.0),
        Measurement("n-tokyo+a1.large", "cpu_multi", 2.0e6, samples=1, measured_at=50.0),
        Measurement("n-tokyo+a1.large", "cpu_multi", 4.0e6, samples=1, measured_at=70.0),
        Measurement("nowhere+x", "cpu_multi", 1.0, samples=1),  # not in the catalog: ignored
    ])


def ids(table: CandidateTable, mask: np.ndarray) -> set[str]:
    return {table.ids[i] for i in np.flatnonzero(mask)}


def test_measurements_pool_and_missing_ones_are_estimated_from_the_same_provider(table: CandidateTable) -> None:
    col = table.metric("cpu_multi")
    c1, a1 = table.row_of["a-seoul+c1.large"], table.row_of["n-tokyo+a1.large"]
    assert col.value[c1] == 4.0e6 and col.samples[c1] == 3 and not col.estimated[c1]
    # Two one-sample runs pool: mean 3e6, spread = their standard deviation, newest time.
    assert col.value[a1] == 3.0e6 and col.samples[a1] == 2 and col.spread[a1] == pytest.approx(1.0e6)
    assert col.measured_at[a1] == 70.0
    # aurora's g1.large (4 vCPU) from aurora's measured 1e6 per vCPU; nimbus's m1.huge from nimbus's 0.75e6.
    assert col.estimated[table.row_of["a-tokyo+g1.large"]]
    assert col.value[table.row_of["a-tokyo+g1.large"]] == pytest.approx(4.0e6)
    assert col.value[table.row_of["n-fra+m1.huge"]] == pytest.approx(16 * 0.75e6)
    # No provider measured anything for cpu_single: the reference constant, flagged.
    assert table.metric("cpu_single").estimated.all()
    with pytest.raises(PlacementError, match="not a benchmark metric"):
        table.metric("gpu_flops")


@pytest.mark.parametrize(("name", "req", "expected"), [
    ("vcpu", Requirements(vcpu_min=2, vcpu_max=4), {"a-seoul+c1.large", "a-tokyo+g1.large", "n-tokyo+a1.large",
                                                     "n-fra+free"}),
    ("memory", Requirements(memory_gib_min=16), {"a-tokyo+g1.large", "n-tokyo+a1.large", "n-fra+m1.huge"}),
    ("price", Requirements(price_max=0.1), {"a-seoul+g1.small", "a-seoul+c1.large", "n-tokyo+a1.large"}),
    ("provider", Requirements(providers=("nimbus", "nope")), {"n-tokyo+a1.large", "n-fra+m1.huge", "n-fra+free"}),
    ("region", Requirements(regions=("jp-tokyo",)), {"a-tokyo+g1.large", "n-tokyo+a1.large"}),
    ("region", Requirements(regions=("nimbus/jp-tokyo", "de-frankfurt")), {"n-tokyo+a1.large", "n-fra+m1.huge",
                                                                           "n-fra+free"}),
    ("connection", Requirements(connections=("a-seoul",)), {"a-seoul+g1.small", "a-seoul+c1.large"}),
    ("architecture", Requirements(architectures=("arm64",)), {"n-tokyo+a1.large"}),
    ("performance", Requirements(min_performance=(("cpu_multi", 3.5e6),)), {"a-seoul+c1.large"}),
    ("performance", Requirements(min_performance=(("cpu_multi", 3.5e6),), estimates_ok=True),
     {"a-seoul+c1.large", "a-tokyo+g1.large", "n-fra+m1.huge"}),
])
def test_each_filter_passes_exactly_what_it_should(table: CandidateTable, name: str, req: Requirements,
                                                   expected: set[str]) -> None:
    f = FILTERS.get(name, "filters")()
    assert f.mask(table, Requirements()) is None  # not asked: passes all, costs nothing
    mask = f.mask(table, req)
    assert mask is not None and ids(table, mask) == expected
    assert f.describe(req)


def test_filters_are_found_by_name_and_combine(table: CandidateTable) -> None:
    assert set(FILTERS.names()) >= {"vcpu", "memory", "price", "provider", "region", "connection", "architecture",
                                    "performance"}
    with pytest.raises(PlacementError, match="no filter called 'gpu'; known: architecture"):
        FILTERS.choose(["gpu"], "filters")
    both = passing(table, Requirements(vcpu_min=4, providers=("aurora",)), FILTERS.choose(["vcpu", "provider"], "f"))
    assert ids(table, both) == {"a-seoul+c1.large", "a-tokyo+g1.large"}
    # A filter not chosen is not applied.
    only_vcpu = passing(table, Requirements(vcpu_min=4, providers=("aurora",)), FILTERS.choose(["vcpu"], "f"))
    assert len(ids(table, only_vcpu)) == 4


def test_normalise_maps_best_to_one_worst_to_zero_unknown_to_zero() -> None:
    assert normalise(np.array([1.0, 3.0, 2.0]), True).tolist() == [0.0, 1.0, 0.5]
    assert normalise(np.array([1.0, 3.0, math.nan]), False).tolist() == [1.0, 0.0, 0.0]
    assert normalise(np.array([2.0, 2.0]), False).tolist() == [1.0, 1.0]


def weigh(table: CandidateTable, name: str, options: WeighOptions = WeighOptions(), rtt: RttMatrix | None = None):
    rows = np.arange(len(table))
    return WEIGHERS.get(name, "weights")().weigh(Context(table, options, rtt or RttMatrix()), rows)


def test_cost_weigher_prefers_cheap_and_flags_unknown_prices(table: CandidateTable) -> None:
    w = weigh(table, "cost")
    assert w.score[table.row_of["a-seoul+g1.small"]] == 1.0 and w.score[table.row_of["n-fra+m1.huge"]] == 0.0
    free = table.row_of["n-fra+free"]
    assert w.score[free] == 0.0 and w.estimated[free] and w.estimated.sum() == 1


def test_performance_weighers_use_measurements_and_flag_estimates(table: CandidateTable) -> None:
    w = weigh(table, "performance")
    assert w.score.argmax() == table.row_of["n-fra+m1.huge"]  # 12e6 estimated beats 4e6 measured
    assert w.estimated[table.row_of["n-fra+m1.huge"]] and not w.estimated[table.row_of["a-seoul+c1.large"]]
    assert w.figures_at(table.row_of["a-seoul+c1.large"])["samples"] == 3
    ppc = weigh(table, "performance_per_cost")
    # g1.small's estimate 1e6 / 0.02 = 5e7 beats c1.large's measured 4e6 / 0.10 = 4e7, and says it is
    # an estimate; the unknown price scores 0 and is flagged.
    assert ppc.score.argmax() == table.row_of["a-seoul+g1.small"] and ppc.estimated[table.row_of["a-seoul+g1.small"]]
    assert ppc.figures["cpu_multi_per_price"][table.row_of["a-seoul+c1.large"]] == pytest.approx(4e7)
    assert ppc.score[table.row_of["n-fra+free"]] == 0.0 and ppc.estimated[table.row_of["n-fra+free"]]


def test_location_weigher_nearest_or_fair_to_several_points(table: CandidateTable) -> None:
    one = weigh(table, "location", WeighOptions(points=(Point(37.0, 127.0),)))
    assert one.score[table.row_of["a-seoul+g1.small"]] == 1.0 and one.score[table.row_of["n-fra+m1.huge"]] == 0.0
    km = one.figures["distance_km"][table.row_of["n-fra+m1.huge"]]
    assert km == pytest.approx(float(haversine_km(37.0, 127.0, FRANKFURT.latitude, FRANKFURT.longitude)))
    # Seoul and Frankfurt users: Tokyo is farther from Frankfurt than Seoul is; Seoul serves both best.
    fair = weigh(table, "location", WeighOptions(points=(SEOUL, FRANKFURT)))
    assert fair.score[table.row_of["a-seoul+g1.small"]] == 1.0
    assert fair.score[table.row_of["a-tokyo+g1.large"]] == 0.0  # its worst distance is the longest
    with pytest.raises(PlacementError, match="at least one point"):
        weigh(table, "location")


def test_latency_weigher_reads_the_matrix_and_estimates_the_rest(table: CandidateTable) -> None:
    rtt = RttMatrix([RttMeasurement("aurora/kr-seoul", "nimbus/jp-tokyo", 90.0, samples=5),
                     RttMeasurement("aurora/kr-seoul", "nimbus/de-frankfurt", 20.0)])  # measured beats geography
    w = weigh(table, "latency", WeighOptions(rtt_from=("aurora/kr-seoul",)), rtt)
    row = table.row_of
    assert w.figures["rtt_ms"][row["a-seoul+g1.small"]] == 0.0 and not w.estimated[row["a-seoul+g1.small"]]
    assert w.figures["rtt_ms"][row["n-fra+m1.huge"]] == 20.0 and not w.estimated[row["n-fra+m1.huge"]]
    assert w.figures["rtt_ms"][row["n-tokyo+a1.large"]] == 90.0
    assert w.estimated[row["a-tokyo+g1.large"]]  # no measurement: from distance, flagged
    assert w.score[row["n-tokyo+a1.large"]] == 0.0
    from_point = weigh(table, "latency", WeighOptions(rtt_points=(FRANKFURT,)), rtt)
    assert from_point.estimated.all() and from_point.score[row["n-fra+m1.huge"]] == 1.0
    with pytest.raises(PlacementError, match="rtt_from"):
        weigh(table, "latency")


def test_recommendation_combines_every_weight_and_explains_each(table: CandidateTable) -> None:
    req = RecommendRequest(Requirements(vcpu_min=2), {"cost": 1.0, "performance": 1.0}, limit=3)
    rec = recommend(table, req)
    assert rec.catalog_size == 6 and rec.passed == 5
    best = rec.ranked[0]
    # c1.large: cost score (0.9-0.1)/(0.9-0.08)=0.9756, performance (4-3)/(12-3)... = both count.
    assert best.candidate.id == "a-seoul+c1.large"
    parts = {s.weigher: s for s in best.scores}
    assert best.score == pytest.approx((parts["cost"].score + parts["performance"].score) / 2)
    assert parts["cost"].figures == {"price_per_hour": 0.10} and not best.estimated
    assert [r.score for r in rec.ranked] == sorted((r.score for r in rec.ranked), reverse=True)
    # Cost alone ranks differently: the weights really combine (not "last rule wins").
    cheap = recommend(table, RecommendRequest(Requirements(vcpu_min=2), {"cost": 1.0}, limit=1))
    assert cheap.ranked[0].candidate.id == "n-tokyo+a1.large"
    assert any(r.estimated for r in recommend(table, req).ranked[1:])


def test_ties_go_to_the_cheaper_spec_and_bad_requests_name_the_field(table: CandidateTable) -> None:
    rec = recommend(table, RecommendRequest(Requirements(), {"location": 1.0}, options=WeighOptions(points=(SEOUL,)),
                                            limit=2))
    assert [r.candidate.id for r in rec.ranked] == ["a-seoul+g1.small", "a-seoul+c1.large"]
    for bad, field in ((RecommendRequest(limit=0), "limit"), (RecommendRequest(weights={"speed": 1}), "weights"),
                       (RecommendRequest(weights={"cost": 0}), "weights"),
                       (RecommendRequest(filters=("nope",)), "filters")):
        with pytest.raises(PlacementError) as err:
            recommend(table, bad)
        assert err.value.field == field
    assert recommend(table, RecommendRequest(Requirements(vcpu_min=99))).ranked == []


def test_top_k_matches_a_full_sort_on_a_large_random_catalog() -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    cands = [spec(f"c{i % 30}", f"p{i % 5}", f"r{i % 11}", f"s{i}", int(rng.choice([1, 2, 4, 8])), 4.0,
                  float(rng.choice([0.01, 0.02, 0.05, 0.1])), at=Point(float(i % 11), float(i % 11)))
             for i in range(n)]
    t = CandidateTable.build(cands)
    req = RecommendRequest(Requirements(vcpu_min=2), {"cost": 2.0, "location": 1.0},
                           options=WeighOptions(points=(Point(3.0, 3.0),)), limit=25)
    got = [r.candidate.id for r in recommend(t, req).ranked]
    rows = np.flatnonzero(t.vcpu >= 2)
    from tumblebug.placement.recommend import score_rows
    total, _ = score_rows(t, rows, req.weights, req.options, RttMatrix())
    full = sorted(range(len(rows)), key=lambda k: (-total[k], t.price[rows[k]], k))[:25]
    assert got == [t.ids[rows[k]] for k in full]
