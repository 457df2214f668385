"""Faults on the clustered topology: what an operator loses when one of each goes away.

On services/launcher/cluster.py's topology (3 etcd, 3 NATS, 2 replicas per service, one gateway),
a dynamic MCIS of 20 VMs is created on a slow CloudTwin (seconds per create and per boot, a few
creates at a time) so that the create is still under way through every fault; its agents report
every second. Meanwhile probes call the gateway without pause, and in turn one etcd member, the
LEADER replica of tumblebug, one NATS node, the leader of ladybug, the leader of spider and one
dragonfly replica (dragonfly has no leader: queue groups) are SIGKILLed, each followed by `hold`
seconds. The leader is found by reading `/cb/{service}/leader` and the replica whose log names
that identity.

Per fault: gateway probes, refused, their p99 latency; the longest time any reporting agent went
without a new point stored (the ingest gap, polled from dragonfly twice a second); for a leader,
the takeover (kill → the other replica holds the lease) and the controller's progress (kill →
tumblebug writes a VM record again / ladybug records the status of an app created at the kill).
At the end: the MCIS's status, every VM exactly once (CloudTwin's live VMs against tumblebug's
records), and the points every agent sampled against the points stored (none lost).

Prints one JSON document. `--quick` is what the test runs (tests/integration/cluster).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from nats.aio.client import Client

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as tw_grpc
from cbapi.common.v1 import common_pb2
from cbapi.dragonfly.v1 import dragonfly_pb2 as dpb
from cbapi.dragonfly.v1 import dragonfly_pb2_grpc as dpb_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as tpb
from dragonfly.protocol.subjects import VmId
from services import errors, natsauth
from services import processes as procs
from services.bus import servers
from services.gateway.auth import admin_key
from services.launcher import cluster, demo
from services.rpc.client import channel
from services.store import Store

NS = "faults"
MCIS = "web"
PROBE_APP = "takeover"
LEADER_TTL_S = "2"
# INFO: a replica logs its identity when elected, which is how a leader's PID is found.
FAST = {
    "tumblebug": {"CB_TUMBLEBUG_LEADER_TTL_S": LEADER_TTL_S, "CB_TUMBLEBUG_POLL_INTERVAL_S": "0.2",
                  # A few creates at a time: the MCIS is still being made through every fault.
                  "CB_TUMBLEBUG_MAX_PER_CONNECTION": "3", "CB_LOG_LEVEL": "INFO"},
    "ladybug": {"CB_LADYBUG_LEADER_TTL_S": LEADER_TTL_S, "CB_LOG_LEVEL": "INFO"},
    "spider": {"CB_SPIDER_INSTANCE_TTL_S": LEADER_TTL_S, "CB_LOG_LEVEL": "INFO"},
    "dragonfly": {"CB_LOG_LEVEL": "WARNING"},
    "cloudtwin": {"CB_CLOUDTWIN_CREATE_LATENCY": "3", "CB_CLOUDTWIN_BOOT_LATENCY": "2",
                  "CB_CLOUDTWIN_LATENCY_SIGMA": "0.3", "CB_CLOUDTWIN_PROVIDERS": "2", "CB_LOG_LEVEL": "WARNING"},
}
# What is killed, in this order: (role, whether its elected leader is the one killed).
# NATS late: by then most agents report, so its ingest gap is measured over many.
FAULTS = [("etcd", False), ("tumblebug", True), ("ladybug", True), ("spider", True), ("nats", False),
          ("dragonfly", False)]
REPORT_INTERVAL_S = 1.0
# Agents already reporting when a NATS node is killed.
AGENTS_AT_NATS_FAULT = 3
# The longest a stored point may take to become searchable before it is counted lost.
SEARCHABLE_S = 10.0
PROBES = ["/spider/v1/connections", f"/tumblebug/v1/namespaces/{NS}/mcis/{MCIS}",
          f"/tumblebug/v1/namespaces/{NS}/mcis/{MCIS}/metrics/cpu?duration=1m", f"/ladybug/v1/namespaces/{NS}/apps"]


@dataclass
class Answer:
    at: float
    refused: bool
    latency_s: float
    what: str


@dataclass
class Probes:
    """Gateway calls without pause; every answer's time, latency and whether it was refused."""

    http: httpx.AsyncClient
    answers: list[Answer] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        i = 0
        while not stop.is_set():
            path = PROBES[i % len(PROBES)]
            i += 1
            sent = time.monotonic()
            try:
                status = (await self.http.get(path)).status_code
                refused, what = status >= 500, f"{status} {path}"
            except httpx.HTTPError as err:
                refused, what = True, f"{type(err).__name__} {path}"
            self.answers.append(Answer(sent, refused, time.monotonic() - sent, what))
            await asyncio.sleep(0.05)

    def window(self, start: float, end: float) -> dict[str, Any]:
        inside = [a for a in self.answers if start <= a.at < end]
        bad = [a for a in inside if a.refused]
        return {"probes": len(inside), "refused": len(bad),
                "probe_p99_ms": round(1000 * p99([a.latency_s for a in inside]), 1),
                "refused_as": sorted({a.what for a in bad})}


