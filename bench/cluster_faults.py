"""Faults on the clustered topology: time to recover and requests refused per fault.

On services/launcher/cluster.py's topology (3 etcd, 3 NATS, 2 replicas per service, one gateway),
a dynamic MCIS is created on CloudTwin through the gateway with agents on its VMs; meanwhile
probes call the gateway without pause (spider, tumblebug, dragonfly through tumblebug, ladybug),
and one etcd member, one NATS node and one replica of each service are SIGKILLed in turn, each
followed by `hold` seconds. Per fault: probes refused, and time to recover (from the kill to the
last refused probe of its window; 0 when none was refused). At the end: the MCIS's status, and the
points every agent sampled against the points stored (they must be equal: no point lost).

Prints one JSON document. `--quick` is what the test runs (tests/integration/cluster).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from nats.aio.client import Client

from cbapi.dragonfly.v1 import dragonfly_pb2 as dpb
from cbapi.dragonfly.v1 import dragonfly_pb2_grpc as dpb_grpc
from dragonfly.protocol.subjects import VmId
from services import natsauth
from services import processes as procs
from services.bus import servers
from services.gateway.auth import admin_key
from services.launcher import cluster, demo
from services.rpc.client import channel

NS = "faults"
MCIS = "web"
FAST = {
    "tumblebug": {"CB_TUMBLEBUG_LEADER_TTL_S": "2", "CB_TUMBLEBUG_POLL_INTERVAL_S": "0.2", "CB_LOG_LEVEL": "WARNING"},
    "ladybug": {"CB_LADYBUG_LEADER_TTL_S": "2", "CB_LOG_LEVEL": "WARNING"},
    "spider": {"CB_LOG_LEVEL": "WARNING"},
    "dragonfly": {"CB_LOG_LEVEL": "WARNING"},
    # VMs take a few seconds to boot, so the create is still under way at the first faults.
    "cloudtwin": {"CB_CLOUDTWIN_BOOT_LATENCY": "4", "CB_CLOUDTWIN_PROVIDERS": "2", "CB_LOG_LEVEL": "WARNING"},
}
PROBES = ["/spider/v1/connections", f"/tumblebug/v1/namespaces/{NS}/mcis/{MCIS}",
          f"/tumblebug/v1/namespaces/{NS}/mcis/{MCIS}/metrics/cpu?duration=1m", f"/ladybug/v1/namespaces/{NS}/apps"]


@dataclass
class Probes:
    """Gateway calls without pause; every answer's time and whether it was refused."""

    http: httpx.AsyncClient
    answers: list[tuple[float, bool, str]] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        i = 0
        while not stop.is_set():
            path = PROBES[i % len(PROBES)]
            i += 1
            try:
                status = (await self.http.get(path)).status_code
                refused, what = status >= 500, f"{status} {path}"
            except httpx.HTTPError as err:
                refused, what = True, f"{type(err).__name__} {path}"
            self.answers.append((time.monotonic(), refused, what))
            await asyncio.sleep(0.05)

    def window(self, start: float, end: float) -> tuple[int, int, list[float], list[str]]:
        inside = [a for a in self.answers if start <= a[0] < end]
        bad = [a for a in inside if a[1]]
        return len(inside), len(bad), [a[0] for a in bad], sorted({a[2] for a in bad})


async def ok(http: httpx.AsyncClient, method: str, path: str, **kw: Any) -> Any:
    response = await http.request(method, path, **kw)
    if response.status_code != 200:
        raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
    return response.json()


async def create_mcis(http: httpx.AsyncClient, connection: str, vms: int) -> None:
    specs = (await ok(http, "GET", f"/spider/v1/connections/{connection}/specs", params={"pageSize": 1000}))["specs"]
    spec = min((s for s in specs if s["architecture"] == "x86_64"), key=lambda s: s.get("pricePerHour", 0))
    images = (await ok(http, "GET", f"/spider/v1/connections/{connection}/images", params={"pageSize": 1000}))["images"]
    image = next(i for i in images if i["architecture"] == "x86_64")
    await ok(http, "POST", f"/tumblebug/v1/namespaces/{NS}/mcis:dynamic", json={
        "name": MCIS, "subgroups": [{"name": "g", "specId": f"{connection}+{spec['name']}", "imageId": image["name"],
                                     "size": vms}]})


async def mcis_done(http: httpx.AsyncClient, vms: int, deadline: float) -> tuple[dict[str, Any], list[str]]:
    """Wait for every VM Running with a healthy agent (a probe may be refused meanwhile: retried)."""
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(RuntimeError, httpx.HTTPError):
            got = (await ok(http, "GET", f"/tumblebug/v1/namespaces/{NS}/mcis/{MCIS}/vms")).get("vms", [])
            last = got
            if len(got) == vms and all(str(v.get("status", "")).upper() == "RUNNING" and v.get("agentStatus") == "Healthy"
                                       for v in got):
                mcis = await ok(http, "GET", f"/tumblebug/v1/namespaces/{NS}/mcis/{MCIS}")
                return mcis, [v["name"] for v in got]
        await asyncio.sleep(0.5)
    raise TimeoutError(f"the MCIS did not complete: {last}")


