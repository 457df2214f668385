"""The application endpoint against a real HAProxy and real HTTP instances on 127.x addresses."""

from __future__ import annotations

import asyncio
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from bench.httpload import load
from ladybug.endpoint import Backend, Endpoint, EndpointSettings, HealthCheck
from services.processes import Proc, free_port, port_in_use


class Instances:
    """Application instances started by a test, each its own process on its own 127.x IP."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, Proc] = {}
        self.backends: dict[str, Backend] = {}

    async def start(self, name: str, ip: str, *extra: str) -> Backend:
        port = free_port(ip)
        proc = Proc(name, [sys.executable, "-m", "bench.http_app", ip, str(port), name, *extra],
                    self.root / f"{name}.log").start()
        self.procs[name] = proc
        await until(lambda: _open(ip, port), f"{name} on {ip}:{port}")
        self.backends[name] = Backend(name, ip, port)
        return self.backends[name]

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop(5)


async def _open(ip: str, port: int) -> bool:
    return await asyncio.to_thread(port_in_use, port, ip)


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


async def all_up(ep: Endpoint, names: list[str], timeout: float = 10.0) -> None:
    async def up() -> bool:
        stats = await ep.stats()
        return all(stats.get(n) is not None and stats[n].status == "UP" for n in names)
    await until(up, f"{names} UP", timeout)


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ep", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def instances(root: Path) -> Iterator[Instances]:
    inst = Instances(root)
    yield inst
    inst.stop()


def settings(root: Path, **kw: object) -> EndpointSettings:
    return EndpointSettings(run_dir=str(root / "ep"), **kw)  # type: ignore[arg-type]


@pytest_asyncio.fixture
async def endpoint(root: Path) -> AsyncIterator[Endpoint]:
    ep = await Endpoint.ensure("web", free_port(), HealthCheck("/health"), settings(root))
    yield ep
    await ep.stop()


async def test_traffic_balances_across_backends(endpoint: Endpoint, instances: Instances) -> None:
    backends = [await instances.start(f"b{i}", f"127.0.0.{i + 2}") for i in range(3)]
    await endpoint.set_backends(backends)
    await all_up(endpoint, ["b0", "b1", "b2"])
    result = await load(endpoint.host, endpoint.port, requests=300, seconds=20, connections=4)
    assert result.failed == 0 and result.answered == 300
    assert set(result.bodies) == {"b0", "b1", "b2"}
    assert all(80 <= n <= 120 for n in result.bodies.values()), result.bodies
    # Weights: b0 gets three times the share of b1; b2 none (weight 0) but stays in service.
    await endpoint.set_backends([Backend("b0", backends[0].ip, backends[0].port, weight=30),
                                 Backend("b1", backends[1].ip, backends[1].port, weight=10),
                                 Backend("b2", backends[2].ip, backends[2].port, weight=0)])
    result = await load(endpoint.host, endpoint.port, requests=400, seconds=20, connections=4)
    assert result.failed == 0 and result.bodies["b2"] == 0
    assert 270 <= result.bodies["b0"] <= 330 and 70 <= result.bodies["b1"] <= 130, result.bodies


async def test_killed_backend_is_dropped_and_requests_keep_succeeding(
        endpoint: Endpoint, instances: Instances) -> None:
    backends = [await instances.start(f"k{i}", f"127.0.0.{i + 2}") for i in range(3)]
    await endpoint.set_backends(backends)
    await all_up(endpoint, ["k0", "k1", "k2"])
    # A steady load of ~4 x 100 requests/s, bounded to 6 s and 2,400 requests.
    steady = asyncio.create_task(load(endpoint.host, endpoint.port, requests=2400, seconds=6,
                                      connections=4, pause=0.01))
    await asyncio.sleep(1.5)
    instances.procs["k1"].kill()

    async def dropped() -> bool:
        return (await endpoint.stats())["k1"].status.startswith("DOWN")
    # Two failed checks 0.5 s apart, and the requests' own errors trigger faster checks.
    await until(dropped, "killed instance marked DOWN", timeout=3.0)
    result = await steady
    assert result.answered > 500
    assert result.failed == 0, (result.failures, result.statuses)
    stats = await endpoint.stats()
    assert stats["k0"].requests > 0 and stats["k2"].requests > 0


async def test_drain_stops_new_requests_and_reports_when_drained(
        endpoint: Endpoint, instances: Instances) -> None:
    a = await instances.start("d0", "127.0.0.2")
    b = await instances.start("d1", "127.0.0.3")
    await endpoint.set_backends([a, b])
    await all_up(endpoint, ["d0", "d1"])
    # Slow requests in flight on both instances, then d0 drains.
    slow = asyncio.create_task(load(endpoint.host, endpoint.port, requests=4, seconds=10, connections=4,
                                    path="/sleep/1500"))

    async def both_busy() -> bool:
        s = await endpoint.stats()
        return s["d0"].current_sessions > 0 and s["d1"].current_sessions > 0
    await until(both_busy, "slow requests on both instances")
    await endpoint.set_backends([Backend("d0", a.ip, a.port, drain=True), b])
    assert not await endpoint.drained("d0")  # its slow requests are still running
    before = (await endpoint.stats())["d0"].requests
    result = await load(endpoint.host, endpoint.port, requests=100, seconds=10, connections=2)
    assert result.failed == 0 and result.bodies == {"d1": 100}
    assert await endpoint.wait_drained(["d0"], timeout=5)
    assert (await slow).failed == 0  # the draining instance finished what it had
    after = await endpoint.stats()
    assert after["d0"].status == "DRAIN" and after["d0"].requests - before <= 2  # only the slow ones


async def test_backend_changes_need_no_reload(root: Path, instances: Instances) -> None:
    ep = await Endpoint.ensure("noreload", free_port(), HealthCheck("/health"), settings(root, slots=2))
    try:
        a = await instances.start("n0", "127.0.0.2")
        b = await instances.start("n1", "127.0.0.3")
        c = await instances.start("n2", "127.0.0.4")
        master, worker = ep.pid, await ep.worker_pid()
        # Add, reweight, drain, replace, move: all through the runtime API.
        await ep.set_backends([a])
        await ep.set_backends([a, b])
        await ep.set_backends([Backend("n0", a.ip, a.port, weight=5), Backend("n1", b.ip, b.port, drain=True)])
        await ep.set_backends([a, c])  # n1 out, n2 in its slot
        await ep.set_backends([Backend("n0", c.ip, c.port), c])  # n0 moved to another address
        await ep.set_backends([a, c])
        assert (ep.pid, await ep.worker_pid(), ep.reloads) == (master, worker, 0)
        await all_up(ep, ["n0", "n2"])
        result = await load(ep.host, ep.port, requests=100, seconds=10, connections=2)
        assert result.failed == 0 and set(result.bodies) == {"n0", "n2"}
        # Three instances in two slots: the slots double by one seamless reload.
        await ep.set_backends([a, b, c])
        assert ep.pid == master and await ep.worker_pid() != worker and ep.reloads == 1
        await all_up(ep, ["n0", "n1", "n2"])
        result = await load(ep.host, ep.port, requests=150, seconds=10, connections=2)
        assert result.failed == 0 and set(result.bodies) == {"n0", "n1", "n2"}
    finally:
        await ep.stop()


async def test_stats_count_5xx_per_backend(endpoint: Endpoint, instances: Instances) -> None:
    bad = await instances.start("s0", "127.0.0.2", "--fail-every", "5")
    good = await instances.start("s1", "127.0.0.3")
    await endpoint.set_backends([bad, good])
    await all_up(endpoint, ["s0", "s1"])
    result = await load(endpoint.host, endpoint.port, requests=200, seconds=20, connections=2)
    stats = await endpoint.stats()
    assert stats["s0"].requests + stats["s1"].requests == 200
    assert stats["s0"].responses_5xx == stats["s0"].requests // 5 > 0
    assert stats["s1"].responses_5xx == 0
    assert result.statuses[500] == stats["s0"].responses_5xx


async def test_restarted_controller_adopts_the_running_endpoint(root: Path, instances: Instances) -> None:
    port = free_port()
    first = await Endpoint.ensure("adopt", port, HealthCheck("/health"), settings(root))
    a = await instances.start("a0", "127.0.0.2")
    b = await instances.start("a1", "127.0.0.3")
    await first.set_backends([a, b])
    await all_up(first, ["a0", "a1"])
    sock = first.files.admin_socket
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    await load(first.host, port, requests=20, seconds=10, connections=1)
    # A new controller (the old one's objects are gone) finds HAProxy running and takes it over.
    second = await Endpoint.ensure("adopt", port, HealthCheck("/health"), settings(root))
    try:
        assert second.pid == first.pid and second.process.proc is None
        stats = await second.stats()
        assert stats["a0"].requests + stats["a1"].requests == 20
        await second.set_backends([b])
        result = await load(second.host, port, requests=20, seconds=10, connections=1)
        assert result.bodies == {"a1": 20}
    finally:
        await second.stop()
    assert not first.process.alive() and not port_in_use(port)
    first.process.proc = None  # already reaped through the second handle's stop


async def test_an_endpoint_deep_in_the_file_system_starts_reloads_and_is_adopted(
        root: Path, instances: Instances) -> None:
    # The run dir of a deployment (or a test's temporary directory) and a namespace-app name of
    # 63 characters: the admin socket's absolute path is longer than a Unix socket address holds.
    deep = settings(root, slots=1).model_copy(update={"run_dir": str(root / ("d" * 60) / ("e" * 60))})
    app = "a" * 63
    port = free_port()
    first = await Endpoint.ensure(app, port, HealthCheck("/health"), deep)
    assert len(str(first.files.admin_socket)) > 107
    a = await instances.start("l0", "127.0.0.2")
    b = await instances.start("l1", "127.0.0.3")
    await first.set_backends([a, b])  # two instances in one slot: a seamless reload
    assert first.reloads == 1
    await all_up(first, ["l0", "l1"])
    second = await Endpoint.ensure(app, port, HealthCheck("/health"), deep)
    try:
        assert second.pid == first.pid and second.process.proc is None
        assert stat.S_IMODE(second.files.admin_socket.stat().st_mode) == 0o600
        await second.set_backends([b])
        result = await load(second.host, port, requests=20, seconds=10, connections=1)
        assert result.bodies == {"l1": 20}
    finally:
        await second.stop()
    first.process.proc = None  # already reaped through the second handle's stop


async def test_a_new_instance_gets_no_request_before_its_checks_pass(
        endpoint: Endpoint, instances: Instances) -> None:
    live = await instances.start("u0", "127.0.0.2")
    await endpoint.set_backends([live])
    await all_up(endpoint, ["u0"])
    # Nothing listens there: leaving maintenance must not count it UP before a check.
    dead = Backend("u1", "127.0.0.9", free_port("127.0.0.9"))
    await endpoint.set_backends([live, dead])
    assert (await endpoint.stats())["u1"].status.startswith("DOWN")
    result = await load(endpoint.host, endpoint.port, requests=50, seconds=10, connections=2)
    assert result.failed == 0 and result.bodies == {"u0": 50}
    assert (await endpoint.stats())["u1"].connect_errors == 0
