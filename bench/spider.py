"""Spider benchmarks; prints one JSON document.

1. GetVmStatus through the full stack (spider + etcd + mock driver + CloudTwin)
   against a bare grpc.aio echo server, same client, same concurrency, same run.
2. VM creates per second with zero emulator latency.
3. 1,000 VMs across 10 connections with 1 s emulator create latency: wall time
   against the 1 s floor.

Everything runs on loopback in a temporary directory and stops by itself.
Usage: python bench/spider.py [--quick]
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Stack
from cbapi.spider.v1 import spider_pb2 as pb
from services import processes as procs
from services.rpc.client import channel


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def closed_loop(call: Callable[[], Awaitable[object]], workers: int, seconds: float) -> dict[str, float]:
    """`workers` callers back to back for `seconds`: throughput and latency percentiles."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed = time.perf_counter() - start
    return {"calls": len(latencies), "rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(percentile(latencies, 0.5) * 1e3, 3), "p99_ms": round(percentile(latencies, 0.99) * 1e3, 3)}


async def bench_status(root: Path, workers: int, seconds: float) -> dict[str, object]:
    echo_port = procs.free_port()
    procs.own_authority(root / "tls")
    echo = procs.Proc("echo", [sys.executable, str(Path(__file__).with_name("echo_server.py")), str(echo_port)],
                      root / "echo.log")
    await procs.start_tcp(echo, echo_port)
    try:
        async with channel(f"127.0.0.1:{echo_port}") as ch:
            rpc = ch.unary_unary("/bench.Echo/Echo")
            payload = pb.GetResourceRequest(connection="c", name="vm-00000").SerializeToString()
            await rpc(payload)
            baseline = await closed_loop(lambda: rpc(payload), workers, seconds)
    finally:
        echo.stop()
    async with Stack(root / "status", {"CB_CLOUDTWIN_PROVIDERS": "1", "CB_CLOUDTWIN_BOOT_LATENCY": "0"}) as stack:
        # Lift the connection's protective rate limit: this measures the stack, not the limiter.
        conns = await stack.connections(1, pb.ConnectionLimits(rate_per_second=1e6, burst=100_000, max_concurrency=1024))
        await stack.create_vms(conns, 1, 1)
        req = pb.GetResourceRequest(connection=conns[0][0], name="vm-00000")
        await stack.stub.GetVmStatus(req)
        full = await closed_loop(lambda: stack.stub.GetVmStatus(req), workers, seconds)
    return {"workers": workers, "seconds": seconds, "spider_full_stack": full, "bare_echo": baseline,
            "throughput_ratio": round(full["rps"] / baseline["rps"], 3),
            "p50_ratio": round(full["p50_ms"] / max(baseline["p50_ms"], 1e-9), 2)}


async def bench_creates(root: Path, vms: int, connections: int) -> dict[str, object]:
    async with Stack(root / "zero", {"CB_CLOUDTWIN_PROVIDERS": "4", "CB_CLOUDTWIN_CREATE_LATENCY": "0"}) as stack:
        conns = await stack.connections(connections)
        wall = await stack.create_vms(conns, vms, 64)
    return {"vms": vms, "connections": connections, "client_concurrency": 64, "seconds": round(wall, 3),
            "vms_per_second": round(vms / wall, 1)}


async def bench_latency(root: Path, vms: int, connections: int, latency: float) -> dict[str, object]:
    env = {"CB_CLOUDTWIN_PROVIDERS": "4", "CB_CLOUDTWIN_CREATE_LATENCY": str(latency)}
    async with Stack(root / "latency", env) as stack:
        conns = await stack.connections(connections)
        wall = await stack.create_vms(conns, vms, vms)
    return {"vms": vms, "connections": connections, "emulator_create_latency_s": latency,
            "wall_seconds": round(wall, 3), "floor_seconds": latency, "ratio_to_floor": round(wall / latency, 2),
            "serial_would_take_s": vms * latency}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cb-bench-") as tmp:
        root = Path(tmp)
        if args.quick:
            result = {"get_vm_status": await bench_status(root, 4, 1.0),
                      "create_zero_latency": await bench_creates(root, 40, 2),
                      "create_with_latency": await bench_latency(root, 50, 5, 0.5)}
        else:
            result = {"get_vm_status": await bench_status(root, 32, 5.0),
                      "create_zero_latency": await bench_creates(root, 1000, 10),
                      "create_with_latency": await bench_latency(root, 1000, 10, 1.0)}
    print(json.dumps({"benchmark": "spider", "quick": args.quick, **result}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
