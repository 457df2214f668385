"""Benchmark results: run the agents' benchmarks on an MCIS, store them per spec and per region pair.

Records (one etcd key each, binary protobuf):
    /cb/tumblebug/benchmarks/specs/{spec_id}/{metric}   BenchmarkStat  (samples pooled exactly:
                                                        count, mean, Σ(x − mean)²)
    /cb/tumblebug/benchmarks/rtt/{site a}|{site b}      RttStat        (a ≤ b, sites `provider/region`)

Placement's weighers read these as `Measurement`s and an `RttMatrix` (`measurements`, `rtt_matrix`),
so results feed the ranking without anyone copying them anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from cbapi.common.v1 import common_pb2 as common
from cbapi.dragonfly.v1 import dragonfly_pb2 as dpb
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.store import Store
from tumblebug.monitoring import Monitoring
from tumblebug.placement import Measurement, RttMatrix, RttMeasurement
from tumblebug.placement.estimates import METRICS

log = logging.getLogger("tumblebug.benchmarks")

PREFIX = "/cb/tumblebug/benchmarks/"
SPECS = PREFIX + "specs/"
RTT = PREFIX + "rtt/"
# The agent's result field of each placement metric.
FIELDS = {"cpu_single": "cpu_single_ops_per_s", "cpu_multi": "cpu_multi_ops_per_s",
          "memory_read": "memory_read_bytes_per_s", "memory_write": "memory_write_bytes_per_s",
          "disk_read": "disk_read_bytes_per_s", "disk_write": "disk_write_bytes_per_s"}
RTT_PORT = 22  # a port real VMs answer on; twins model the RTT from their regions' places
DEFAULT_BUDGET_S = 1.0


def spec_key(spec_id: str, metric: str) -> str:
    return f"{SPECS}{spec_id}/{metric}"


def rtt_key(a: str, b: str) -> str:
    a, b = sorted((a, b))
    return f"{RTT}{a}|{b}"


@dataclass(frozen=True)
class Pooled:
    """Samples as count, mean and Σ(x − mean)² (Chan et al.: merging two such is exact)."""

    n: int
    mean: float
    m2: float

    @staticmethod
    def of(values: Sequence[float]) -> Pooled:
        n = len(values)
        mean = sum(values) / n
        return Pooled(n, mean, sum((v - mean) ** 2 for v in values))

    def merge(self, other: Pooled) -> Pooled:
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        return Pooled(n, self.mean + delta * other.n / n, self.m2 + other.m2 + delta * delta * self.n * other.n / n)

    @property
    def spread(self) -> float:
        return math.sqrt(self.m2 / self.n) if self.n else 0.0


def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


class BenchmarkStore:
    """The stored results; `generation` changes whenever this process wrote one (placement then
    rebuilds its table)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.generation = 0

    async def _upsert(self, key: str, cls: type[Message], change: Callable[[Message | None], Message]) -> Message:
        for _ in range(20):
            cur = await self.store.get(key, cls)
            new = change(cur.value if cur else None)
            try:
                if cur is None:
                    await self.store.create(key, new)
                else:
                    await self.store.update(key, new, cur.mod_revision)
                self.generation += 1
                return new
            except (errors.Aborted, errors.AlreadyExists):
                await asyncio.sleep(0.005)
        raise errors.Aborted(f"benchmark record {key} is being changed by many writers at once; retry")

    async def add_spec(self, spec_id: str, provider: str, region: str, metric: str, values: Sequence[float],
                       when: float) -> pb.BenchmarkStat:
        """Pool new samples of one spec's metric into its record."""
        batch = Pooled.of(values)

        def change(old: Message | None) -> Message:
            assert old is None or isinstance(old, pb.BenchmarkStat)
            prev = Pooled(old.samples, old.mean, old.m2) if old else Pooled(0, 0.0, 0.0)
            p = prev.merge(batch)
            return pb.BenchmarkStat(spec_id=spec_id, metric=metric, mean=p.mean, samples=p.n, spread=p.spread,
                                    m2=p.m2, measured_at=timestamp(when), provider=provider, region=region)

        out = await self._upsert(spec_key(spec_id, metric), pb.BenchmarkStat, change)
        assert isinstance(out, pb.BenchmarkStat)
        return out

    async def add_rtt(self, a: str, b: str, values: Sequence[float], when: float) -> pb.RttStat:
        """Pool new RTT samples between two sites."""
        a, b = sorted((a, b))
        batch = Pooled.of(values)

        def change(old: Message | None) -> Message:
            assert old is None or isinstance(old, pb.RttStat)
            prev = Pooled(old.samples, old.rtt_ms, old.m2) if old else Pooled(0, 0.0, 0.0)
            p = prev.merge(batch)
            return pb.RttStat(a=a, b=b, rtt_ms=p.mean, samples=p.n, spread=p.spread, m2=p.m2,
                              measured_at=timestamp(when))

        out = await self._upsert(rtt_key(a, b), pb.RttStat, change)
        assert isinstance(out, pb.RttStat)
        return out

    async def specs(self) -> list[pb.BenchmarkStat]:
        return [v.value for v in await self.store.list_all(SPECS, pb.BenchmarkStat)]

    async def rtts(self) -> list[pb.RttStat]:
        return [v.value for v in await self.store.list_all(RTT, pb.RttStat)]

    async def measurements(self) -> list[Measurement]:
        """Every stored result as placement reads it."""
        return [Measurement(s.spec_id, s.metric, s.mean, int(s.samples), s.spread, s.measured_at.ToNanoseconds() / 1e9)
                for s in await self.specs()]

    async def rtt_matrix(self) -> RttMatrix:
        return RttMatrix(RttMeasurement(r.a, r.b, r.rtt_ms, int(r.samples), r.measured_at.ToNanoseconds() / 1e9)
                         for r in await self.rtts())

    async def list(self, req: pb.ListBenchmarksRequest) -> pb.ListBenchmarksResponse:
        """Results filtered by spec, connection, provider, region, metric; the RTT matrix on page one."""
        if req.page_size < 0:
            raise errors.InvalidArgument.field("page_size", "must not be negative")
        if req.metric and req.metric not in METRICS:
            raise errors.InvalidArgument.field("metric", f"is one of {', '.join(METRICS)}")
        try:
            start = int(req.page_token or 0)
        except ValueError:
            raise errors.InvalidArgument.field("page_token", "is not a token this server issued") from None
        chosen = [s for s in await self.specs()
                  if (not req.spec_id or s.spec_id == req.spec_id)
                  and (not req.connection or s.spec_id.partition("+")[0] == req.connection)
                  and (not req.provider or s.provider == req.provider)
                  and (not req.region or s.region == req.region)
                  and (not req.metric or s.metric == req.metric)]
        end = start + min(req.page_size or 100, 1000)
        out = pb.ListBenchmarksResponse(results=chosen[start:end],
                                        next_page_token=str(end) if end < len(chosen) else "")
        if start == 0:
            out.rtt.extend(await self.rtts())
        return out


