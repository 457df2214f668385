"""The mixed-integer program of a group placement, built as sparse matrices for scipy's `milp`.

Variables
    x[g,j] ∈ ℤ≥0   VMs of group g on candidate j (j: a spec of a connection that passes g's filters,
                   has a known price, is not excluded and is near enough)
    y[p] ∈ {0,1}   provider p is used          (only when spread or its relaxation needs it)
    z[s] ∈ {0,1}   site s is used              (spread over regions, RTT)
    t ∈ ℤ≥0        the most VMs on one provider (only when an explanation minimises it)
Constraints
    Σ_j x[g,j] = N_g                              every group placed in full
    Σ price_j x ≤ B                               budget per hour
    Σ_{j∈p} x ≤ ⌊share·N⌋                         at most a share on one provider
    Σ_{j∈c} x ≤ vms_c,  Σ_{j∈c} vcpu_j x ≤ vcpus_c each connection's capacity
    y[p] ≤ Σ_{j∈p} x,  Σ_p y ≥ k_p                spread over providers
    z[s] ≤ Σ_{j∈s} x ≤ N·z[s],  Σ_s z ≥ k_s        spread over sites; z is exactly "site used"
    z[s] + z[s'] ≤ 1  for every pair with RTT(s,s') > R   the widest RTT
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from tumblebug.placement.candidates import CandidateTable, Floats, Ints
from tumblebug.placement.errors import PlacementError
from tumblebug.placement.filters import FILTERS, passing
from tumblebug.placement.latency import RttMatrix, haversine_km
from tumblebug.placement.request import Constraints, PlanRequest

MAX_GROUPS = 100
MAX_VMS = 100_000


@dataclass
class Rows:
    """Sparse constraint rows under construction: lb ≤ A·v ≤ ub."""

    r: list[Ints] = field(default_factory=list)
    c: list[Ints] = field(default_factory=list)
    v: list[Floats] = field(default_factory=list)
    lb: list[float] = field(default_factory=list)
    ub: list[float] = field(default_factory=list)

    def add(self, cols: Ints, vals: Floats | float, lb: float, ub: float) -> None:
        cols = np.asarray(cols, np.int64)
        self.r.append(np.full(len(cols), len(self.lb), np.int64))
        self.c.append(cols)
        self.v.append(np.broadcast_to(np.asarray(vals, np.float64), cols.shape))
        self.lb.append(lb)
        self.ub.append(ub)

    def matrix(self, nvars: int) -> LinearConstraint | None:
        if not self.lb:
            return None
        a = coo_array((np.concatenate(self.v), (np.concatenate(self.r), np.concatenate(self.c))),
                      shape=(len(self.lb), nvars)).tocsr()
        return LinearConstraint(a, np.array(self.lb), np.array(self.ub))


@dataclass(frozen=True)
class Columns:
    """Which candidate each x column is, for which group."""

    group: Ints  # group index per column
    row: Ints  # table row per column
    lower: Ints  # VMs the request keeps there


def candidate_rows(table: CandidateTable, req: PlanRequest, cons: Constraints) -> list[Ints]:
    """Per group, the table rows it may use under `cons`' distance limit."""
    excluded = np.zeros(len(table), bool)
    excluded[[table.row_of[s] for s in req.exclude if s in table.row_of]] = True
    near = np.ones(len(table), bool)
    if cons.near is not None and cons.max_distance_km:
        km = haversine_km(cons.near.latitude, cons.near.longitude, table.site_lat, table.site_lon)
        near = (km <= cons.max_distance_km)[table.site]
    base = (table.price > 0) & ~excluded & near
    out = []
    for g in req.groups:
        chosen = FILTERS.choose(FILTERS.names() if g.filters is None else g.filters, "groups.filters")
        out.append(np.flatnonzero(base & passing(table, g.requirements, chosen)))
    return out


def prune(table: CandidateTable, rows: Ints, cons: Constraints, value: Floats | None, keep: Ints) -> Ints:
    """Drop dominated candidates: within a class the constraints cannot tell apart (same connection,
    hence provider and site; same vCPUs when a connection's vCPUs are capped), a candidate that costs
    at least as much as another and is worth no more (`value`, higher better; None: price alone)
    never needs to be used — x has no per-candidate bound, so the dominant one can take all its VMs.
    Kept rows (`keep`) stay. This shrinks 10k candidates to the few hundred that can matter."""
    if len(rows) < 2:
        return rows
    klass = table.connection[rows].astype(np.int64)
    if any(k.vcpus for k in cons.capacities):
        klass = klass * (int(table.vcpu.max()) + 1) + table.vcpu[rows]
    price = table.price[rows]
    worth = np.zeros(len(rows)) if value is None else np.nan_to_num(value[rows], nan=-np.inf)
    order = np.lexsort((-worth, price, klass))
    k, w = klass[order], worth[order]
    first = np.ones(len(order), bool)
    first[1:] = k[1:] != k[:-1]
    # Within a class (sorted by price), keep a row only if it is worth more than every cheaper one.
    span = float(np.ptp(w[np.isfinite(w)])) if np.isfinite(w).any() else 0.0
    shifted = np.where(np.isfinite(w), w, -1.0 - span) + np.cumsum(first) * (2.0 * span + 2.0)
    best_before = np.maximum.accumulate(shifted)
    kept = first.copy()
    kept[1:] |= shifted[1:] > best_before[:-1]
    out = rows[order[kept]]
    return np.union1d(out, np.intersect1d(rows, keep))