async def count_points(suite: cluster.Cluster, names: list[str], started: float) -> dict[str, Any]:
    """Quiet the agents, then points sampled (each agent's own `seq`) against points stored."""
    nc = Client()
    creds = natsauth.Signer.load(suite.auth.signer.read_text()).issue("bench-faults",
                                                                      natsauth.Permissions(unrestricted=True))
    await nc.connect(servers(suite.nats_url), connect_timeout=5, **creds.client_options())  # type: ignore[arg-type]
    async with channel(suite.addresses("dragonfly")) as ch:
        df = dpb_grpc.DragonflyStub(ch)
        await df.UpdateMonitoringConfig(dpb.UpdateMonitoringConfigRequest(
            ns=NS, mcis=MCIS, config=dpb.MonitoringConfig(interval_s=3600)), timeout=10)
        status: dict[str, dict[str, Any]] = {}
        for _ in range(30):  # until every backlog is empty (a batch in flight is acknowledged)
            await asyncio.sleep(1.0)
            for vm in names:
                with contextlib.suppress(Exception):
                    status[vm] = json.loads((await nc.request(VmId(NS, MCIS, vm).request("status"), b"",
                                                              timeout=5)).data)
            if len(status) == len(names) and all(int(s.get("backlog", 0)) == 0 for s in status.values()):
                break
        res = await df.QueryMcisMetrics(dpb.QueryMcisMetricsRequest(
            ns=NS, mcis=MCIS, group="cpu", duration=f"{int(time.monotonic() - started) + 60}s"), timeout=30)
    await nc.close()
    stored = {s.vm.rsplit(".", 1)[-1]: len(s.points) for s in res.series}
    sampled = {vm: int(s.get("seq", 0)) for vm, s in status.items()}
    return {"agents": len(names), "agents_answering": len(status), "points_sampled": sum(sampled.values()),
            "points_stored": sum(stored.get(vm, 0) for vm in sampled),
            "points_in_backlogs": sum(int(s.get("backlog", 0)) for s in status.values()),
            "points_lost": sum(max(0, n - stored.get(vm, 0)) for vm, n in sampled.items()),
            "points_stored_twice": sum(max(0, stored.get(vm, 0) - n) for vm, n in sampled.items())}


async def scenario(root: Path, vms: int = 4, hold_s: float = 6.0) -> dict[str, Any]:
    procs.own_authority(root / "tls")
    suite = cluster.Cluster(root, extra_env=FAST)
    t0 = time.monotonic()
    try:
        await suite.start()
        started_s = time.monotonic() - t0
        key, _ = admin_key(root)
        connections = await demo.register(suite.addresses("spider"), suite.addresses("cloudtwin"), 1, 1)
        async with httpx.AsyncClient(base_url=suite.gateway_url, headers={"Authorization": f"Bearer {key}"},
                                     timeout=15) as http:
            await ok(http, "POST", "/tumblebug/v1/namespaces", json={"name": NS})
            begun = time.monotonic()
            await create_mcis(http, connections[0], vms)
            probes = Probes(http)
            stop = asyncio.Event()
            probing = asyncio.create_task(probes.run(stop))
            await asyncio.sleep(1.0)
            faults = [("etcd", suite.of("etcd")[0]), ("nats", suite.of("nats")[0])]
            faults += [(role, suite.of(role)[0]) for role in cluster.SERVICES]
            results = []
            for role, member in faults:
                at = time.monotonic()
                member.proc.kill()
                await asyncio.sleep(hold_s)
                calls, refused, when, what = probes.window(at, time.monotonic())
                results.append({"fault": f"SIGKILL {role} {member.address}", "probes": calls, "refused": refused,
                                "time_to_recover_s": round(max(when) - at, 2) if when else 0.0, "refused_as": what})
            mcis, names = await mcis_done(http, vms, time.monotonic() + 60)
            stop.set()
            await probing
            total = len(probes.answers)
        points = await count_points(suite, names, begun)
        return {"topology": {"etcd": cluster.ETCD_MEMBERS, "nats": cluster.NATS_NODES, "replicas": cluster.REPLICAS},
                "start_s": round(started_s, 1), "vms": vms, "hold_s": hold_s, "faults": results,
                "probes_total": total, "refused_total": sum(r["refused"] for r in results),
                "mcis_status": mcis.get("status", ""), "mcis_done_s": round(time.monotonic() - begun, 1),
                "metrics": points}
    finally:
        suite.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=6)
    parser.add_argument("--hold", type=float, default=8.0, help="seconds after each fault")
    parser.add_argument("--quick", action="store_true", help="4 VMs, 6 s per fault")
    args = parser.parse_args()
    vms, hold = (4, 6.0) if args.quick else (args.vms, args.hold)
    with tempfile.TemporaryDirectory(prefix="cb-cluster-faults-") as tmp:
        result = asyncio.run(scenario(Path(tmp), vms, hold))
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
