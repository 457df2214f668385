"""Placement as tumblebug serves it: the candidate table, RecommendSpec, PlanMcis, and a dynamic
create from a placement request.

The table (the catalog as columns plus the stored benchmark results) is rebuilt when the catalog
changed (`Catalog.generation`) or a benchmark result was written here (`BenchmarkStore.generation`),
and otherwise at most every `MEASUREMENTS_TTL_S` (results another replica wrote). Proto messages map
onto the library's dataclasses field by field (0 / empty = not asked, as in proto3); a
`PlacementError` becomes INVALID_ARGUMENT naming its field.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

from cbapi.common.v1 import common_pb2 as common
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from tumblebug.benchmarks import BenchmarkStore
from tumblebug.catalog import Catalog
from tumblebug.placement import (
    Candidate,
    CandidateTable,
    PlacementError,
    Point,
    RecommendRequest,
    Requirements,
    RttMatrix,
    WeighOptions,
    recommend,
)
from tumblebug.placement.plan import Plan, plan
from tumblebug.placement.request import Capacity, Constraints, Group, Objective, PlanRequest

MEASUREMENTS_TTL_S = 10.0
DEFAULT_LIMIT = 10


def invalid(err: PlacementError, prefix: str = "") -> errors.InvalidArgument:
    return errors.InvalidArgument.field(f"{prefix}{err.field}", err.message)


def candidate(s: pb.CatalogSpec) -> Candidate:
    has = s.HasField("location")
    return Candidate(connection=s.connection, provider=s.provider, region=s.region, name=s.name, vcpu=s.vcpu,
                     memory_gib=s.memory_gib, price_per_hour=s.price_per_hour, architecture=s.architecture,
                     latitude=s.location.latitude if has else math.nan,
                     longitude=s.location.longitude if has else math.nan, gpu_count=s.gpu_count)


def point(loc: common.Location) -> Point:
    return Point(loc.latitude, loc.longitude)


def requirements(r: pb.SpecRequirements) -> Requirements:
    return Requirements(vcpu_min=r.vcpu_min, vcpu_max=r.vcpu_max, memory_gib_min=r.memory_gib_min,
                        memory_gib_max=r.memory_gib_max, price_max=r.price_max, providers=tuple(r.providers),
                        regions=tuple(r.regions), connections=tuple(r.connections),
                        architectures=tuple(r.architectures),
                        min_performance=tuple(sorted(r.min_performance.items())), estimates_ok=r.estimates_ok)


def weigh_options(o: pb.WeighOptions) -> WeighOptions:
    return WeighOptions(metric=o.metric or "cpu_multi", points=tuple(point(p) for p in o.points),
                        rtt_from=tuple(o.rtt_from), rtt_points=tuple(point(p) for p in o.rtt_points))


def plan_request(p: pb.PlacementRequest) -> PlanRequest:
    """The library's request; INVALID_ARGUMENT (field under `placement.`) for what cannot be read."""
    try:
        objective = Objective(p.objective or "cost")
    except ValueError:
        raise errors.InvalidArgument.field("placement.objective", "is one of " + ", ".join(o.value for o in Objective)
                                           ) from None
    for i, g in enumerate(p.groups):
        if not g.name:
            raise errors.InvalidArgument.field(f"placement.groups[{i}].name", "is required")
    c = p.constraints
    cons = Constraints(budget_per_hour=c.budget_per_hour, min_providers=c.min_providers, min_regions=c.min_regions,
                       max_provider_share=c.max_provider_share,
                       capacities=tuple(Capacity(k.connection, k.vms, k.vcpus) for k in c.capacities),
                       max_rtt_ms=c.max_rtt_ms, near=point(c.near) if c.HasField("near") else None,
                       max_distance_km=c.max_distance_km)
    if p.time_limit_s < 0:
        raise errors.InvalidArgument.field("placement.time_limit_s", "must not be negative")
    return PlanRequest(groups=tuple(Group(g.name, g.count, requirements(g.requirements),
                                          tuple(g.filters) if g.filters else None) for g in p.groups),
                       objective=objective, constraints=cons, weights=dict(p.weights),
                       options=weigh_options(p.options), exclude=tuple(p.exclude),
                       time_limit_s=p.time_limit_s or 10.0)


def catalog_spec(c: Candidate) -> pb.CatalogSpec:
    out = pb.CatalogSpec(id=c.id, connection=c.connection, provider=c.provider, region=c.region, name=c.name,
                         vcpu=c.vcpu, memory_gib=c.memory_gib, price_per_hour=c.price_per_hour,
                         architecture=c.architecture, gpu_count=c.gpu_count)
    if not math.isnan(c.latitude):
        out.location.latitude, out.location.longitude = c.latitude, c.longitude
    return out


def plan_message(result: Plan) -> pb.PlacementPlan:
    out = pb.PlacementPlan(status=result.status, objective=result.objective or 0.0, gap=result.gap or 0.0,
                           solve_s=result.solve_s, cost_per_hour=result.cost_per_hour,
                           performance=result.performance, performance_estimated=result.performance_estimated,
                           max_rtt_ms=result.max_rtt_ms, rtt_estimated=result.rtt_estimated, message=result.message)
    for p in result.placements:
        out.placements.add(group=p.group, spec=catalog_spec(p.candidate), count=p.count,
                           cost_per_hour=p.count * p.candidate.price_per_hour)
    for b in result.binding:
        out.binding.add(constraint=b.constraint, message=b.message)
    return out


