"""Placement benchmarks; prints one JSON document.

1. Spec recommendation (4 filters, 4 weighers, top 10) over synthetic catalogs of 10k, 100k and
   1M specs: p50/p99 per request, against a same-run baseline — a plain sort of the catalog by
   price (numpy argsort of the price column, and Python's sorted over the spec objects).
2. A group plan: 100 VMs over 10k candidates with spread (≥ 3 providers, ≥ 4 regions, ≤ 50% on one
   provider) and a budget 5% above the cheapest spread plan: status, gap and solve time, against
   the same-run baseline of taking the 100 cheapest by a sort (which ignores the constraints).

Pure computation; nothing is started. Usage: python bench/placement.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spider.cloudtwin.geography import CITIES
from tumblebug.placement import (
    Candidate,
    CandidateTable,
    Measurement,
    Point,
    RecommendRequest,
    Requirements,
    WeighOptions,
    recommend,
)
from tumblebug.placement.plan import plan, violations
from tumblebug.placement.request import Constraints, Group, Objective, PlanRequest

PROVIDERS = 20
REGIONS_PER_PROVIDER = 6


def catalog(n: int, seed: int = 1) -> tuple[list[Candidate], list[Measurement]]:
    """`n` specs over 20 providers × 6 regions (one connection each); a fifth of them measured."""
    rng = np.random.default_rng(seed)
    sites = [(f"prov{p}", CITIES[(p * 7 + r * 5) % len(CITIES)]) for p in range(PROVIDERS)
             for r in range(REGIONS_PER_PROVIDER)]
    site = rng.integers(len(sites), size=n)
    vcpu = rng.choice([1, 2, 4, 8, 16, 32], size=n)
    gib = vcpu * rng.choice([2.0, 4.0, 8.0], size=n)
    price = np.round(vcpu * rng.uniform(0.015, 0.045, size=n), 4)
    arm = rng.random(n) < 0.2
    cands = []
    for i in range(n):
        prov, city = sites[site[i]]
        cands.append(Candidate(f"{prov}-{city.region}", prov, city.region, f"s{i}", int(vcpu[i]), float(gib[i]),
                               float(price[i]), "arm64" if arm[i] else "x86_64", city.latitude, city.longitude))
    measured = rng.random(n) < 0.2
    perf = vcpu * rng.uniform(0.6e6, 1.4e6, size=n)
    meas = [Measurement(cands[i].id, "cpu_multi", float(perf[i]), samples=3, spread=float(perf[i]) * 0.02)
            for i in np.flatnonzero(measured)]
    return cands, meas


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.array(samples) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def timed(fn: object, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t)
    return out


def bench_recommend(n: int, reps: int) -> dict[str, object]:
    t = time.perf_counter()
    cands, meas = catalog(n)
    made = time.perf_counter() - t
    t = time.perf_counter()
    table = CandidateTable.build(cands, meas)
    built = time.perf_counter() - t
    req = RecommendRequest(
        Requirements(vcpu_min=2, memory_gib_min=8, price_max=1.0, architectures=("x86_64",)),
        {"cost": 1.0, "performance": 1.0, "location": 0.5, "latency": 0.5},
        options=WeighOptions(points=(Point(37.57, 126.98), Point(50.11, 8.68)), rtt_from=("prov0-kr-seoul",),
                             rtt_points=(Point(40.7, -74.0),)),
        limit=10)
    recommend(table, req)  # warm
    rec = timed(lambda: recommend(table, req), reps)
    argsort = timed(lambda: np.argsort(table.price, kind="stable"), reps)
    py_reps = max(3, reps // 5)
    pysort = timed(lambda: sorted(cands, key=lambda c: c.price_per_hour), py_reps)
    r = percentiles(rec)
    return {"specs": n, "reps": reps, "make_catalog_s": round(made, 2), "build_table_s": round(built, 2),
            "recommend": r, "passed_filters": recommend(table, req).passed,
            "baseline_numpy_argsort_price": percentiles(argsort),
            "baseline_python_sorted_price": percentiles(pysort),
            "ratio_recommend_p50_to_argsort_p50": round(r["p50_ms"] / percentiles(argsort)["p50_ms"], 2),
            "ratio_recommend_p50_to_sorted_p50": round(r["p50_ms"] / percentiles(pysort)["p50_ms"], 3)}


def bench_plan(reps: int) -> dict[str, object]:
    cands, meas = catalog(10_000, seed=2)
    table = CandidateTable.build(cands, meas)
    spread = Constraints(min_providers=3, min_regions=4, max_provider_share=0.5)
    groups = (Group("web", 70, Requirements(vcpu_min=2, vcpu_max=8)), Group("db", 30, Requirements(memory_gib_min=32)))
    cheapest = plan(table, PlanRequest(groups, Objective.COST, spread))
    assert cheapest.objective is not None
    budget = round(cheapest.objective * 1.05, 2)
    results = {}
    for objective in (Objective.COST, Objective.PERFORMANCE, Objective.PERFORMANCE_PER_COST):
        req = PlanRequest(groups, objective, Constraints(budget_per_hour=budget, min_providers=3, min_regions=4,
                                                         max_provider_share=0.5), time_limit_s=30)
        got = plan(table, req)
        seconds = timed(lambda req=req: plan(table, req), reps)
        results[objective.value] = {
            "status": got.status, "objective": round(got.objective or 0.0, 4), "gap": got.gap,
            "cost_per_hour": round(got.cost_per_hour, 4), "providers": len({p.candidate.provider for p in got.placements}),
            "regions": len({p.candidate.site for p in got.placements}), "violations": violations(table, req, got),
            **percentiles(seconds)}
    greedy = timed(lambda: np.argsort(table.price)[:100], reps)
    return {"candidates": len(table), "vms": 100, "budget_per_hour": budget, "constraints": "≥3 providers, ≥4 regions, "
            "≤50% on one provider, budget", "plans": results,
            "baseline_sort_100_cheapest": percentiles(greedy)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="10k and 50k specs, fewer repetitions")
    args = ap.parse_args()
    sizes = [10_000, 50_000] if args.quick else [10_000, 100_000, 1_000_000]
    reps = {10_000: 50, 50_000: 20, 100_000: 40, 1_000_000: 25}
    if args.quick:
        reps = {k: max(5, v // 5) for k, v in reps.items()}
    out = {"recommend": [bench_recommend(n, reps[n]) for n in sizes], "group_plan": bench_plan(3 if args.quick else 7)}
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
