"""Gateway benchmark; prints one JSON document.

The same read, GetConnection (one etcd read in spider), measured in the same run:
1. over gRPC straight to spider (the baseline),
2. as `GET /spider/v1/connections/{name}` through the REST gateway (authentication with a cached
   key, transcoding, JSON, the gRPC call, access log),
3. `GET /healthz` of the gateway (HTTP alone, no backend), to show the HTTP server's share.

Same concurrency for each, one client process; everything on loopback in a temporary directory,
stopped at the end. Beside throughput, each leg reports the CPU time every process spent per call
(`cpu_us_per_call`): on a shared machine throughput follows the neighbours' load, CPU per call
much less. `--gateway-workers N` runs the gateway as N processes on one port (CB_GATEWAY_WORKERS).
The three legs take turns (`--rounds` slices of `--seconds / rounds` each, summed per leg), so
a ratio compares legs that shared the same neighbours' load.
Usage: python bench/gateway.py [--quick] [--workers N] [--seconds S] [--gateway-workers N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.spider import closed_loop
from bench.stack import Stack
from cbapi.spider.v1 import spider_pb2 as pb
from services import processes as procs
from services.gateway import auth, launch

KEY = "bench-key"


class KeepAliveClient:
    """GET over persistent HTTP/1.1 connections, one per concurrent caller, with the least client
    work there is (as the gRPC stub's is small): httpx spent 3 to 4 times the gateway's own CPU per
    request, so on one shared machine it measured mostly itself. The httpx leg stays for reference."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.idle:
            conn = self.idle.pop()
            try:
                return await self._exchange(conn, path)
            except (asyncio.IncompleteReadError, ConnectionError):
                # The server closed it while idle (uvicorn's keep-alive timeout, 5 s: as long as
                # a leg of this benchmark): one more try on a new connection.
                conn[1].close()
        return await self._exchange(await asyncio.open_connection("127.0.0.1", self.port), path)

    async def _exchange(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], path: str) -> tuple[int, bytes]:
        reader, writer = conn
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{self.extra}\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await reader.readexactly(length)
        self.idle.append(conn)
        return status, body

    async def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


class CpuMeter:
    """CPU seconds (user + system) of named processes, a process's children counted with it
    (the gateway's workers) unless it is named in `alone`."""

    def __init__(self, pids: dict[str, int], alone: frozenset[str] = frozenset()) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.alone = alone  # counted without their children (this client: the whole stack is its children)

    def _now(self) -> dict[str, float]:
        out = {}
        for name, proc in self.procs.items():
            total = 0.0
            for p in [proc, *([] if name in self.alone else proc.children(recursive=True))]:
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                except psutil.NoSuchProcess:
                    continue
            out[name] = total
        return out

    async def measure(self, leg: object, calls_of: str = "calls") -> dict[str, object]:
        """Run the coroutine `leg` (a closed_loop) and add CPU µs per call of each process to its result."""
        before = self._now()
        result: dict[str, object] = await leg  # type: ignore[misc]
        after = self._now()
        calls = max(1, int(result[calls_of]))  # type: ignore[call-overload]
        per = {name: round((after[name] - before[name]) / calls * 1e6, 1) for name in after}
        result["cpu_us_per_call"] = {**per, "total": round(sum(per.values()), 1)}
        return result


class Rounds:
    """Legs measured in turns, `rounds` short slices each, summed per leg. On a machine whose
    neighbours' load drifts, legs measured one after the other for seconds each compared different
    machines (the same-run ratio swung from 0.3 to 1.1 between runs); in turns they share it."""

    def __init__(self, meter: CpuMeter, workers: int) -> None:
        self.meter = meter
        self.workers = workers

    async def run(self, legs: dict[str, Callable[[], Awaitable[object]]], seconds: float,
                  rounds: int) -> dict[str, dict[str, object]]:
        calls = dict.fromkeys(legs, 0)
        elapsed = dict.fromkeys(legs, 0.0)
        p50: dict[str, list[float]] = {name: [] for name in legs}
        p99: dict[str, list[float]] = {name: [] for name in legs}
        cpu: dict[str, dict[str, float]] = {name: {} for name in legs}
        for _ in range(rounds):
            for name, call in legs.items():
                before = self.meter._now()
                r = await closed_loop(call, self.workers, seconds / rounds)
                after = self.meter._now()
                calls[name] += int(r["calls"])
                elapsed[name] += r["calls"] / r["rps"] if r["rps"] else seconds / rounds
                p50[name].append(r["p50_ms"])
                p99[name].append(r["p99_ms"])
                for proc in after:
                    cpu[name][proc] = cpu[name].get(proc, 0.0) + after[proc] - before[proc]
        out: dict[str, dict[str, object]] = {}
        for name in legs:
            n = max(1, calls[name])
            per = {proc: round(t / n * 1e6, 1) for proc, t in cpu[name].items()}
            out[name] = {"calls": calls[name], "rps": round(calls[name] / max(elapsed[name], 1e-9), 1),
                         "p50_ms": round(statistics.median(p50[name]), 3),
                         "p99_ms": round(statistics.median(p99[name]), 3), "rounds": rounds,
                         "cpu_us_per_call": {**per, "total": round(sum(per.values()), 1)}}
        return out


