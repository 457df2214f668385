"""One storage suite, every backend: what dragonfly writes reads back the same from `memory`
and from a real VictoriaMetrics process (skipped, saying why, when it is not installed)."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import pytest_asyncio

from dragonfly.storage import Backend, Query, Sample
from dragonfly.storage import victoriametrics as vmetrics
from dragonfly.storage.memory import MemoryBackend
from services import processes as procs

Settle = Callable[[], Awaitable[None]]


@pytest.fixture(scope="module")
def victoria_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real VictoriaMetrics process for this module (requested only by the victoriametrics cases)."""
    if shutil.which(vmetrics.BINARY) is None:
        pytest.skip(f"{vmetrics.BINARY} is not installed (Debian: apt-get install victoria-metrics; `make setup`)")
    port = procs.free_port()
    proc = vmetrics.process(tmp_path_factory.mktemp("victoria"), port).start()
    try:
        deadline = time.monotonic() + 30
        while not procs.port_in_use(port):
            assert proc.alive() and time.monotonic() < deadline, f"VictoriaMetrics did not start: {proc.tail()}"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest_asyncio.fixture(params=["memory", "victoriametrics"], loop_scope="session")
async def store(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Backend, Settle]]:
    if request.param == "memory":
        memory = MemoryBackend()

        async def nothing() -> None:
            return None

        yield memory, nothing
        await memory.close()
        return
    backend = vmetrics.VictoriaMetricsBackend(request.getfixturevalue("victoria_url"))
    yield backend, backend.flush
    await backend.close()


def names() -> tuple[str, float]:
    """A namespace of its own per test, and a base time on a whole hour an hour ago."""
    now = time.time()
    return f"ns-{uuid.uuid4().hex[:8]}", now - now % 3600 - 3600


async def test_raw_points_read_back_exactly(store: tuple[Backend, Settle]) -> None:
    backend, settle = store
    ns, t0 = names()
    vm = f"{ns}.web.vm-1"
    written = [Sample(vm, "cpu", t0 + i * 1.5, {"utilization_percent": i * 0.5, "idle_percent": 100 - i * 0.5})
               for i in range(40)]
    await backend.write(written)
    await settle()
    got = await backend.query(Query(vm, "cpu", t0 + 3, t0 + 30))
    assert [r.vm for r in got] == [vm] and got[0].group == "cpu"
    assert got[0].points == [(s.time, s.values) for s in written if t0 + 3 <= s.time <= t0 + 30]
    assert await backend.query(Query(f"{ns}.web.nobody", "cpu", t0, t0 + 60)) == []


async def test_an_mcis_prefix_reads_its_vms_and_one_group_only(store: tuple[Backend, Settle]) -> None:
    backend, settle = store
    ns, t0 = names()
    await backend.write([Sample(f"{ns}.web.vm-2", "cpu", t0, {"utilization_percent": 2.0}),
                         Sample(f"{ns}.web.vm-1", "cpu", t0, {"utilization_percent": 1.0}),
                         Sample(f"{ns}.web.vm-1", "cpufreq", t0, {"current_mhz": 2400.0}),
                         Sample(f"{ns}.db.vm-1", "cpu", t0, {"utilization_percent": 9.0})])
    await settle()
    got = await backend.query(Query(f"{ns}.web.", "cpu", t0 - 60, t0 + 60))
    assert [(r.vm, r.points) for r in got] == [(f"{ns}.web.vm-1", [(t0, {"utilization_percent": 1.0})]),
                                               (f"{ns}.web.vm-2", [(t0, {"utilization_percent": 2.0})])]
    freq = await backend.query(Query(f"{ns}.web.vm-1", "cpufreq", t0 - 60, t0 + 60))
    assert freq[0].points == [(t0, {"current_mhz": 2400.0})]


@pytest.mark.parametrize(("aggregate", "expected"), [("min", 0.0), ("max", 59.0), ("avg", 29.5), ("last", 59.0)])
async def test_minute_buckets_aggregate(store: tuple[Backend, Settle], aggregate: str, expected: float) -> None:
    backend, settle = store
    ns, t0 = names()
    vm = f"{ns}.web.vm-1"
    # Three whole minutes of one point a second: 0..59 in each, written newest first.
    await backend.write([Sample(vm, "memory", t0 + i, {"used_bytes": float(i % 60)}) for i in reversed(range(180))])
    await settle()
    got = await backend.query(Query(vm, "memory", t0, t0 + 179, step_s=60, aggregate=aggregate))
    assert got[0].points == [(t0 + m * 60, {"used_bytes": expected}) for m in range(3)]
    # A range that starts inside a bucket still reports that bucket by its start.
    part = await backend.query(Query(vm, "memory", t0 + 90, t0 + 179, step_s=60, aggregate="max"))
    assert [t for t, _ in part[0].points] == [t0 + 60, t0 + 120]


async def test_last_is_the_newest_in_time_when_points_arrive_out_of_order(store: tuple[Backend, Settle]) -> None:
    backend, settle = store
    ns, t0 = names()
    vm = f"{ns}.web.vm-1"
    await backend.write([Sample(vm, "disk", t0 + 50, {"used_bytes": 5.0})])
    await backend.write([Sample(vm, "disk", t0 + 10, {"used_bytes": 1.0})])
    await settle()
    got = await backend.query(Query(vm, "disk", t0, t0 + 3599, step_s=3600, aggregate="last"))
    assert got[0].points == [(t0, {"used_bytes": 5.0})]
    raw = await backend.query(Query(vm, "disk", t0, t0 + 3599))
    assert [t for t, _ in raw[0].points] == [t0 + 10, t0 + 50]


async def test_victoriametrics_away_is_unavailable() -> None:
    from services import errors

    backend = vmetrics.VictoriaMetricsBackend(f"http://127.0.0.1:{procs.free_port()}", timeout_s=2)
    try:
        with pytest.raises(errors.Unavailable, match=r"VictoriaMetrics at .* is unavailable"):
            await backend.write([Sample("a.b.c", "cpu", time.time(), {"utilization_percent": 1.0})])
    finally:
        await backend.close()


def test_influx_lines_name_the_series_as_grafana_sees_them() -> None:
    text = vmetrics.line(Sample("demo.web.web-1", "cpu", 1.5, {"utilization_percent": 7.0, "x": float("nan")}))
    assert text == "cpu,ns=demo,mcis=web,vm=web-1 utilization_percent=7.0 1500"
    assert vmetrics.selector(Query("demo.web.", "cpu", 0, 1)) == '{__name__=~"cpu_.+",ns="demo",mcis="web"}'