def validate(table: CandidateTable, req: PlanRequest) -> None:
    """PlacementError for a request that cannot be read, before any solving."""
    if not req.groups or len(req.groups) > MAX_GROUPS:
        raise PlacementError("groups", f"give 1 to {MAX_GROUPS} groups")
    names = [g.name for g in req.groups]
    if len(set(names)) != len(names):
        raise PlacementError("groups", "group names must differ")
    if any(g.count < 1 for g in req.groups) or sum(g.count for g in req.groups) > MAX_VMS:
        raise PlacementError("groups.count", f"each group needs at least 1 VM, all of them at most {MAX_VMS}")
    c = req.constraints
    if c.budget_per_hour < 0 or c.max_rtt_ms < 0 or c.max_distance_km < 0 or c.min_providers < 0 or c.min_regions < 0:
        raise PlacementError("constraints", "limits must not be negative")
    if not 0 <= c.max_provider_share <= 1:
        raise PlacementError("constraints.max_provider_share", "is a fraction from 0 to 1")
    if c.max_distance_km and c.near is None:
        raise PlacementError("constraints.near", "max_distance_km needs the point to measure from")
    for k in req.keep:
        if k.spec_id not in table.row_of or k.group not in names:
            raise PlacementError("keep", f"{k.group}/{k.spec_id} names no group or catalog spec")
    if req.time_limit_s <= 0:
        raise PlacementError("time_limit_s", "must be positive")


@dataclass
class Model:
    """One MILP instance: objective `cost` over variables with `bounds`/`integrality`, `rows`."""

    cols: Columns
    nvars: int
    cost: Floats
    lower: Floats
    upper: Floats
    integrality: Floats
    rows: Rows
    y: Ints  # provider indicator columns (empty if none)
    providers: Ints  # table provider code per y column
    z: Ints  # site indicator columns
    sites: Ints  # table site code per z column
    t: int = -1

    def solve(self, time_limit_s: float, gap: float) -> Any:
        """scipy's OptimizeResult (status, x, fun, mip_gap)."""
        cons = self.rows.matrix(self.nvars)
        return milp(self.cost, constraints=[cons] if cons is not None else None, integrality=self.integrality,
                    bounds=Bounds(self.lower, self.upper),
                    options={"time_limit": max(time_limit_s, 0.01), "mip_rel_gap": gap, "presolve": True})


