"""Group placement as a MILP: equal to brute force on small instances, every constraint kept on
large ones, and an infeasible request names what binds."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tumblebug.placement import Candidate, CandidateTable, Measurement, Point, Requirements, RttMatrix
from tumblebug.placement.plan import Placement, Plan, plan, violations
from tumblebug.placement.request import Capacity, Constraints, Group, Keep, Objective, PlanRequest

PLACES = {"kr-seoul": Point(37.5665, 126.9780), "jp-tokyo": Point(35.6762, 139.6503),
          "de-frankfurt": Point(50.1109, 8.6821)}
PROVIDERS = ("aurora", "nimbus", "cirrus")


def cand(prov: str, region: str, name: str, vcpu: int, price: float) -> Candidate:
    p = PLACES[region]
    return Candidate(f"{prov}-{region}", prov, region, name, vcpu, 4.0 * vcpu, price, "x86_64", p.latitude, p.longitude)


@st.composite
def instances(draw: st.DrawFn) -> tuple[CandidateTable, PlanRequest]:
    m = draw(st.integers(1, 5))
    cands = [cand(draw(st.sampled_from(PROVIDERS)), draw(st.sampled_from(sorted(PLACES))), f"s{i}",
                  draw(st.sampled_from([1, 2, 4])), draw(st.sampled_from([0.1, 0.15, 0.2, 0.35, 0.5, 1.0])))
             for i in range(m)]
    meas = [Measurement(c.id, "cpu_multi", draw(st.sampled_from([1.0, 2.0, 3.0, 5.0])) * 1e6) for c in cands
            if draw(st.booleans())]
    n = draw(st.integers(1, 4))
    conns = sorted({c.connection for c in cands})
    cons = Constraints(
        budget_per_hour=draw(st.sampled_from([0.0, 0.4, 0.8, 1.5])),
        min_providers=draw(st.integers(0, 3)), min_regions=draw(st.integers(0, 3)),
        max_provider_share=draw(st.sampled_from([0.0, 0.5, 0.75])),
        capacities=((Capacity(draw(st.sampled_from(conns)), vms=draw(st.integers(0, 2)),
                              vcpus=draw(st.sampled_from([0, 2, 4]))),) if draw(st.booleans()) else ()),
        max_rtt_ms=draw(st.sampled_from([0.0, 60.0, 200.0])),
        near=PLACES["kr-seoul"], max_distance_km=draw(st.sampled_from([0.0, 1500.0])))
    objective = draw(st.sampled_from([Objective.COST, Objective.PERFORMANCE, Objective.PERFORMANCE_PER_COST]))
    vcpu_min = draw(st.sampled_from([0, 2]))
    return CandidateTable.build(cands, meas), PlanRequest((Group("g", n, Requirements(vcpu_min=vcpu_min)),),
                                                          objective, cons)


def value(req: PlanRequest, table: CandidateTable, placements: list[Placement]) -> float:
    perf = table.metric("cpu_multi").value
    cost = sum(p.candidate.price_per_hour * p.count for p in placements)
    work = sum(perf[table.row_of[p.candidate.id]] * p.count for p in placements)
    return {Objective.COST: -cost, Objective.PERFORMANCE: work, Objective.PERFORMANCE_PER_COST: work / cost}[req.objective]


def brute_force(table: CandidateTable, req: PlanRequest) -> float | None:
    """The best objective (higher is better) over every way to put the VMs on the candidates."""
    n, m = req.groups[0].count, len(table)
    best = None
    for split in itertools.product(range(n + 1), repeat=m):
        if sum(split) != n:
            continue
        placements = [Placement("g", table.candidates[j], k) for j, k in enumerate(split) if k]
        if violations(table, req, Plan("candidate", placements)):
            continue
        v = value(req, table, placements)
        best = v if best is None or v > best else best
    return best


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_the_milp_equals_brute_force_on_small_instances(inst: tuple[CandidateTable, PlanRequest]) -> None:
    table, req = inst
    expected = brute_force(table, req)
    got = plan(table, req, explain=False)
    if expected is None:
        assert not got.feasible and got.status in ("infeasible", "no_candidates")
        return
    assert got.status == "optimal", got.message
    assert violations(table, req, got) == []
    assert value(req, table, got.placements) == pytest.approx(expected, rel=1e-6)
    assert got.objective == pytest.approx(abs(expected), rel=1e-6) and got.gap is not None and got.gap <= 1e-6


def big_catalog(seed: int, n: int) -> CandidateTable:
    rng = np.random.default_rng(seed)
    providers = [f"p{i}" for i in range(8)]
    regions = [*list(PLACES), "us-virginia", "br-saopaulo"]
    coords = {**PLACES, "us-virginia": Point(39.04, -77.49), "br-saopaulo": Point(-23.55, -46.63)}
    cands = []
    for i in range(n):
        prov, reg = providers[int(rng.integers(8))], regions[int(rng.integers(len(regions)))]
        vcpu = int(rng.choice([1, 2, 4, 8, 16]))
        c = coords[reg]
        cands.append(Candidate(f"{prov}-{reg}", prov, reg, f"s{i}", vcpu, 4.0 * vcpu,
                               round(vcpu * float(rng.uniform(0.01, 0.05)), 4), "x86_64", c.latitude, c.longitude))
    meas = [Measurement(c.id, "cpu_multi", c.vcpu * float(rng.uniform(0.5, 1.5)) * 1e6, samples=3)
            for c in cands[::3]]
    return CandidateTable.build(cands, meas)


BIG = big_catalog(1, 2000)


@settings(max_examples=8, deadline=None)
@given(st.sampled_from(list(Objective)), st.integers(2, 5), st.integers(2, 6), st.sampled_from([0.0, 0.3, 0.5]),
       st.sampled_from([0.0, 80.0, 250.0]), st.sampled_from([0.0, 3.0, 8.0]))
def test_large_plans_keep_every_constraint(objective: Objective, providers: int, regions: int, share: float,
                                           max_rtt: float, budget: float) -> None:
    req = PlanRequest(
        (Group("web", 60, Requirements(vcpu_min=2, vcpu_max=8)), Group("db", 20, Requirements(memory_gib_min=32))),
        objective, Constraints(budget_per_hour=budget, min_providers=providers, min_regions=regions,
                               max_provider_share=share, max_rtt_ms=max_rtt,
                               capacities=(Capacity("p0-kr-seoul", vms=5, vcpus=24), Capacity("p1-jp-tokyo", vms=3))),
        weights={"cost": 1.0, "performance": 1.0}, time_limit_s=20.0)
    got = plan(BIG, req, explain=False)
    if got.feasible:
        assert got.status in ("optimal", "time_limit")
        assert violations(BIG, req, got) == []
        assert got.cost_per_hour == pytest.approx(sum(p.candidate.price_per_hour * p.count for p in got.placements))
    else:
        assert got.status == "infeasible"


def test_a_budget_that_spread_cannot_meet_names_the_cheapest_plan_that_keeps_it() -> None:
    # Three providers; the cheap one alone would do, but spread ≥ 3 forces a VM on each of the dear ones.
    table = CandidateTable.build([cand("aurora", "kr-seoul", "a", 1, 0.10), cand("nimbus", "jp-tokyo", "b", 1, 0.50),
                                  cand("cirrus", "de-frankfurt", "c", 1, 0.95)])
    req = PlanRequest((Group("web", 10, Requirements()),), constraints=Constraints(budget_per_hour=1.0, min_providers=3))
    got = plan(table, req)
    assert got.status == "infeasible" and not got.placements
    # 8 × 0.10 + 0.50 + 0.95 = 2.25; and within 1.00/h not even 9 × 0.10 + 0.50 fits: one provider only.
    assert [b.constraint for b in got.binding] == ["budget", "providers"]
    assert got.binding[0].message == "budget 1.00/h: the cheapest plan that keeps spread ≥ 3 providers costs 2.25/h"
    assert got.binding[1].message == "spread ≥ 3 providers: with budget 1.00/h, at most 1 provider can be used"
    assert "budget 1.00/h" in got.message


def test_share_capacity_rtt_and_distance_each_say_what_the_others_allow() -> None:
    table = CandidateTable.build([cand("aurora", "kr-seoul", "a", 2, 0.10), cand("aurora", "jp-tokyo", "b", 2, 0.10),
                                  cand("nimbus", "de-frankfurt", "c", 2, 0.20)])
    share = plan(table, PlanRequest((Group("g", 4),), constraints=Constraints(max_provider_share=0.25,
                                                                              capacities=(Capacity("nimbus-de-frankfurt",
                                                                                                   vms=3),))))
    assert share.status == "infeasible"
    msgs = {b.constraint: b.message for b in share.binding}
    assert msgs["share"] == ("≤ 25% on one provider: with connection capacities (nimbus-de-frankfurt: 3 VMs), "
                             "the least is 1 of 4 VMs (25%) on one provider") or "least is" in msgs["share"]
    capped = plan(table, PlanRequest((Group("g", 9),), constraints=Constraints(
        capacities=tuple(Capacity(c, vms=2) for c in ("aurora-kr-seoul", "aurora-jp-tokyo", "nimbus-de-frankfurt")))))
    assert capped.binding[0].message.endswith("only 6 of 9 VMs fit")
    rtt = plan(table, PlanRequest((Group("g", 3),), constraints=Constraints(min_regions=3, max_rtt_ms=50)))
    rtt_msgs = {b.constraint: b.message for b in rtt.binding}
    assert "the least widest RTT is" in rtt_msgs["rtt"] and "at most 2 regions" in rtt_msgs["regions"]
    far = plan(table, PlanRequest((Group("g", 2),), constraints=Constraints(
        min_providers=2, near=PLACES["kr-seoul"], max_distance_km=2000)))
    far_msgs = {b.constraint: b.message for b in far.binding}
    assert far_msgs["distance"].startswith("within 2000 km of (37.5665, 126.978): with spread ≥ 2 providers, "
                                             "the nearest plan reaches 85")


def test_constraints_that_conflict_only_together_say_so_and_empty_groups_name_their_filter() -> None:
    table = CandidateTable.build([cand("aurora", "kr-seoul", "a", 1, 0.10), cand("nimbus", "jp-tokyo", "b", 1, 0.10)])
    # Any one of the three alone is satisfiable; dropping any one leaves the other two still impossible.
    both = plan(table, PlanRequest((Group("g", 2),), constraints=Constraints(
        min_providers=2, capacities=(Capacity("aurora-kr-seoul", vms=1), Capacity("nimbus-jp-tokyo", vms=1)),
        budget_per_hour=0.15, max_rtt_ms=10)))
    assert both.status == "infeasible"
    assert both.binding == [] and "no single constraint binds alone" in both.message
    empty = plan(table, PlanRequest((Group("big", 1, Requirements(vcpu_min=64)),)))
    assert empty.status == "no_candidates" and "vCPU ≥ 64 leaves none" in empty.message


def test_every_objective_and_keep_and_exclude_for_failover() -> None:
    table = big_catalog(3, 500)
    base = PlanRequest((Group("g", 10, Requirements(vcpu_min=4)),), Objective.COST,
                       Constraints(min_providers=2, budget_per_hour=5.0))
    first = plan(table, base)
    assert first.status == "optimal"
    # The cheapest spec's connection answers "no capacity": exclude it, keep the rest where they are.
    gone = first.placements[0].candidate.id
    keep = tuple(Keep("g", p.candidate.id, p.count) for p in first.placements[1:])
    again = plan(table, PlanRequest(base.groups, base.objective, base.constraints, exclude=(gone,), keep=keep))
    assert again.status == "optimal" and all(p.candidate.id != gone for p in again.placements)
    kept = {p.candidate.id: p.count for p in again.placements}
    assert all(kept.get(k.spec_id, 0) >= k.count for k in keep)
    assert again.cost_per_hour >= first.cost_per_hour
    for objective in Objective:
        got = plan(table, PlanRequest(base.groups, objective, base.constraints, weights={"performance_per_cost": 1.0}))
        assert got.status == "optimal" and violations(table, base, got) == []
        assert got.objective is not None and math.isfinite(got.objective)
    fastest = plan(table, PlanRequest(base.groups, Objective.PERFORMANCE, base.constraints))
    best_ratio = plan(table, PlanRequest(base.groups, Objective.PERFORMANCE_PER_COST, base.constraints))
    assert fastest.performance >= best_ratio.performance - 1e-6
    assert best_ratio.performance / best_ratio.cost_per_hour >= fastest.performance / fastest.cost_per_hour - 1e-9
    col = table.metric("cpu_multi")
    # The plan says whether any chosen spec's figure is an estimate (no benchmark yet).
    assert fastest.performance_estimated == any(col.estimated[table.row_of[p.candidate.id]] for p in fastest.placements)
    unmeasured = plan(table, PlanRequest((Group("g", 3, Requirements(connections=("p1-br-saopaulo",))),),
                                         Objective.PERFORMANCE, exclude=tuple(
                                             i for i in table.ids if not col.estimated[table.row_of[i]])))
    assert unmeasured.status == "optimal" and unmeasured.performance_estimated


def test_rtt_between_chosen_regions_uses_the_measured_matrix() -> None:
    from tumblebug.placement import RttMeasurement

    table = CandidateTable.build([cand("aurora", "kr-seoul", "a", 1, 0.10), cand("nimbus", "jp-tokyo", "b", 1, 0.20),
                                  cand("cirrus", "de-frankfurt", "c", 1, 0.30)])
    req = PlanRequest((Group("g", 2),), constraints=Constraints(min_regions=2, max_rtt_ms=50))
    # Estimated Seoul–Tokyo is ~20 ms: allowed. A measured 70 ms forbids it; Seoul–Frankfurt measured 40 ms is fine.
    assert {p.candidate.name for p in plan(table, req).placements} == {"a", "b"}
    rtt = RttMatrix([RttMeasurement("aurora/kr-seoul", "nimbus/jp-tokyo", 70.0),
                     RttMeasurement("aurora/kr-seoul", "cirrus/de-frankfurt", 40.0)])
    got = plan(table, req, rtt)
    assert {p.candidate.name for p in got.placements} == {"a", "c"} and got.max_rtt_ms == 40.0
    assert not got.rtt_estimated and violations(table, req, got, rtt) == []
