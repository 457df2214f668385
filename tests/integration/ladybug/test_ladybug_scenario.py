"""Ladybug end to end on CloudTwin with real agents and the real HAProxy endpoint.

One app stack for the whole module, in order: a real HTTP app (bench/http_app.py) on 2 clouds ×
2 VMs behind one endpoint; a rolling update under steady load; a revision that fails its health
check and rolls back by itself; a canary that answers 5xx to 20% of its requests and is aborted
by the analysis; a killed instance process restarted by its agent; a stopped VM whose instances
move and whose replacement is asked of tumblebug; ladybug SIGKILLed during a rollout.

Runs on the agent-installing tumblebug (`monitored_server`: its own etcd, NATS, dragonfly).
Failed requests at the endpoint are printed per step (`-s` shows them) as well as asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest_asyncio

from bench import httpload
from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as tw_grpc
from cbapi.dragonfly.v1 import dragonfly_pb2_grpc
from cbapi.dragonfly.v1 import workloads_pb2 as wpb
from cbapi.ladybug.v1 import ladybug_pb2 as pb
from cbapi.ladybug.v1 import ladybug_pb2_grpc
from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as tpb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services import processes as procs
from services.rpc.client import channel
from tests import servers
from tests.integration.tumblebug.helpers import cheapest_spec_and_image, connections, namespace, settled_at, wait_mcis
from tests.support.ladybug import stop_stray_haproxies

APP_FILE = Path(__file__).parents[3] / "bench" / "http_app.py"
HEALTH_INTERVAL_S = 1.0
COUNT = 4


@dataclass
class Stack:
    ns: str
    mcis: str
    conns: dict[str, servers.TwinConnection]  # subgroup → its connection (one cloud each)
    ladybug: servers.Server
    lb: ladybug_pb2_grpc.LadybugStub
    tb: tumblebug_pb2_grpc.TumblebugStub
    dragonfly: str
    cloudtwin: servers.Server
    endpoint: tuple[str, int] = ("", 0)
    failed: dict[str, int] | None = None
    # VMs stopped by a test: dragonfly keeps their agents' last (stale) reports.
    dead: frozenset[str] = frozenset()

    def note(self, step: str, result: httpload.LoadResult) -> None:
        self.failed = self.failed or {}
        self.failed[step] = result.failed
        print(f"\n[{step}] {result.answered} answered, {result.failed} failed, statuses {dict(result.statuses)}")

    async def restart_ladybug(self) -> None:
        await procs.start_grpc(self.ladybug.proc, self.ladybug.port)


def spec(text: str, *, command: str = "", update: pb.UpdateStrategy | None = None) -> pb.AppSpec:
    return pb.AppSpec(
        artifact=pb.Artifact(command=command or 'python3 http_app.py "$HOST" "$PORT" "$TEXT@$CB_INSTANCE"',
                             files={"http_app.py": APP_FILE.read_bytes()}),
        # Two per VM: a stopped VM's instance moves at once to a VM that runs one already.
        env={"TEXT": text}, ports=[pb.Port(name="http", port=8080)], instances=COUNT, max_per_vm=2,
        health_check=wpb.WorkloadHealthCheck(http_path="/health", interval_s=HEALTH_INTERVAL_S, timeout_s=1),
        restart=wpb.WorkloadRestartPolicy(initial_backoff_s=0.2, max_backoff_s=2),
        update=update or pb.UpdateStrategy(type=pb.ROLLING, max_parallel=2, min_healthy_time_s=1,
                                           healthy_deadline_s=15))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(run_dir: Path, etcd_process: servers.Server, monitored_tumblebug_process: servers.Server,
                spider_process: servers.Server,
                cloudtwin_process: servers.Server) -> AsyncIterator[Stack]:
    dragonfly = monitored_tumblebug_process.env["CB_TUMBLEBUG_DRAGONFLY_ADDR"]
    ep_dir = run_dir / "lbep"
    server = await servers.start_ladybug(run_dir / "ladybug-scenario", etcd_process, monitored_tumblebug_process, dragonfly,
                                         CB_LADYBUG_ENDPOINT_RUN_DIR=str(ep_dir))
    async with channel(server.address) as lch, channel(monitored_tumblebug_process.address) as tch, \
            channel(spider_process.address) as sch:
        tb = tumblebug_pb2_grpc.TumblebugStub(tch)
        stub = spider_pb2_grpc.SpiderStub(sch)
        ns = await namespace(tb)
        conns = await connections(stub, cloudtwin_process, 2)
        groups = []
        for sg, conn in zip(("a", "b"), conns, strict=True):
            spec_id, image = await cheapest_spec_and_image(stub, conn.name)
            groups.append(tpb.DynamicSubgroup(name=sg, spec_id=f"{conn.name}+{spec_id}", image_id=image, size=2))
        await tb.CreateMcisDynamic(tpb.CreateMcisDynamicRequest(namespace=ns, name="shop", subgroups=groups))
        await wait_mcis(tb, ns, "shop", settled_at("Running"), timeout=120)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            vms = (await tb.ListMcisVms(tpb.ListMcisVmsRequest(namespace=ns, mcis="shop"))).vms
            if all(v.agent_status == "Healthy" for v in vms):
                break
            await asyncio.sleep(0.5)
        s = Stack(ns, "shop", dict(zip(("a", "b"), conns, strict=True)), server, ladybug_pb2_grpc.LadybugStub(lch),
                  tb, dragonfly, cloudtwin_process)
        try:
            yield s
        finally:
            if s.ladybug.proc.alive():
                with contextlib.suppress(Exception):
                    await s.lb.DeleteApplication(pb.DeleteApplicationRequest(namespace=ns, name="web"))
                    await until(s, lambda a: False, gone_ok=True, timeout=60)
            server.stop()
            stop_stray_haproxies(ep_dir)


async def until(s: Stack, done: Callable[[pb.Application], bool], timeout: float = 120,
                gone_ok: bool = False) -> pb.Application:
    app = pb.Application()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            app = await s.lb.GetApplication(pb.GetApplicationRequest(namespace=s.ns, name="web"))
        except Exception:
            if gone_ok:
                return app
            raise
        if done(app):
            return app
        await asyncio.sleep(0.3)
    raise AssertionError(f"not reached within {timeout:g} s: {app.status}")


async def instances(s: Stack) -> list[pb.Instance]:
    return list((await s.lb.ListInstances(pb.ListInstancesRequest(namespace=s.ns, name="web"))).instances)


async def workloads(s: Stack) -> list[tuple[str, wpb.WorkloadStatus]]:
    async with channel(s.dragonfly) as ch:
        reply = await dragonfly_pb2_grpc.DragonflyStub(ch).ListWorkloads(
            wpb.ListWorkloadsRequest(ns=s.ns, mcis=s.mcis, app="web"))
    return [(v.vm, st) for v in reply.vms for st in v.statuses]


class Load:
    """A steady, bounded load through the endpoint while a step runs."""

    def __init__(self, s: Stack) -> None:
        self.stop = asyncio.Event()
        host, port = s.endpoint
        self.task = asyncio.create_task(httpload.load(host, port, requests=60_000, seconds=240, connections=4,
                                                      pause=0.02, until=self.stop))

    async def result(self) -> httpload.LoadResult:
        self.stop.set()
        return await self.task


def versions(result: httpload.LoadResult) -> set[str]:
    return {body.split("@")[0] for body in result.bodies}


async def events(s: Stack) -> list[pb.AppEvent]:
    return list((await s.lb.ListAppEvents(pb.ListAppEventsRequest(namespace=s.ns, name="web"))).events)


async def put(s: Stack, app_spec: pb.AppSpec) -> None:
    await s.lb.UpdateApplication(pb.UpdateApplicationRequest(namespace=s.ns, name="web",
                                                             application=pb.Application(spec=app_spec)))


async def test_deployed_on_two_clouds_the_endpoint_answers_from_every_instance(stack: Stack) -> None:
    s = stack
    await s.lb.CreateApplication(pb.CreateApplicationRequest(namespace=s.ns, application=pb.Application(
        name="web", mcis=s.mcis, spec=spec("v1"))))
    app = await until(s, lambda a: a.status.stable_revision == 1 and a.status.phase == pb.AVAILABLE)
    host, port = app.status.endpoint.rsplit(":", 1)
    s.endpoint = (host, int(port))
    insts = await instances(s)
    assert len({i.vm for i in insts}) == COUNT and len({i.connection for i in insts}) == 2
    # HAProxy takes an instance in after its own checks pass (rise 2): give it those.
    result = httpload.LoadResult()
    deadline = time.monotonic() + 20
    while len(result.bodies) < COUNT and time.monotonic() < deadline:
        result = await httpload.load(host, int(port), requests=200, seconds=10, connections=4)
    s.note("deploy", result)
    assert {b.split("@")[1] for b in result.bodies} == {i.id for i in insts}
    assert result.failed == 0


async def test_rolling_update_under_load_fails_no_request(stack: Stack) -> None:
    s = stack
    load = Load(s)
    await put(s, spec("v2"))
    await until(s, lambda a: a.status.stable_revision == 2 and a.status.phase == pb.AVAILABLE)
    await asyncio.sleep(1.5)  # the last drained instances stop
    result = await load.result()
    s.note("v1→v2 rolling", result)
    assert result.failed == 0 and versions(result) == {"v1", "v2"}
    assert {i.revision for i in await instances(s) if not i.draining} == {2}


async def test_a_revision_failing_its_health_check_rolls_back_by_itself(stack: Stack) -> None:
    s = stack
    load = Load(s)
    bad = spec("v3", command="sleep 600")  # runs, never answers its health check
    bad.update.healthy_deadline_s = 6
    await put(s, bad)
    app = await until(s, lambda a: a.status.failed_revision == 3 and a.revision == 2
                      and a.status.counts.healthy == COUNT and not a.status.rollout.step.startswith("rolling back"))
    await until(s, lambda a: a.status.counts.updated == COUNT)
    result = await load.result()
    s.note("v3 fails health → rollback", result)
    assert app.status.stable_revision == 2
    assert result.failed == 0 and versions(result) == {"v2"}
    kinds = [(e.type, e.reason) for e in await events(s)]
    assert ("Rollback", "AutoRevert") in kinds and ("Failed", "RolloutFailed") in kinds


async def test_a_canary_answering_5xx_is_aborted_by_the_analysis(stack: Stack) -> None:
    s = stack
    load = Load(s)
    canary = spec("v4", command='python3 http_app.py "$HOST" "$PORT" "$TEXT@$CB_INSTANCE" --fail-every 5',
                  update=pb.UpdateStrategy(type=pb.CANARY, canaries=1, min_healthy_time_s=1, healthy_deadline_s=15,
                                           analysis=pb.AnalysisRule(metric="error_rate", threshold=0.05,
                                                                      window_s=60, min_requests=20)))
    await put(s, canary)
    await until(s, lambda a: a.status.failed_revision == 4 and a.revision == 2)
    await until(s, lambda a: a.status.counts.healthy == COUNT and a.status.counts.updated == COUNT)
    result = await load.result()
    s.note("v4 canary 20% 5xx → aborted", result)
    failed = [e for e in await events(s) if e.type == "Failed" and e.revision == 4]
    assert failed and "analysis" in failed[0].message
    # Only the canary's own 5xx answers failed (at most a few beyond min_requests' worth).
    assert set(result.statuses) <= {200, 500} and result.failures == 0
    assert {i.revision for i in await instances(s) if not i.draining} == {2}


async def test_a_killed_instance_process_is_restarted_by_its_agent(stack: Stack) -> None:
    s = stack
    load = Load(s)
    victim = next(st for _, st in await workloads(s) if st.healthy)
    killed_at = time.time()
    os.kill(victim.pid, signal.SIGKILL)
    back = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = {st.id: st for _, st in await workloads(s)}
        st = now.get(victim.id)
        if st is not None and st.restarts > victim.restarts and st.pid != victim.pid and st.healthy:
            back = st
            break
        await asyncio.sleep(0.2)
    result = await load.result()
    s.note("instance killed", result)
    assert back is not None, "not restarted"
    started = back.started_time.seconds + back.started_time.nanos / 1e9
    print(f"restarted {started - killed_at:.2f} s after the kill (health interval {HEALTH_INTERVAL_S:g} s)")
    assert result.failures == 0


async def test_a_vm_lost_in_its_cloud_has_its_instances_moved_and_a_replacement_asked_for(stack: Stack) -> None:
    # Deleted behind the suite's back, the VM stays lost; a merely stopped one is resumed by
    # tumblebug (its target is Running), often before the failure has lasted long enough to be
    # replaced, which is the point of the wait.
    s = stack
    load = Load(s)
    insts = await instances(s)
    victim = insts[0]
    vm = await s.tb.GetMcisVm(tpb.GetMcisVmRequest(namespace=s.ns, mcis=s.mcis, name=victim.vm))
    conn = s.conns[vm.subgroup]
    s.dead = s.dead | {victim.vm}
    async with channel(s.cloudtwin.address) as ch:
        await tw_grpc.CloudTwinStub(ch).DeleteResource(
            tw.DeleteResourceRequest(provider=conn.provider, region=conn.region, kind=tw.VM, id=vm.iid.csp_id),
            metadata=(("x-twin-access-key", conn.access_key), ("x-twin-secret-key", conn.secret_key)))

    def moved(a: pb.Application) -> bool:
        # Still ROLLOUT_FAILED: revision 4's failure stays visible while revision 2 runs.
        return a.status.counts.healthy == COUNT and a.status.counts.desired == COUNT
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = await instances(s)
        live = [i for i in now if not i.draining]
        if len(live) == COUNT and victim.vm not in {i.vm for i in live} and all(i.healthy for i in live):
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError(f"instances not moved off {victim.vm}: {await instances(s)}")
    await until(s, moved)
    result = await load.result()
    s.note("VM lost", result)
    # The replacement is asked once the failure has lasted CB_LADYBUG_REPLACE_AFTER_S (2 s here).
    deadline = time.monotonic() + 30
    while True:
        kinds = [(e.type, e.reason, e.message) for e in await events(s)]
        if any(t == "GrowMcis" for t, _, _ in kinds) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert any(t == "Move" for t, _, _ in kinds)
    seen = [(v.name, v.status, v.agent_status) for v in
            (await s.tb.ListMcisVms(tpb.ListMcisVmsRequest(namespace=s.ns, mcis=s.mcis))).vms]
    assert any(t == "GrowMcis" and r == "ReplaceVm" and victim.vm in m for t, r, m in kinds), (
        [k for k in kinds if k[0] in ("GrowMcis", "Move")], seen)
    mcis = await s.tb.GetMcis(tpb.GetMcisRequest(namespace=s.ns, name=s.mcis))
    assert {sg.name: sg.size for sg in mcis.subgroups}[vm.subgroup] == 3


async def test_ladybug_sigkilled_during_a_rollout_loses_and_doubles_nothing(stack: Stack) -> None:
    s = stack
    rng = random.Random(13)
    await put(s, spec("v5"))
    kills = 0
    for _ in range(3):
        await asyncio.sleep(rng.uniform(0.3, 2.5))
        app = await s.lb.GetApplication(pb.GetApplicationRequest(namespace=s.ns, name="web"))
        if app.status.phase == pb.AVAILABLE and app.status.stable_revision == app.revision:
            break
        s.ladybug.proc.signal(signal.SIGKILL)
        await asyncio.to_thread(s.ladybug.proc.stop, 5)  # reaps it
        kills += 1
        await s.restart_ladybug()
    app = await until(s, lambda a: a.status.phase == pb.AVAILABLE and a.status.stable_revision == a.revision,
                      timeout=180)
    print(f"\n[SIGKILL] {kills} kills; ended on revision {app.revision}")
    assert kills >= 1 and app.revision in (5, 2)
    await asyncio.sleep(2)  # the drained ones stop
    insts = await instances(s)
    running = [(vm, st) for vm, st in await workloads(s) if st.state != wpb.WORKLOAD_STOPPED and vm not in s.dead]
    assert len(insts) == COUNT and sorted(i.slot for i in insts) == list(range(COUNT))
    assert sorted(st.id for _, st in running) == sorted(i.id for i in insts)  # none lost, none doubled
    assert len({(vm, st.ports[0]) for vm, st in running}) == COUNT
