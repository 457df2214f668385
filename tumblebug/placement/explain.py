"""Why a placement request has no plan: find what binds by relaxing one constraint at a time.

For each constraint family the request asks (budget, spread over providers / regions, share on one
provider, connection capacities, widest RTT, distance), the program is solved without it. If that
has a plan, the family binds, and a second solve says what the other constraints allow instead:
the cheapest cost, the most providers / regions, the least share, how many VMs fit, the least
widest RTT or distance (by bisection over the values that occur). If no single relaxation helps,
the answer says the constraints conflict only together.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from tumblebug.placement.candidates import CandidateTable
from tumblebug.placement.filters import FILTERS
from tumblebug.placement.latency import RttMatrix, haversine_km
from tumblebug.placement.model import Model, build, describe, present, relaxed
from tumblebug.placement.plan import Binding
from tumblebug.placement.request import Constraints, PlanRequest


def no_candidates(table: CandidateTable, req: PlanRequest, model: Model) -> str:
    """Words for the groups that no candidate can serve at all ("" when every group has some)."""
    c = req.constraints
    out = []
    for g, grp in enumerate(req.groups):
        if np.any(model.cols.group == g):
            continue
        tests: list[tuple[str, np.ndarray]] = [("a known price", table.price > 0)]
        if req.exclude:
            out_rows = np.zeros(len(table), bool)
            out_rows[[table.row_of[s] for s in req.exclude if s in table.row_of]] = True
            tests.append(("not excluded", ~out_rows))
        for f in FILTERS.choose(FILTERS.names() if grp.filters is None else grp.filters, "filters"):
            m = f.mask(table, grp.requirements)
            if m is not None:
                tests.append((f.describe(grp.requirements), m))
        if c.near is not None and c.max_distance_km:
            km = haversine_km(c.near.latitude, c.near.longitude, table.site_lat, table.site_lon)[table.site]
            tests.append((describe(c, "distance"), km <= c.max_distance_km))
        alone = [name for name, m in tests if not m.any()]
        if alone:
            why = "; ".join(f"{name} leaves none" for name in alone)
        else:
            why = "together they leave none (alone: " + ", ".join(
                f"{name} leaves {int(m.sum())}" for name, m in tests) + ")"
        out.append(f"group {grp.name}: no spec of the {len(table)} in the catalog qualifies: {why}")
    return "; ".join(out)


class _Explainer:
    def __init__(self, table: CandidateTable, req: PlanRequest, rtt: RttMatrix) -> None:
        self.table, self.req, self.rtt = table, req, rtt
        self.deadline = time.perf_counter() + req.time_limit_s

    def solve(self, cons: Constraints, objective: Callable[[Model], None] | None = None, *, need_y: bool = False,
              need_z: bool = False, need_t: bool = False, at_most: bool = False
              ) -> tuple[Model, np.ndarray | None, float]:
        """(model, solution or None, objective value) under `cons`."""
        model = build(self.table, self.req, self.rtt, cons, need_y=need_y, need_z=need_z, need_t=need_t,
                      at_most=at_most)
        if objective is not None:
            objective(model)
        res = model.solve(max(self.deadline - time.perf_counter(), 0.05), 1e-6)
        ok = res.status == 0 and res.x is not None
        return model, (np.rint(res.x) if ok else None), float(res.fun) if ok else 0.0

    def feasible(self, cons: Constraints) -> bool:
        return self.solve(cons)[1] is not None

    def least(self, values: np.ndarray, with_limit: Callable[[float], Constraints]) -> float | None:
        """The least of the sorted `values` under which there is a plan (bisection)."""
        lo, hi, found = 0, len(values) - 1, None
        while lo <= hi and time.perf_counter() < self.deadline:
            mid = (lo + hi) // 2
            if self.feasible(with_limit(float(values[mid]))):
                found, hi = float(values[mid]), mid - 1
            else:
                lo = mid + 1
        return found

    def instead(self, name: str, cons: Constraints) -> str:
        """What the other constraints allow for the family `name` (`cons` has it relaxed)."""
        t, req, c = self.table, self.req, self.req.constraints
        n = sum(g.count for g in req.groups)

        def set_cost(vals: Callable[[Model], np.ndarray]) -> Callable[[Model], None]:
            def apply(m: Model) -> None:
                m.cost[:] = vals(m)
            return apply

        if name == "budget":
            _, x, cost = self.solve(cons, set_cost(lambda m: np.concatenate(
                [t.price[m.cols.row], np.zeros(m.nvars - len(m.cols.row))])))
            return f"the cheapest plan costs {cost:.2f}/h" if x is not None else ""
        if name in ("providers", "regions"):
            key = "y" if name == "providers" else "z"

            def count_used(m: Model) -> np.ndarray:
                v = np.zeros(m.nvars)
                v[getattr(m, key)] = -1.0
                return v
            _, x, fun = self.solve(cons, set_cost(count_used), need_y=key == "y", need_z=key == "z")
            used = round(-fun)
            return f"at most {used} {name if used != 1 else name[:-1]} can be used" if x is not None else ""
        if name == "share":
            def most(m: Model) -> np.ndarray:
                v = np.zeros(m.nvars)
                v[m.t] = 1.0
                return v
            _, x, fun = self.solve(cons, set_cost(most), need_t=True)
            return f"the least is {round(fun)} of {n} VMs ({round(fun) / n:.0%}) on one provider" if x is not None else ""
        if name == "capacity":
            def placed(m: Model) -> np.ndarray:
                v = np.zeros(m.nvars)
                v[: len(m.cols.row)] = -1.0
                return v
            _, x, fun = self.solve(c, set_cost(placed), at_most=True)
            return f"only {round(-fun)} of {n} VMs fit" if x is not None else ""
        if name == "rtt":
            m = build(t, req, self.rtt, cons)
            sites = np.unique(t.site[m.cols.row])
            ms, _ = self.rtt.between([t.sites.names[s] for s in sites], t.site_lat[sites], t.site_lon[sites])
            values = np.unique(ms[ms > c.max_rtt_ms])
            least = self.least(values, lambda v: _with(c, max_rtt_ms=v))
            return f"the least widest RTT is {least:.1f} ms" if least is not None else ""
        if name == "distance" and c.near is not None:
            km = haversine_km(c.near.latitude, c.near.longitude, t.site_lat, t.site_lon)
            values = np.unique(km[km > c.max_distance_km])
            least = self.least(values, lambda v: _with(c, max_distance_km=v + 1e-6))
            return f"the nearest plan reaches {least:.0f} km" if least is not None else ""
        return ""


def _with(c: Constraints, **changes: float) -> Constraints:
    from dataclasses import replace

    return replace(c, **changes)  # type: ignore[arg-type]


def explain_infeasible(table: CandidateTable, req: PlanRequest, rtt: RttMatrix) -> tuple[list[Binding], str]:
    """The constraints that bind alone, each with what the others allow, and one sentence."""
    ex = _Explainer(table, req, rtt)
    c = req.constraints
    families = present(c)
    binding = []
    for name in families:
        if time.perf_counter() >= ex.deadline:
            break
        cons = relaxed(c, name)
        if not ex.feasible(cons):
            continue
        others = [describe(c, o) for o in families if o != name]
        keeps = f" that keeps {', '.join(others)}" if others else ""
        allowed = ex.instead(name, cons)
        if name == "budget" and allowed:
            allowed = allowed.replace("the cheapest plan", f"the cheapest plan{keeps}")
        elif allowed and others:
            allowed = f"with {', '.join(others)}, {allowed}"
        binding.append(Binding(name, f"{describe(c, name)}: {allowed or 'without it a plan exists'}"))
    if binding:
        return binding, "infeasible; " + "; or ".join(b.message for b in binding)
    if not families:
        return [], "infeasible: the VMs to keep do not fit the groups"
    return [], ("infeasible: no single constraint binds alone — without any one of "
                + ", ".join(describe(c, f) for f in families) + " there is still no plan; relax several")