def p99(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


@dataclass
class Ingest:
    """When each agent's newest stored point moved on, polled from dragonfly twice a second."""

    dragonfly: dpb_grpc.DragonflyStub
    arrivals: dict[str, list[float]] = field(default_factory=dict)
    newest: dict[str, float] = field(default_factory=dict)
    failed_polls: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                res = await self.dragonfly.QueryMcisMetrics(dpb.QueryMcisMetricsRequest(
                    ns=NS, mcis=MCIS, group="cpu", duration="30s"), timeout=5)
            except grpc.aio.AioRpcError:  # a replica going away: the next poll asks the other
                self.failed_polls += 1
            else:
                now = time.monotonic()
                for series in res.series:
                    if not series.points:
                        continue
                    vm = series.vm.rsplit(".", 1)[-1]
                    last = max(p.time.seconds + p.time.nanos / 1e9 for p in series.points)
                    if last > self.newest.get(vm, 0.0):
                        self.newest[vm] = last
                        self.arrivals.setdefault(vm, []).append(now)
            await asyncio.sleep(0.5)

    def gap(self, start: float, end: float) -> dict[str, Any]:
        """The longest time without a new point, over the agents already reporting at `start`."""
        longest, agents = 0.0, 0
        for times in self.arrivals.values():
            before = [t for t in times if t < start]
            if not before:
                continue
            agents += 1
            marks = [before[-1], *(t for t in times if start <= t < end), end]
            longest = max(longest, *(b - a for a, b in itertools.pairwise(marks)))
        return {"ingest_gap_s": round(longest, 2), "agents_reporting": agents}


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
        sampled = {vm: int(s.get("seq", 0)) for vm, s in status.items()}
        # A point acknowledged is searchable in VictoriaMetrics a second or two later, more on a
        # loaded machine: count until every sampled point is there, for at most SEARCHABLE_S
        # (a count that stood still for 1.5 s once called the agents' last points lost).
        stored: dict[str, int] = {}
        searchable_by = time.monotonic() + SEARCHABLE_S
        while True:
            res = await df.QueryMcisMetrics(dpb.QueryMcisMetricsRequest(
                ns=NS, mcis=MCIS, group="cpu", duration=f"{int(time.monotonic() - started) + 60}s"), timeout=30)
            stored = {s.vm.rsplit(".", 1)[-1]: len(s.points) for s in res.series}
            if all(stored.get(vm, 0) >= n for vm, n in sampled.items()) or time.monotonic() > searchable_by:
                break
            await asyncio.sleep(1.0)
    await nc.close()
    return {"agents": len(names), "agents_answering": len(status), "points_sampled": sum(sampled.values()),
            "points_stored": sum(stored.get(vm, 0) for vm in sampled),
            "points_in_backlogs": sum(int(s.get("backlog", 0)) for s in status.values()),
            "points_lost": sum(max(0, n - stored.get(vm, 0)) for vm, n in sampled.items()),
            "points_stored_twice": sum(max(0, stored.get(vm, 0) - n) for vm, n in sampled.items()),
            "points_lost_by_agent": {vm: n - stored.get(vm, 0) for vm, n in sorted(sampled.items())
                                     if n > stored.get(vm, 0)}}


async def leader(store: Store, service: str) -> str:
    """The identity holding `/cb/{service}/leader` (services/store/election.py), "" when vacant."""
    with contextlib.suppress(errors.Unavailable):
        found = await store.get(f"/cb/{service}/leader", common_pb2.KeyValue)
        return found.value.value if found else ""
    return ""


def replica_named(suite: cluster.Cluster, role: str, identity: str) -> cluster.Member:
    """The replica whose log names `identity` (each logs it when elected)."""
    for member in suite.of(role):
        if identity and identity in member.proc.log_path.read_text(errors="replace"):
            return member
    raise RuntimeError(f"no {role} replica logged the identity {identity!r}")


async def elected_leader(suite: cluster.Cluster, store: Store, role: str) -> tuple[cluster.Member, str]:
    for _ in range(100):
        identity = await leader(store, role)
        with contextlib.suppress(RuntimeError):
            return replica_named(suite, role, identity), identity
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{role} has no leader")


async def takeover(store: Store, role: str, old: str, at: float, deadline: float) -> float | None:
    """Seconds from the kill until another identity holds the lease."""
    while time.monotonic() < deadline:
        now = await leader(store, role)
        if now and now != old:
            return round(time.monotonic() - at, 2)
        await asyncio.sleep(0.05)
    return None


async def tumblebug_progress(store: Store, since_rev: int, at: float, deadline: float) -> float | None:
    """Seconds from the kill until a VM record of the MCIS is written again (only the leader writes them)."""
    while time.monotonic() < deadline:
        with contextlib.suppress(errors.Unavailable):
            records = await store.list_all(f"/cb/tumblebug/ns/{NS}/mcis/{MCIS}/vm/", tpb.McisVm)
            if any(r.mod_revision > since_rev for r in records):
                return round(time.monotonic() - at, 2)
        await asyncio.sleep(0.1)
    return None


@dataclass
class Progress:
    """Seconds from a kill until the new leader's controller worked, and what the probe saw on the
    way (answers by status, the last one): when it never worked, why."""

    seconds: float | None = None
    seen: Counter[str] = field(default_factory=Counter)
    last: str = ""
    # The surviving replicas' last failed sync of the probe app, read from their logs.
    last_sync_error: str = ""

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"controller_progress_s": self.seconds, "progress_answers": dict(self.seen)}
        if self.seconds is None:
            out |= {"progress_last": self.last, "progress_last_sync_error": self.last_sync_error}
        return out


