"""Group placement: solve a `PlanRequest` exactly (scipy's HiGHS `milp`) and say how it went.

Objectives (over the x[g,j] of `model`):
    cost                  min Σ price_j x
    performance           max Σ perf_j x                 (perf: options.metric, measured or estimated)
    weighted              max Σ total_j x                (total_j: the recommendation's weighted score)
    performance_per_cost  max Σ perf_j x / Σ price_j x   by Dinkelbach's method: solve
                          max Σ (perf_j − λ price_j) x, set λ to the plan's ratio, repeat until the
                          best value is 0 — then no plan has a better ratio (exact, a few solves)
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tumblebug.placement.candidates import Candidate, CandidateTable, Floats
from tumblebug.placement.latency import RttMatrix, haversine_km
from tumblebug.placement.model import Model, build, candidate_rows, validate
from tumblebug.placement.recommend import score_rows
from tumblebug.placement.request import Objective, PlanRequest

DINKELBACH_ROUNDS = 12


@dataclass(frozen=True)
class Placement:
    """`count` VMs of `group` on `candidate`."""

    group: str
    candidate: Candidate
    count: int


@dataclass(frozen=True)
class Binding:
    """A constraint that alone makes the request infeasible, and what the others allow instead."""

    constraint: str
    message: str


@dataclass(frozen=True)
class Plan:
    """The answer. status: optimal | time_limit (best plan found so far, `gap` says how far it may
    be from the optimum) | infeasible (`binding` says why) | no_candidates."""

    status: str
    placements: list[Placement] = field(default_factory=list)
    objective: float | None = None
    gap: float | None = None
    solve_s: float = 0.0
    cost_per_hour: float = 0.0
    performance: float = 0.0
    performance_estimated: bool = False
    max_rtt_ms: float = 0.0
    rtt_estimated: bool = False
    message: str = ""
    binding: list[Binding] = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        return bool(self.placements)


def row_values(table: CandidateTable, req: PlanRequest, rtt: RttMatrix) -> Floats | None:
    """Per table row, what the objective values besides price (None for least cost): the metric,
    or the weighted score computed once over every candidate of every group (so its normalisation
    does not depend on which candidates survive pruning)."""
    if req.objective is Objective.COST:
        return None
    if req.objective is not Objective.WEIGHTED:
        return np.asarray(table.metric(req.options.metric).value)
    rows = np.unique(np.concatenate(candidate_rows(table, req, req.constraints)))
    out = np.full(len(table), np.nan)
    if len(rows):
        out[rows], _ = score_rows(table, rows, req.weights or {"cost": 1.0}, req.options, rtt)
    return out


def objective_vector(table: CandidateTable, req: PlanRequest, model: Model, value: Floats | None) -> Floats:
    """The x coefficients for `req.objective` (min form; Dinkelbach adds its λ term itself)."""
    rows = model.cols.row
    if value is None:
        return np.asarray(table.price[rows])
    if req.objective is Objective.WEIGHTED:
        return np.asarray(-value[rows])
    perf = value[rows]
    return np.asarray(-perf / max(float(perf.max(initial=0.0)), 1e-12))


def _status(res: Any) -> str:
    if res.status == 0:
        return "optimal"
    if res.status == 1:
        return "time_limit"
    if res.status == 2:
        return "infeasible"
    return "error"


def _counts(model: Model, res: Any) -> np.ndarray:
    return np.rint(res.x[: len(model.cols.row)]).astype(np.int64)


def solve_model(table: CandidateTable, req: PlanRequest, model: Model, value: Floats | None, time_limit_s: float
                ) -> tuple[str, np.ndarray | None, float | None, float]:
    """Solve `model` for `req.objective`: (status, VM count per x column, gap, seconds)."""
    started = time.perf_counter()
    coef = objective_vector(table, req, model, value)
    if req.objective is not Objective.PERFORMANCE_PER_COST:
        model.cost[: len(coef)] = coef
        res = model.solve(time_limit_s, req.mip_rel_gap)
        status = _status(res)
        x = _counts(model, res) if res.x is not None else None
        return status, x, getattr(res, "mip_gap", None), time.perf_counter() - started
    perf, price = -coef, table.price[model.cols.row]
    lam, best, gap, status = 0.0, None, None, "time_limit"
    for _ in range(DINKELBACH_ROUNDS):
        left = time_limit_s - (time.perf_counter() - started)
        if left <= 0:
            status = "time_limit"
            break
        model.cost[: len(coef)] = -(perf - lam * price)
        res = model.solve(left, req.mip_rel_gap)
        status, gap = _status(res), getattr(res, "mip_gap", None)
        if res.x is None or status != "optimal":
            break  # infeasible, or out of time: keep the best ratio so far (if any)
        x = _counts(model, res)
        if best is not None and float(perf @ x - lam * (price @ x)) <= 1e-9 * max(abs(lam), 1.0):
            break  # no plan beats the ratio λ of `best`: it is optimal
        best, lam = x, float(perf @ x) / float(price @ x)
    else:
        status = "time_limit"  # rounds ran out before the ratio was proven best
    if best is not None and status == "infeasible":
        status = "time_limit"
    return status, best, gap, time.perf_counter() - started


def site_rtt(table: CandidateTable, rtt: RttMatrix, sites: np.ndarray) -> tuple[float, bool]:
    """The widest RTT between any two of `sites` and whether it is an estimate."""
    if len(sites) < 2:
        return 0.0, False
    ms, est = rtt.between([table.sites.names[s] for s in sites], table.site_lat[sites], table.site_lon[sites])
    i, j = np.unravel_index(int(np.nanargmax(ms)), ms.shape)
    return float(ms[i, j]), bool(est[i, j])


def assemble(table: CandidateTable, req: PlanRequest, model: Model, x: np.ndarray, rtt: RttMatrix) -> dict[str, Any]:
    """The placements and figures of a solution (the Plan fields besides status and timing)."""
    used = np.flatnonzero(x > 0)
    placements = [Placement(req.groups[int(model.cols.group[k])].name, table.candidates[int(model.cols.row[k])],
                            int(x[k])) for k in used]
    rows, counts = model.cols.row[used], x[used]
    col = table.metric(req.options.metric)
    max_rtt, rtt_est = site_rtt(table, rtt, np.unique(table.site[rows]))
    return {"placements": placements, "cost_per_hour": float(table.price[rows] @ counts),
            "performance": float(col.value[rows] @ counts), "performance_estimated": bool(col.estimated[rows].any()),
            "max_rtt_ms": max_rtt, "rtt_estimated": rtt_est}


def objective_value(req: PlanRequest, fig: dict[str, Any], weighted: float) -> float:
    if req.objective is Objective.COST:
        return float(fig["cost_per_hour"])
    if req.objective is Objective.PERFORMANCE:
        return float(fig["performance"])
    if req.objective is Objective.PERFORMANCE_PER_COST:
        return float(fig["performance"]) / float(fig["cost_per_hour"])
    return weighted


def plan(table: CandidateTable, req: PlanRequest, rtt: RttMatrix | None = None, explain: bool = True) -> Plan:
    """The best placement of `req`'s groups, or why there is none (when `explain`)."""
    from tumblebug.placement.explain import explain_infeasible, no_candidates

    validate(table, req)
    rtt = rtt or RttMatrix()
    started = time.perf_counter()
    value = row_values(table, req, rtt)
    model = build(table, req, rtt, req.constraints, value=value)
    empty = no_candidates(table, req, model)
    if empty:
        return Plan("no_candidates", message=empty)
    status, x, gap, _ = solve_model(table, req, model, value, req.time_limit_s)
    seconds = time.perf_counter() - started
    if x is None:
        if status == "infeasible" and explain:
            binding, message = explain_infeasible(table, req, rtt)
            return Plan("infeasible", solve_s=seconds, message=message, binding=binding)
        return Plan(status, solve_s=seconds, message="no plan found within the time limit"
                    if status == "time_limit" else "the solver gave up")
    fig = assemble(table, req, model, x, rtt)
    weighted = float(-(model.cost[: len(x)] @ x)) if req.objective is Objective.WEIGHTED else 0.0
    return Plan(status, objective=objective_value(req, fig, weighted), gap=gap, solve_s=seconds, **fig)