@dataclass
class Snapshot:
    """A built table and the RTT matrix, with what they were built from."""

    table: CandidateTable
    rtt: RttMatrix
    catalog_generation: int
    results_generation: int
    built: float


class PlacementService:
    """RecommendSpec, PlanMcis and the placement part of a dynamic create."""

    def __init__(self, catalog: Catalog, results: BenchmarkStore) -> None:
        self.catalog = catalog
        self.results = results
        self._snap: Snapshot | None = None
        self._lock = asyncio.Lock()

    async def snapshot(self) -> Snapshot:
        """The table, rebuilt after a catalog refresh or a new benchmark result."""
        specs = await self.catalog.all_specs()
        snap = self._snap
        if snap and snap.catalog_generation == self.catalog.generation \
                and snap.results_generation == self.results.generation \
                and time.monotonic() - snap.built < MEASUREMENTS_TTL_S:
            return snap
        async with self._lock:
            if self._snap is not snap and self._snap is not None:
                return self._snap
            cgen, rgen = self.catalog.generation, self.results.generation
            measurements = await self.results.measurements()
            rtt = await self.results.rtt_matrix()
            # A big catalog takes seconds to turn into columns: off the event loop.
            table = await asyncio.to_thread(CandidateTable.build, [candidate(s) for s in specs], measurements)
            self._snap = Snapshot(table, rtt, cgen, rgen, time.monotonic())
            return self._snap

    async def recommend(self, req: pb.RecommendSpecRequest) -> pb.RecommendSpecResponse:
        await self.catalog.include(req.requirements.connections)
        snap = await self.snapshot()
        try:
            rec = recommend(snap.table, RecommendRequest(
                requirements=requirements(req.requirements), weights=dict(req.weights),
                filters=tuple(req.filters) if req.filters else None, options=weigh_options(req.options),
                limit=req.limit or DEFAULT_LIMIT), snap.rtt)
        except PlacementError as err:
            raise invalid(err) from None
        out = pb.RecommendSpecResponse(catalog_size=rec.catalog_size, passed=rec.passed)
        for r in rec.ranked:
            item = out.specs.add(spec=catalog_spec(r.candidate), score=r.score, estimated=r.estimated)
            for s in r.scores:
                item.scores.add(weigher=s.weigher, weight=s.weight, score=s.score,
                                figures={k: v for k, v in s.figures.items() if math.isfinite(v)},
                                estimated=s.estimated)
        return out

    async def plan(self, placement: pb.PlacementRequest) -> pb.PlacementPlan:
        return plan_message(await self.solve(placement))

    async def solve(self, placement: pb.PlacementRequest) -> Plan:
        req = plan_request(placement)
        await self.catalog.include({c for g in placement.groups for c in g.requirements.connections})
        snap = await self.snapshot()
        try:
            # The solver holds the GIL in C for up to the time limit: off the event loop.
            return await asyncio.to_thread(plan, snap.table, req, snap.rtt)
        except PlacementError as err:
            raise invalid(err, "placement.") from None

    async def subgroups(self, placement: pb.PlacementRequest) -> list[pb.DynamicSubgroup]:
        """The dynamic subgroups a placement request makes: one per (group, spec), named after the
        group (`{group}` when it went to one spec, else `{group}-{k}`). FAILED_PRECONDITION when no
        plan exists, with the solver's explanation."""
        result = await self.solve(placement)
        if not result.feasible:
            raise errors.FailedPrecondition(f"no placement: {result.status}: {result.message}")
        images = await self.catalog.all_images()
        groups = {g.name: g for g in placement.groups}
        per_group: dict[str, int] = {}
        for p in result.placements:
            per_group[p.group] = per_group.get(p.group, 0) + 1
        seen: dict[str, int] = {}
        out = []
        for p in result.placements:
            g = groups[p.group]
            seen[p.group] = seen.get(p.group, 0) + 1
            name = p.group if per_group[p.group] == 1 else f"{p.group}-{seen[p.group]}"
            image = pick_image(images, p.candidate, g.image)
            if image is None:
                raise errors.FailedPrecondition(
                    f"placement.groups: connection {p.candidate.connection!r} has no {p.candidate.architecture} "
                    f"image matching {g.image or 'any'!r}")
            out.append(pb.DynamicSubgroup(name=name, spec_id=p.candidate.id, image_id=image, size=p.count,
                                          root_disk_gib=g.root_disk_gib))
        return out


def pick_image(images: Iterable[pb.CatalogImage], spec: Candidate, wanted: str) -> str | None:
    """A catalog image ID on the spec's connection and of its architecture: named `wanted`, else whose
    OS contains the word `wanted`, else the first (empty `wanted`)."""
    mine = [i for i in images if i.connection == spec.connection and i.architecture == spec.architecture]
    for i in mine:
        if i.name == wanted:
            return i.id
    for i in mine:
        if not wanted or wanted.lower() in i.os.lower() or wanted.lower() in i.name.lower():
            return i.id
    return None