async def ladybug_progress(http: httpx.AsyncClient, at: float, deadline: float) -> Progress:
    """Until the controller has recorded the status of an app created at the kill (its
    observedGeneration reaches 1); a refused create is retried."""
    app = {"name": PROBE_APP, "mcis": MCIS, "spec": {
        "artifact": {"command": "exec sleep 60"}, "instances": 1}}
    progress = Progress()
    created = False
    while time.monotonic() < deadline:
        try:
            if not created:
                reply = await http.post(f"/ladybug/v1/namespaces/{NS}/apps", json=app)
                created = reply.status_code in (200, 409)
                progress.seen[f"POST {reply.status_code}"] += 1
                progress.last = f"POST {reply.status_code} {reply.text[:300]}"
            else:
                reply = await http.get(f"/ladybug/v1/namespaces/{NS}/apps/{PROBE_APP}")
                progress.seen[f"GET {reply.status_code}"] += 1
                progress.last = f"GET {reply.status_code} {reply.text[:300]}"
                if reply.status_code == 200 and int(reply.json().get("observedGeneration", 0)) >= 1:
                    progress.seconds = round(time.monotonic() - at, 2)
                    return progress
        except httpx.HTTPError as err:
            progress.seen[type(err).__name__] += 1
            progress.last = f"{type(err).__name__}: {err}"
        await asyncio.sleep(0.1)
    return progress