def build(table: CandidateTable, req: PlanRequest, rtt: RttMatrix, cons: Constraints, *,
          need_y: bool = False, need_z: bool = False, need_t: bool = False, at_most: bool = False,
          candidates: Sequence[Ints] | None = None, value: Floats | None = None) -> Model:
    """The program for `req` under `cons` (the explanations pass relaxed copies of it).

    need_*: add indicator variables even if no constraint of `cons` asks for them. at_most: a group
    may be placed in part (Σ x ≤ N_g) — to ask how many VMs fit at all. value: per table row, what
    the objective values besides price (see `prune`). The objective is left zero.
    """
    per_group = candidates if candidates is not None else candidate_rows(table, req, cons)
    kept = np.array([table.row_of[k.spec_id] for k in req.keep], np.int64)
    per_group = [prune(table, r, cons, value, kept) for r in per_group]
    gcol = np.concatenate([np.full(len(r), g, np.int64) for g, r in enumerate(per_group)])
    rcol = np.concatenate(list(per_group)) if per_group else np.zeros(0, np.int64)
    lower = np.zeros(len(rcol))
    for k in req.keep:
        g = next(i for i, grp in enumerate(req.groups) if grp.name == k.group)
        hit = np.flatnonzero((gcol == g) & (rcol == table.row_of[k.spec_id]))
        if len(hit):
            lower[hit[0]] += k.count
    n_total = sum(g.count for g in req.groups)
    nx = len(rcol)
    rows = Rows()
    for g, grp in enumerate(req.groups):
        cols = np.flatnonzero(gcol == g)
        rows.add(cols, 1.0, 0.0 if at_most else grp.count, grp.count)
    if cons.budget_per_hour:
        rows.add(np.arange(nx), table.price[rcol], -np.inf, cons.budget_per_hour)
    prov = table.provider[rcol]
    site = table.site[rcol]
    uprov, prov_inv = np.unique(prov, return_inverse=True)
    usite, site_inv = np.unique(site, return_inverse=True)
    by_prov = [np.flatnonzero(prov_inv == i) for i in range(len(uprov))]
    by_site = [np.flatnonzero(site_inv == i) for i in range(len(usite))]
    if cons.max_provider_share:
        cap = float(np.floor(cons.max_provider_share * n_total + 1e-9))
        for cols in by_prov:
            rows.add(cols, 1.0, -np.inf, cap)
    for capy in cons.capacities:
        code = table.connections.index.get(capy.connection)
        if code is None:
            continue
        cols = np.flatnonzero(table.connection[rcol] == code)
        if capy.vms:
            rows.add(cols, 1.0, -np.inf, capy.vms)
        if capy.vcpus:
            rows.add(cols, table.vcpu[rcol[cols]].astype(np.float64), -np.inf, capy.vcpus)
    nvars = nx
    y = np.zeros(0, np.int64)
    if cons.min_providers or need_y:
        y = np.arange(nvars, nvars + len(uprov))
        nvars += len(uprov)
        for i, cols in enumerate(by_prov):  # y_p ≤ Σ x
            rows.add(np.append(cols, y[i]), np.append(np.full(len(cols), -1.0), 1.0), -np.inf, 0.0)
        if cons.min_providers:
            rows.add(y, 1.0, cons.min_providers, np.inf)
    z = np.zeros(0, np.int64)
    if cons.min_regions or cons.max_rtt_ms or need_z:
        z = np.arange(nvars, nvars + len(usite))
        nvars += len(usite)
        for i, cols in enumerate(by_site):  # z_s ≤ Σ x ≤ N z_s
            rows.add(np.append(cols, z[i]), np.append(np.full(len(cols), -1.0), 1.0), -np.inf, 0.0)
            rows.add(np.append(cols, z[i]), np.append(np.full(len(cols), 1.0), -float(n_total)), -np.inf, 0.0)
        if cons.min_regions:
            rows.add(z, 1.0, cons.min_regions, np.inf)
        if cons.max_rtt_ms:
            ms, _ = rtt.between([table.sites.names[s] for s in usite], table.site_lat[usite], table.site_lon[usite])
            far_i, far_j = np.nonzero(np.triu(~(ms <= cons.max_rtt_ms), 1))
            for a, b in zip(far_i, far_j, strict=True):
                rows.add(np.array([z[a], z[b]]), 1.0, -np.inf, 1.0)
    t = -1
    if need_t:
        t = int(nvars)
        nvars += 1
        for cols in by_prov:  # Σ_{j∈p} x ≤ t
            rows.add(np.append(cols, t), np.append(np.full(len(cols), 1.0), -1.0), -np.inf, 0.0)
    upper = np.concatenate([np.full(nx, float(n_total)), np.ones(nvars - nx)])
    if t >= 0:
        upper[t] = n_total
    low = np.concatenate([lower, np.zeros(nvars - nx)])
    return Model(Columns(gcol, rcol, lower.astype(np.int64)), nvars, np.zeros(nvars), low, upper, np.ones(nvars),
                 rows, y, uprov[: len(y)] if len(y) else np.zeros(0, np.int64), z,
                 usite[: len(z)] if len(z) else np.zeros(0, np.int64), t)


def relaxed(cons: Constraints, name: str) -> Constraints:
    """`cons` without the constraint family `name`."""
    fields = {"budget": {"budget_per_hour": 0.0}, "providers": {"min_providers": 0}, "regions": {"min_regions": 0},
              "share": {"max_provider_share": 0.0}, "capacity": {"capacities": ()}, "rtt": {"max_rtt_ms": 0.0},
              "distance": {"max_distance_km": 0.0, "near": None}}
    return replace(cons, **fields[name])  # type: ignore[arg-type]


def present(cons: Constraints) -> list[str]:
    """The constraint families `cons` asks for."""
    return [name for name, on in (("budget", cons.budget_per_hour), ("providers", cons.min_providers),
                                  ("regions", cons.min_regions), ("share", cons.max_provider_share),
                                  ("capacity", cons.capacities), ("rtt", cons.max_rtt_ms),
                                  ("distance", cons.max_distance_km)) if on]


def describe(cons: Constraints, name: str) -> str:
    """One constraint family in words."""
    c = cons
    return {
        "budget": f"budget {c.budget_per_hour:.2f}/h",
        "providers": f"spread ≥ {c.min_providers} providers",
        "regions": f"spread ≥ {c.min_regions} regions",
        "share": f"≤ {c.max_provider_share:.0%} on one provider",
        "capacity": "connection capacities (" + ", ".join(
            f"{k.connection}: " + " ".join([*([f"{k.vms} VMs"] if k.vms else []),
                                            *([f"{k.vcpus} vCPUs"] if k.vcpus else [])])
            for k in c.capacities) + ")",
        "rtt": f"RTT ≤ {c.max_rtt_ms:g} ms between regions",
        "distance": (f"within {c.max_distance_km:g} km of ({c.near.latitude:g}, {c.near.longitude:g})"
                     if c.near else ""),
    }[name]
