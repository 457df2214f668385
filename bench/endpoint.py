"""Ladybug's endpoint: throughput and p99 through HAProxy against one instance served directly
(same run, same load generator), and what a backend change costs without and with a reload.

`python bench/endpoint.py [--quick]` prints JSON. Loopback only, bounded in requests and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.httpload import LoadResult, load
from ladybug.endpoint import Backend, Endpoint, EndpointSettings, HealthCheck
from services.processes import Proc, free_port, port_in_use


def summary(r: LoadResult) -> dict[str, float]:
    return {"requests": r.answered, "failed": r.failed, "rps": round(r.throughput),
            "p50_ms": round(r.percentile(0.50), 2), "p99_ms": round(r.percentile(0.99), 2)}


async def _up(ep: Endpoint) -> bool:
    return (await ep.stats())["i0"].status == "UP"


async def _until_true(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("the instance did not come up")
        await asyncio.sleep(0.05)


async def main(requests: int, connections: int) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="epb", dir="/tmp"))
    ip, port = "127.0.0.2", free_port("127.0.0.2")
    app = Proc("app", [sys.executable, "-m", "bench.http_app", ip, str(port), "i0"], root / "app.log").start()
    spare = [Backend(f"x{i}", "127.0.0.3", 9000 + i) for i in range(40)]
    settings = EndpointSettings(run_dir=str(root / "ep"), slots=16)
    try:
        await _until_true(lambda: asyncio.to_thread(port_in_use, port, ip))
        t = time.perf_counter()
        ep = await Endpoint.ensure("bench", free_port(), HealthCheck("/health"), settings)
        start_ms = (time.perf_counter() - t) * 1000
        me = Backend("i0", ip, port)
        await ep.set_backends([me])
        await _until_true(lambda: _up(ep))
        await load(ip, port, requests=200, seconds=5, connections=connections)  # warm up
        direct = await load(ip, port, requests=requests, seconds=30, connections=connections)
        through = await load(ep.host, ep.port, requests=requests, seconds=30, connections=connections)
        # A change within the slots: add and remove an instance (runtime API only).
        changes = 20
        t = time.perf_counter()
        for i in range(changes):
            await ep.set_backends([me, spare[i % 8]])
            await ep.set_backends([me])
        change_ms = (time.perf_counter() - t) * 1000 / (2 * changes)
        worker = await ep.worker_pid()
        # More instances than slots: one seamless reload doubles them.
        t = time.perf_counter()
        await ep.set_backends([me, *spare[:20]])
        grow_ms = (time.perf_counter() - t) * 1000
        reloaded = await ep.worker_pid() != worker
        await ep.stop()
    finally:
        app.stop()
    return {
        "bench": "endpoint", "connections": connections,
        "direct": summary(direct), "through_endpoint": summary(through),
        "throughput_ratio": round(through.throughput / direct.throughput, 2) if direct.throughput else None,
        "endpoint_start_ms": round(start_ms, 1),
        "change_without_reload_ms": round(change_ms, 2),
        "change_with_reload_ms": round(grow_ms, 1), "reloaded": reloaded, "reloads": ep.reloads,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="a few hundred requests")
    p.add_argument("--connections", type=int, default=8)
    a = p.parse_args()
    print(json.dumps(asyncio.run(main(600 if a.quick else 5000, a.connections)), indent=2))