async def run(workers: int, seconds: float, gateway_workers: int = 1, rounds: int = 5) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="cb-bench-gateway-") as tmp:
        root = Path(tmp)
        async with Stack(root, {"CB_CLOUDTWIN_PROVIDERS": "1"}) as stack:
            name = (await stack.connections(1))[0][0]
            keys = root / "gateway-keys"
            auth.write_keys_file(keys, {"bench": auth.hash_key(KEY)})
            port = procs.free_port()
            gateway = launch.process(root, {
                "CB_GATEWAY_PORT": str(port), "CB_GATEWAY_KEYS_FILE": str(keys), "CB_GATEWAY_SERVICES": "spider",
                "CB_SPIDER_ADDR": f"127.0.0.1:{stack.spider_port}", "CB_GATEWAY_RATE_PER_SECOND": "0",
                # The stack's etcd for stored API keys (as deployed), not a default address nobody serves.
                "CB_ETCD_ENDPOINTS": f"127.0.0.1:{stack.etcd_port}",
                "CB_LOG_LEVEL": "WARNING", "CB_GATEWAY_WORKERS": str(gateway_workers)})
            try:
                await launch.start(gateway, port)
                limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30,
                                             headers={"Authorization": f"Bearer {KEY}"}) as http:
                    request = pb.GetConnectionRequest(name=name)

                    async def over_grpc() -> None:
                        await stack.stub.GetConnection(request)

                    lean = KeepAliveClient(port, {"Authorization": f"Bearer {KEY}"})

                    async def over_gateway() -> None:
                        status, body = await lean.get(f"/spider/v1/connections/{name}")
                        if status != 200:
                            raise RuntimeError(f"gateway answered {status}: {body[:300]!r}")

                    async def over_gateway_httpx() -> None:
                        response = await http.get(f"/spider/v1/connections/{name}")
                        if response.status_code != 200:
                            raise RuntimeError(f"gateway answered {response.status_code}: {response.text}")

                    async def healthz() -> None:
                        await lean.get("/healthz")

                    # Warm both paths (connections, the key cache) before measuring.
                    await closed_loop(over_grpc, workers, 0.5)
                    await closed_loop(over_gateway, workers, 0.5)
                    assert gateway.popen is not None
                    pids = {p.name: p.popen.pid for p in stack.procs if p.popen is not None}
                    meter = CpuMeter({**pids, "gateway": gateway.popen.pid, "client": os.getpid()}, frozenset({"client"}))
                    legs = await Rounds(meter, workers).run(
                        {"grpc": over_grpc, "gateway": over_gateway, "healthz": healthz}, seconds, rounds)
                    grpc_direct, through_gateway, http_only = legs["grpc"], legs["gateway"], legs["healthz"]
                    await closed_loop(over_gateway_httpx, workers, 0.5)
                    with_httpx = await meter.measure(closed_loop(over_gateway_httpx, workers, seconds))
                    await lean.close()
            finally:
                gateway.stop()
    return {
        "call": "GetConnection / GET /spider/v1/connections/{name}",
        "workers": workers, "gateway_workers": gateway_workers, "seconds": seconds, "rounds": rounds,
        "load_average": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
        "grpc_direct": grpc_direct, "through_gateway": through_gateway, "gateway_healthz_only": http_only,
        "through_gateway_httpx_client": with_httpx,
        "ratio": {
            "rps_gateway_over_grpc": round(through_gateway["rps"] / grpc_direct["rps"], 3),
            "p50_gateway_over_grpc": round(through_gateway["p50_ms"] / grpc_direct["p50_ms"], 2),
            "p99_gateway_over_grpc": round(through_gateway["p99_ms"] / grpc_direct["p99_ms"], 2),
            "cpu_per_call_gateway_over_grpc": round(through_gateway["cpu_us_per_call"]["total"]  # type: ignore[index]
                                                    / grpc_direct["cpu_us_per_call"]["total"], 2),  # type: ignore[index]
        },
        "note": "one machine (2 cores, shared) runs etcd, spider, the gateway and this client; compare the "
                "ratios, not the absolute numbers. through_gateway and healthz use a bare keep-alive HTTP/1.1 "
                "client; through_gateway_httpx_client is the same call with httpx",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    parser.add_argument("--workers", type=int, default=8, help="concurrent callers")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--gateway-workers", type=int, default=1, help="gateway processes on the one port")
    parser.add_argument("--rounds", type=int, default=5,
                        help="the gRPC, gateway and healthz legs take turns, this many slices each")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else args.seconds
    rounds = min(args.rounds, 2) if args.quick else max(1, args.rounds)
    result = asyncio.run(run(args.workers, seconds, args.gateway_workers, rounds))
    print(json.dumps({"benchmark": "gateway", "quick": args.quick, **result}, indent=2))


if __name__ == "__main__":
    main()
