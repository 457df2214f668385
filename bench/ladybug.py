"""Ladybug benchmark: a rolling update of many instances across many twin connections, against the
sum of its health-check floors; then traffic through the app's endpoint against one instance
served directly (same run). Prints JSON.

The floor of a rolling update is what its health checks alone cost: each wave of max_parallel
instances must pass `healthy_threshold` probes `interval_s` apart and then stay healthy
min_healthy_time, so floor = waves × (healthy_threshold × interval_s + min_healthy_time). The
ratio rollout / floor is the controller's (and agents', dragonfly's, etcd's) overhead.

    python -m bench.ladybug --quick      # 8 instances on 2 connections × 2 VMs
    python -m bench.ladybug              # 100 instances on 10 connections × 2 VMs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import tempfile
import time
from pathlib import Path

from bench.httpload import LoadResult, load
from cbapi.dragonfly.v1 import workloads_pb2 as wpb
from cbapi.ladybug.v1 import ladybug_pb2 as pb
from cbapi.ladybug.v1 import ladybug_pb2_grpc
from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as tpb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services import tls
from services.rpc.client import channel
from tests import servers
from tests.integration.tumblebug.helpers import cheapest_spec_and_image, connections, settled_at, wait_mcis
from tests.integration.tumblebug.monitored import monitored_tumblebug

APP = Path(__file__).with_name("http_app.py")
INTERVAL_S = 0.5
THRESHOLD = 1
MIN_HEALTHY_S = 0.5


def spec(text: str, count: int, per_vm: int, parallel: int) -> pb.AppSpec:
    return pb.AppSpec(
        artifact=pb.Artifact(command='python3 http_app.py "$HOST" "$PORT" "$TEXT"', files={"http_app.py": APP.read_bytes()}),
        env={"TEXT": text}, ports=[pb.Port(name="http", port=8080)], instances=count, max_per_vm=per_vm,
        health_check=wpb.WorkloadHealthCheck(http_path="/health", interval_s=INTERVAL_S, timeout_s=1,
                                             healthy_threshold=THRESHOLD),
        update=pb.UpdateStrategy(type=pb.ROLLING, max_parallel=parallel, min_healthy_time_s=MIN_HEALTHY_S,
                                 healthy_deadline_s=60, progress_deadline_s=1800))


async def _settled(lb: ladybug_pb2_grpc.LadybugStub, ns: str, revision: int, timeout: float) -> pb.Application:
    deadline = time.monotonic() + timeout
    app = pb.Application()
    while time.monotonic() < deadline:
        app = await lb.GetApplication(pb.GetApplicationRequest(namespace=ns, name="bench"))
        if app.status.stable_revision == revision and app.status.phase == pb.AVAILABLE:
            return app
        await asyncio.sleep(0.2)
    raise TimeoutError(f"revision {revision} not available within {timeout:.0f}s: {app.status}")


def summary(r: LoadResult) -> dict[str, float]:
    return {"requests": r.answered, "failed": r.failed, "rps": round(r.throughput, 1),
            "p50_ms": round(r.percentile(0.5), 2), "p99_ms": round(r.percentile(0.99), 2)}


async def main(conns: int, vms_per_conn: int, count: int, parallel: int, requests: int) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="lbb", dir="/tmp"))
    per_vm = math.ceil(count / (conns * vms_per_conn))
    tls.Authority.ensure(root / "tls").identity("admin").install()  # the suite's mutual TLS
    async with contextlib.AsyncExitStack() as stack:
        etcd = await servers.start_etcd(root / "etcd")
        stack.callback(etcd.stop)
        twin = await servers.start_cloudtwin(root / "twin")
        stack.callback(twin.stop)
        spider = await servers.start_spider(root / "spider", etcd)
        stack.callback(spider.stop)
        tumblebug = await stack.enter_async_context(monitored_tumblebug(root / "mon", spider))
        dragonfly = tumblebug.env["CB_TUMBLEBUG_DRAGONFLY_ADDR"]
        ep_dir = root / "ep"
        ladybug = await servers.start_ladybug(root / "ladybug", etcd, tumblebug, dragonfly,
                                              CB_LADYBUG_ENDPOINT_RUN_DIR=str(ep_dir))
        stack.callback(ladybug.stop)
        stack.callback(_stop_endpoints, ep_dir)
        sch = await stack.enter_async_context(channel(spider.address))
        tch = await stack.enter_async_context(channel(tumblebug.address))
        lch = await stack.enter_async_context(channel(ladybug.address))
        sp, tb = spider_pb2_grpc.SpiderStub(sch), tumblebug_pb2_grpc.TumblebugStub(tch)
        lb = ladybug_pb2_grpc.LadybugStub(lch)
        ns = "bench"
        await tb.CreateNamespace(tpb.CreateNamespaceRequest(namespace=tpb.Namespace(name=ns)))
        made = await connections(sp, twin, min(conns, 100))
        while len(made) < conns:  # more connections than providers: regions of the same ones
            made += await connections(sp, twin, conns - len(made), region_index=1)
        groups = []
        for i, conn in enumerate(made[:conns]):
            spec_id, image = await cheapest_spec_and_image(sp, conn.name)
            groups.append(tpb.DynamicSubgroup(name=f"g{i}", spec_id=f"{conn.name}+{spec_id}", image_id=image,
                                              size=vms_per_conn))
        await tb.CreateMcisDynamic(tpb.CreateMcisDynamicRequest(namespace=ns, name="m", subgroups=groups))
        await wait_mcis(tb, ns, "m", settled_at("Running"), timeout=600)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            vms = (await tb.ListMcisVms(tpb.ListMcisVmsRequest(namespace=ns, mcis="m"))).vms
            if all(v.agent_status == "Healthy" for v in vms):
                break
            await asyncio.sleep(0.5)
        t = time.monotonic()
        await lb.CreateApplication(pb.CreateApplicationRequest(namespace=ns, application=pb.Application(
            name="bench", mcis="m", spec=spec("v1", count, per_vm, parallel))))
        app = await _settled(lb, ns, 1, 1200)
        deploy_s = time.monotonic() - t
        t = time.monotonic()
        await lb.UpdateApplication(pb.UpdateApplicationRequest(namespace=ns, name="bench", application=pb.Application(
            spec=spec("v2", count, per_vm, parallel))))
        await _settled(lb, ns, 2, 1800)
        rollout_s = time.monotonic() - t
        waves = math.ceil(count / parallel)
        floor_s = waves * (THRESHOLD * INTERVAL_S + MIN_HEALTHY_S)
        # Traffic: the endpoint over every instance, against one instance served directly.
        host, port = app.status.endpoint.rsplit(":", 1)
        await asyncio.sleep(3)  # the drained revision-1 instances stop
        one = next(i for i in (await lb.ListInstances(pb.ListInstancesRequest(namespace=ns, name="bench"))).instances
                   if not i.draining)
        await load(one.ip, one.port, requests=200, seconds=5, connections=10)  # warm up
        direct = await load(one.ip, one.port, requests=requests, seconds=30, connections=10)
        through = await load(host, int(port), requests=requests, seconds=30, connections=10)
        await lb.DeleteApplication(pb.DeleteApplicationRequest(namespace=ns, name="bench"))
    return {
        "bench": "ladybug", "instances": count, "connections": conns, "vms": conns * vms_per_conn,
        "max_parallel": parallel, "health": {"interval_s": INTERVAL_S, "healthy_threshold": THRESHOLD,
                                             "min_healthy_time_s": MIN_HEALTHY_S},
        "deploy_s": round(deploy_s, 2),
        "rollout_s": round(rollout_s, 2), "health_floor_s": round(floor_s, 2),
        "rollout_over_floor": round(rollout_s / floor_s, 2),
        "direct": summary(direct), "through_endpoint": summary(through),
        "throughput_ratio": round(through.throughput / direct.throughput, 2) if direct.throughput else None,
        "p99_ratio": round(through.percentile(0.99) / direct.percentile(0.99), 2) if direct.latencies_ms else None,
    }


def _stop_endpoints(ep_dir: Path) -> None:
    """Endpoints outlive ladybug by design; a benchmark leaves nothing running."""
    for pid_file in ep_dir.glob("*/haproxy.pid"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="8 instances on 2 connections × 2 VMs")
    a = p.parse_args()
    if a.quick:
        result = asyncio.run(main(conns=2, vms_per_conn=2, count=8, parallel=2, requests=600))
    else:
        result = asyncio.run(main(conns=10, vms_per_conn=2, count=100, parallel=10, requests=5000))
    print(json.dumps(result, indent=2))