def last_sync_error(members: list[cluster.Member], key: str) -> str:
    """The newest `sync failed` of `key` in these replicas' logs (JSON lines), its error only."""
    found = ""
    for member in members:
        with contextlib.suppress(OSError):
            for line in member.proc.log_path.read_text(errors="replace").splitlines():
                if "sync failed" in line and key in line:
                    with contextlib.suppress(ValueError):
                        found = str(json.loads(line).get("error", ""))[:600]
    return found


async def vm_ledger(suite: cluster.Cluster, store: Store) -> dict[str, Any]:
    """CloudTwin's live VMs against tumblebug's records: each VM made once and recorded once."""
    records = [r.value for r in await store.list_all(f"/cb/tumblebug/ns/{NS}/mcis/{MCIS}/vm/", tpb.McisVm)]
    cloud: list[tw.Resource] = []
    async with channel(suite.addresses("cloudtwin")) as ch:
        twin = tw_grpc.CloudTwinStub(ch)
        provider = (await twin.ListProviders(tw.ListProvidersRequest())).providers[0]
        # demo.register's credential for the twin's accounts
        md = (("x-twin-access-key", "demo"), ("x-twin-secret-key", "demo-secret"))
        page = await twin.ListResources(tw.ListResourcesRequest(
            provider=provider.name, region=provider.regions[0], kind=tw.VM, page_size=1000), metadata=md)
        cloud = [r for r in page.resources if r.state not in ("terminating", "terminated")]
    recorded = {v.iid.csp_id for v in records if v.iid.csp_id}
    in_cloud = {r.id for r in cloud}
    return {"vms_recorded": len(records), "vms_in_cloud": len(cloud),
            "cloud_vms_without_record": len(in_cloud - recorded), "records_without_cloud_vm": len(recorded - in_cloud),
            "records_without_cloud_id": sum(1 for v in records if not v.iid.csp_id),
            "cloud_names_twice": sum(1 for n in Counter(r.name for r in cloud).values() if n > 1)}


async def agents_reporting(ingest: Ingest, count: int, timeout_s: float) -> float:
    """Wait until `count` agents have had a point stored (or `timeout_s`); the seconds waited."""
    begun = time.monotonic()
    for _ in range(int(timeout_s / 0.2)):
        if len(ingest.arrivals) >= count:
            break
        await asyncio.sleep(0.2)
    return round(time.monotonic() - begun, 1)


async def strike(suite: cluster.Cluster, store: Store, http: httpx.AsyncClient, ingest: Ingest, role: str,
                 lead: bool, hold_s: float) -> tuple[float, dict[str, Any]]:
    """Kill one member of `role` (its leader with `lead`) and measure until it is back to work."""
    waited = None
    if role == "nats":
        # An agent reports a few seconds after its VM runs (install, connect, register): the NATS
        # node goes once some do, so its ingest gap is measured over agents, not over none.
        waited = await agents_reporting(ingest, AGENTS_AT_NATS_FAULT, 20.0)
    old = ""
    if lead:
        member, old = await elected_leader(suite, store, role)
    else:
        member = suite.of(role)[0]
    running = len(await running_vms(http))
    since_rev = await store.revision()
    at = time.monotonic()
    member.proc.kill()
    out: dict[str, Any] = {"fault": f"SIGKILL {role} {'leader ' if lead else ''}{member.address}",
                           "vms_running_at_kill": running}
    if waited is not None:
        out["waited_for_agents_s"] = waited
    deadline = at + max(hold_s, 20.0)
    if lead:
        out["leader_takeover_s"] = await takeover(store, role, old, at, deadline)
    if role == "tumblebug":
        out["controller_progress_s"] = await tumblebug_progress(store, since_rev, at, deadline)
    if role == "ladybug":
        progress = await ladybug_progress(http, at, deadline)
        if progress.seconds is None:
            survivors = [m for m in suite.of(role) if m is not member]
            progress.last_sync_error = last_sync_error(survivors, repr((NS, PROBE_APP)))
        out |= progress.report()
    await asyncio.sleep(max(0.0, at + hold_s - time.monotonic()))
    return at, out


