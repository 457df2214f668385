"""The VictoriaMetrics backend: the shared engine every replica writes to and reads from.

Writes are Influx line protocol (`POST /write`): one line per sample, the group as the
measurement, the VM as labels `ns`, `mcis`, `vm`, so VictoriaMetrics names each series
`{group}_{field}`, e.g. `cpu_utilization_percent{ns="demo",mcis="web",vm="web-1"}` — the
names Grafana (a Prometheus data source pointed at VictoriaMetrics) shows. Reads: raw
points through `/api/v1/export`, buckets through PromQL `*_over_time` on `/api/v1/query_range`."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import httpx

from dragonfly.storage import Query, Result, Sample
from services import errors
from services import processes as procs

BINARY = "victoria-metrics"
LABELS = ("ns", "mcis", "vm")
_OVER_TIME = {"min": "min_over_time", "max": "max_over_time", "avg": "avg_over_time", "last": "last_over_time"}
# PromQL evaluates at T over (T - step, T]; our buckets are [start, start + step) at whole milliseconds.
_MS = 0.001


def process(run_dir: Path, port: int, binary: str = BINARY) -> procs.Proc:
    """A VictoriaMetrics server on 127.0.0.1:`port` keeping its data under `run_dir`.
    `-search.latencyOffset=0s`: a point is readable as soon as it is stored (the default
    hides the last 30 s, which would hide every fresh point from dragonfly's queries)."""
    data = run_dir / "victoria-metrics-data"
    data.mkdir(parents=True, exist_ok=True)
    return procs.Proc("victoria-metrics", [binary, f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}",
                                           "-search.latencyOffset=0s", "-retentionPeriod=31d", "-loggerLevel=WARN"],
                      run_dir / "logs" / "victoria-metrics.log", env=procs.go_env())


def line(sample: Sample) -> str:
    """One sample in Influx line protocol (non-finite values cannot be written, so they are left out)."""
    ns, mcis, vm = sample.vm.split(".", 2)
    fields = ",".join(f"{k}={v!r}" for k, v in sample.values.items() if math.isfinite(v))
    return f"{sample.group},ns={ns},mcis={mcis},vm={vm} {fields} {round(sample.time * 1000)}" if fields else ""


def selector(q: Query) -> str:
    """The series of a query: its group's metrics, and the VM labels its prefix names."""
    parts = q.vm_prefix.rstrip(".").split(".")
    matchers = [f'__name__=~"{q.group}_.+"'] + [f'{k}="{v}"' for k, v in zip(LABELS, parts, strict=False)]
    return "{" + ",".join(matchers) + "}"


class VictoriaMetricsBackend:
    """Samples in a VictoriaMetrics server at `url` (e.g. http://127.0.0.1:8428)."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self.url, timeout=timeout_s)

    async def _call(self, method: str, path: str, **kw: object) -> httpx.Response:
        try:
            resp = await self._client.request(method, path, **kw)  # type: ignore[arg-type]
        except httpx.HTTPError as err:
            raise errors.Unavailable(f"VictoriaMetrics at {self.url} is unavailable: {err}") from err
        if resp.status_code >= 500:
            raise errors.Unavailable(f"VictoriaMetrics {path} answered {resp.status_code}: {resp.text[:200]}")
        if not resp.is_success:
            raise errors.Internal(f"VictoriaMetrics {path} answered {resp.status_code}: {resp.text[:200]}")
        return resp

    async def write(self, samples: Sequence[Sample]) -> None:
        body = "\n".join(text for text in map(line, samples) if text)
        if body:
            await self._call("POST", "/write", params={"precision": "ms"}, content=body.encode())

    async def flush(self) -> None:
        """Make what was written searchable now (VictoriaMetrics does it within a second by itself)."""
        await self._call("GET", "/internal/force_flush")

    async def query(self, q: Query) -> list[Result]:
        series = await (self._raw(q) if q.step_s <= 0 else self._buckets(q))
        return [Result(vm, q.group, sorted(points.items())) for vm, points in sorted(series.items())]

    async def _raw(self, q: Query) -> dict[str, dict[float, dict[str, float]]]:
        resp = await self._call("POST", "/api/v1/export", data={"match[]": selector(q), "start": f"{q.start:.3f}",
                                                                  "end": f"{q.end:.3f}"})
        out: dict[str, dict[float, dict[str, float]]] = {}
        for text in resp.text.splitlines():
            row = json.loads(text)
            vm, field = self._names(q, row["metric"])
            points = out.setdefault(vm, {})
            for t_ms, v in zip(row["timestamps"], row["values"], strict=True):
                points.setdefault(t_ms / 1000, {})[field] = float(v)
        return out

    async def _buckets(self, q: Query) -> dict[str, dict[float, dict[str, float]]]:
        step = q.step_s
        first = q.start - q.start % step
        promql = f"{_OVER_TIME[q.aggregate]}({selector(q)}[{step:g}s]) keep_metric_names"
        # Evaluated at each bucket's last millisecond, the window is exactly that bucket; nocache,
        # since a backlog may add points to a range that was read before.
        resp = await self._call("POST", "/api/v1/query_range", data={
            "query": promql, "start": f"{first + step - _MS:.3f}", "end": f"{q.end + step - _MS:.3f}",
            "step": f"{step:g}s", "nocache": "1"})
        out: dict[str, dict[float, dict[str, float]]] = {}
        for row in resp.json()["data"]["result"]:
            vm, field = self._names(q, row["metric"])
            points = out.setdefault(vm, {})
            for t, v in row["values"]:
                start = round(float(t) + _MS - step, 3)
                if start + step > q.start and start <= q.end:
                    points.setdefault(start, {})[field] = float(v)
        return out

    @staticmethod
    def _names(q: Query, metric: dict[str, str]) -> tuple[str, str]:
        vm = ".".join(metric.get(k, "") for k in LABELS)
        return vm, metric["__name__"][len(q.group) + 1:]

    async def close(self) -> None:
        await self._client.aclose()
