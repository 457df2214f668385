"""Gateway benchmark; prints one JSON document.

The same read, GetConnection (one etcd read in spider), measured in the same run:
1. over gRPC straight to spider (the baseline),
2. as `GET /spider/v1/connections/{name}` through the REST gateway (authentication with a cached
   key, transcoding, JSON, the gRPC call, access log),
3. `GET /healthz` of the gateway (HTTP alone, no backend), to show the HTTP server's share.

Same concurrency for each, one client process; everything on loopback in a temporary directory,
stopped at the end. Usage: python bench/gateway.py [--quick] [--workers N] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.spider import closed_loop
from bench.stack import Stack
from cbapi.spider.v1 import spider_pb2 as pb
from services import processes as procs
from services.gateway import auth, launch

KEY = "bench-key"


async def run(workers: int, seconds: float) -> dict[str, object]:
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
                "CB_LOG_LEVEL": "WARNING"})
            try:
                await launch.start(gateway, port)
                limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30,
                                             headers={"Authorization": f"Bearer {KEY}"}) as http:
                    request = pb.GetConnectionRequest(name=name)

                    async def over_grpc() -> None:
                        await stack.stub.GetConnection(request)

                    async def over_gateway() -> None:
                        response = await http.get(f"/spider/v1/connections/{name}")
                        if response.status_code != 200:
                            raise RuntimeError(f"gateway answered {response.status_code}: {response.text}")

                    async def healthz() -> None:
                        await http.get("/healthz")

                    # Warm both paths (connections, the key cache) before measuring.
                    await closed_loop(over_grpc, workers, 0.5)
                    await closed_loop(over_gateway, workers, 0.5)
                    grpc_direct = await closed_loop(over_grpc, workers, seconds)
                    through_gateway = await closed_loop(over_gateway, workers, seconds)
                    http_only = await closed_loop(healthz, workers, seconds)
            finally:
                gateway.stop()
    return {
        "call": "GetConnection / GET /spider/v1/connections/{name}",
        "workers": workers, "seconds": seconds,
        "grpc_direct": grpc_direct, "through_gateway": through_gateway, "gateway_healthz_only": http_only,
        "ratio": {
            "rps_gateway_over_grpc": round(through_gateway["rps"] / grpc_direct["rps"], 3),
            "p50_gateway_over_grpc": round(through_gateway["p50_ms"] / grpc_direct["p50_ms"], 2),
            "p99_gateway_over_grpc": round(through_gateway["p99_ms"] / grpc_direct["p99_ms"], 2),
        },
        "note": "one machine (2 cores) runs etcd, spider, the gateway and this client; compare the ratio, "
                "not the absolute numbers",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    parser.add_argument("--workers", type=int, default=8, help="concurrent callers")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per measurement")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else args.seconds
    result = asyncio.run(run(args.workers, seconds))
    print(json.dumps({"benchmark": "gateway", "quick": args.quick, **result}, indent=2))


if __name__ == "__main__":
    main()