def violations(table: CandidateTable, req: PlanRequest, result: Plan, rtt: RttMatrix | None = None) -> list[str]:
    """Every way `result` breaks `req` (empty: it keeps them all). Independent of the model, so
    tests and failover can check a plan against the request itself."""
    from tumblebug.placement.filters import FILTERS, passing

    rtt = rtt or RttMatrix()
    c, out = req.constraints, []
    groups = {g.name: g for g in req.groups}
    per_group: Counter[str] = Counter()
    for p in result.placements:
        g = groups[p.group]
        row = table.row_of[p.candidate.id]
        per_group[p.group] += p.count
        chosen = FILTERS.choose(FILTERS.names() if g.filters is None else g.filters, "filters")
        if not passing(table, g.requirements, chosen)[row]:
            out.append(f"{p.candidate.id} does not meet group {g.name}'s requirements")
        if p.candidate.id in req.exclude:
            out.append(f"{p.candidate.id} is excluded")
        if c.max_distance_km and c.near is not None:
            km = float(haversine_km(c.near.latitude, c.near.longitude, p.candidate.latitude, p.candidate.longitude))
            if not km <= c.max_distance_km + 1e-6:
                out.append(f"{p.candidate.site} is {km:.0f} km away")
    out += [f"group {n} has {per_group[n]} of {g.count} VMs" for n, g in groups.items() if per_group[n] != g.count]
    total = sum(g.count for g in req.groups)
    cost = sum(p.candidate.price_per_hour * p.count for p in result.placements)
    if c.budget_per_hour and cost > c.budget_per_hour + 1e-6:
        out.append(f"costs {cost:.4f}/h over the budget")
    by_provider: Counter[str] = Counter()
    by_conn: Counter[str] = Counter()
    vcpus: Counter[str] = Counter()
    for p in result.placements:
        by_provider[p.candidate.provider] += p.count
        by_conn[p.candidate.connection] += p.count
        vcpus[p.candidate.connection] += p.count * p.candidate.vcpu
    sites = {p.candidate.site for p in result.placements}
    if len(by_provider) < c.min_providers:
        out.append(f"{len(by_provider)} providers < {c.min_providers}")
    if len(sites) < c.min_regions:
        out.append(f"{len(sites)} regions < {c.min_regions}")
    if c.max_provider_share and by_provider and max(by_provider.values()) > c.max_provider_share * total + 1e-9:
        out.append(f"{max(by_provider.values())} of {total} VMs on one provider")
    for k in c.capacities:
        if k.vms and by_conn[k.connection] > k.vms:
            out.append(f"{by_conn[k.connection]} VMs on {k.connection} > {k.vms}")
        if k.vcpus and vcpus[k.connection] > k.vcpus:
            out.append(f"{vcpus[k.connection]} vCPUs on {k.connection} > {k.vcpus}")
    if c.max_rtt_ms and len(sites) > 1:
        codes = np.array(sorted(table.sites.index[s] for s in sites))
        widest, _ = site_rtt(table, rtt, codes)
        if widest > c.max_rtt_ms + 1e-9:
            out.append(f"two regions are {widest:.1f} ms apart")
    return out