def site(provider: str, region: str) -> str:
    return f"{provider}/{region}"


def values_of(result: dpb.BenchmarkResult) -> dict[str, float]:
    """metric → value of an agent's result (benchmarks that failed or were not asked are left out)."""
    return {m: float(getattr(result, f)) for m, f in FIELDS.items() if getattr(result, f) > 0}


class Benchmarker:
    """Runs `BenchmarkMcis`: every running VM's benchmarks through dragonfly, and the RTT between one
    VM of each of the MCIS's sites and one of every other site."""

    def __init__(self, results: BenchmarkStore, monitoring: Monitoring,
                 get_mcis: Callable[[str, str, bool], Awaitable[pb.Mcis]]) -> None:
        self.results = results
        self.monitoring = monitoring
        self.get_mcis = get_mcis

    async def run(self, req: pb.BenchmarkMcisRequest) -> pb.BenchmarkMcisResponse:
        mon = self.monitoring
        if req.budget_s < 0 or req.budget_s > 30:
            raise errors.InvalidArgument.field("budget_s", "is 0 (1 s) to 30 seconds")
        for i, name in enumerate(req.benchmarks):
            if name not in FIELDS and name != "rtt":
                raise errors.InvalidArgument.field(f"benchmarks[{i}]", f"{name!r} is not one of "
                                                                       f"{', '.join([*FIELDS, 'rtt'])}")
        mcis = await self.get_mcis(req.namespace, req.name, True)
        spec_of = {sg.name: f"{sg.connection}+{sg.csp_spec}" for sg in mcis.subgroups}
        running = [v for v in mcis.vms if v.status == common.RUNNING and not v.removing]
        if not running:
            raise errors.FailedPrecondition(f"MCIS {req.name!r} has no running VM to benchmark")
        # One VM per site answers for RTT: to one VM of every other site.
        rep: dict[str, pb.McisVm] = {}
        for v in running:
            rep.setdefault(site(v.provider, v.region), v)
        ip_site = {(v.private_ip or v.public_ip): s for s, v in rep.items()}
        names = [n for n in req.benchmarks if n != "rtt"]
        want_rtt = (not req.benchmarks or "rtt" in req.benchmarks) and len(rep) > 1
        budget = req.budget_s or DEFAULT_BUDGET_S
        stub = mon._need()

        async def one(v: pb.McisVm) -> tuple[pb.McisVm, dpb.BenchmarkResult | errors.DomainError]:
            here = site(v.provider, v.region)
            targets = [f"{ip}:{RTT_PORT}" for ip, s in ip_site.items() if s != here] \
                if want_rtt and rep.get(here) is v else []
            asked = [*(names or FIELDS), *(["rtt"] if targets else [])]
            try:
                return v, await mon.call(stub.RunBenchmark, dpb.RunBenchmarkRequest(
                    ns=req.namespace, mcis=req.name, vm=v.name, benchmarks=asked, rtt_targets=targets,
                    budget_s=budget), timeout=budget + 15)
            except errors.DomainError as err:
                return v, err

        done = await asyncio.gather(*(one(v) for v in running))
        out = pb.BenchmarkMcisResponse()
        per_spec: dict[tuple[str, str], list[float]] = {}
        where: dict[str, tuple[str, str]] = {}
        per_pair: dict[tuple[str, str], list[float]] = {}
        for v, res in done:
            spec_id = spec_of.get(v.subgroup, "")
            item = out.vms.add(vm=v.name, spec_id=spec_id)
            if isinstance(res, errors.DomainError):
                item.error = res.message
                continue
            vals = values_of(res)
            item.values.update(vals)
            if res.errors:
                item.error = "; ".join(f"{k}: {e}" for k, e in sorted(res.errors.items()))
            where[spec_id] = (v.provider, v.region)
            for metric, value in vals.items():
                per_spec.setdefault((spec_id, metric), []).append(value)
            here = site(v.provider, v.region)
            for r in res.rtt:
                other = ip_site.get(r.target.rpartition(":")[0])
                if other and r.rtt_ms > 0 and not r.error:
                    a, b = sorted((here, other))
                    per_pair.setdefault((a, b), []).append(r.rtt_ms)
        now = time.time()
        for (spec_id, metric), values in per_spec.items():
            provider, region = where[spec_id]
            await self.results.add_spec(spec_id, provider, region, metric, values, now)
        for (a, b), values in per_pair.items():
            out.rtt.append(await self.results.add_rtt(a, b, values, now))
        log.info("benchmarked", extra={"ns": req.namespace, "mcis": req.name, "vms": len(running),
                                       "results": len(per_spec), "pairs": len(per_pair)})
        return out