async def scenario(root: Path, vms: int = 20, hold_s: float = 4.0) -> dict[str, Any]:
    procs.own_authority(root / "tls")
    suite = cluster.Cluster(root, extra_env=FAST)
    t0 = time.monotonic()
    try:
        await suite.start()
        started_s = time.monotonic() - t0
        key, _ = admin_key(root)
        connections = await demo.register(suite.addresses("spider"), suite.addresses("cloudtwin"), 1, 1)
        store = Store.from_endpoints(suite.etcd_endpoints)
        async with httpx.AsyncClient(base_url=suite.gateway_url, headers={"Authorization": f"Bearer {key}"},
                                     timeout=15) as http, channel(suite.addresses("dragonfly")) as dch:
            dragonfly = dpb_grpc.DragonflyStub(dch)
            await ok(http, "POST", "/tumblebug/v1/namespaces", json={"name": NS})
            begun = time.monotonic()
            await create_mcis(http, connections[0], vms)
            # Agents come up with the MCIS's interval: every second, so the no-loss check covers hundreds.
            await dragonfly.UpdateMonitoringConfig(dpb.UpdateMonitoringConfigRequest(
                ns=NS, mcis=MCIS, config=dpb.MonitoringConfig(interval_s=REPORT_INTERVAL_S)), timeout=10)
            probes, ingest = Probes(http), Ingest(dragonfly)
            stop = asyncio.Event()
            watching = [asyncio.create_task(probes.run(stop)), asyncio.create_task(ingest.run(stop))]
            try:
                await asyncio.sleep(1.0)
                results = []
                for role, lead in FAULTS:
                    at, out = await strike(suite, store, http, ingest, role, lead, hold_s)
                    end = time.monotonic()
                    out |= probes.window(at, end) | ingest.gap(at, end)
                    results.append(out | {"window_s": round(end - at, 1)})
                mcis, names = await mcis_done(http, vms, time.monotonic() + 60)
                done_s = time.monotonic() - begun
            finally:
                stop.set()
                await asyncio.gather(*watching, return_exceptions=True)
            total = len(probes.answers)
        ledger = await vm_ledger(suite, store)
        await store.close()
        points = await count_points(suite, names, begun)
        return {"topology": {"etcd": cluster.ETCD_MEMBERS, "nats": cluster.NATS_NODES, "replicas": cluster.REPLICAS},
                "start_s": round(started_s, 1), "vms": vms, "hold_s": hold_s,
                "report_interval_s": REPORT_INTERVAL_S, "faults": results,
                "probes_total": total, "refused_total": sum(r["refused"] for r in results),
                "mcis_status": mcis.get("status", ""), "mcis_done_s": round(done_s, 1), "ledger": ledger,
                "ingest_failed_polls": ingest.failed_polls, "metrics": points}
    finally:
        suite.stop()


async def running_vms(http: httpx.AsyncClient) -> list[str]:
    with contextlib.suppress(RuntimeError, httpx.HTTPError):
        got = (await ok(http, "GET", f"/tumblebug/v1/namespaces/{NS}/mcis/{MCIS}/vms")).get("vms", [])
        return [v["name"] for v in got if str(v.get("status", "")).upper() == "RUNNING"]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=20)
    parser.add_argument("--hold", type=float, default=8.0, help="seconds after each fault")
    parser.add_argument("--quick", action="store_true", help="20 VMs, 4 s per fault (what the test runs)")
    args = parser.parse_args()
    vms, hold = (20, 4.0) if args.quick else (args.vms, args.hold)
    with tempfile.TemporaryDirectory(prefix="cb-cluster-faults-") as tmp:
        result = asyncio.run(scenario(Path(tmp), vms, hold))
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
