"""Crash safety of failover and of benchmark campaigns: tumblebug killed (SIGKILL) at random moments
while VMs are moved off a region without capacity, or while a campaign makes and deletes its
short-lived MCIS; after a restart, every cloud VM has exactly one record and none was made twice."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from cbapi.spider.v1 import spider_pb2 as spb
from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services.rpc.client import channel
from services.store import Store
from tests import servers
from tests.integration.tumblebug.helpers import namespace, settled_at, twin_vms, wait_mcis
from tests.support.failover import busiest, check_converged, refuse, request, two_by_two

TWIN = {"CB_CLOUDTWIN_PROVIDERS": "2", "CB_CLOUDTWIN_CREATE_LATENCY": "0.3", "CB_CLOUDTWIN_LATENCY_SIGMA": "0.6",
        "CB_CLOUDTWIN_BOOT_LATENCY": "0.5"}
SPIDER = {"CB_SPIDER_INSTANCE_TTL_S": "2", "CB_SPIDER_RECOVERY_INTERVAL_S": "0.5"}


def made_once(cloud: list) -> None:  # type: ignore[type-arg]
    """No VM made twice: one cloud VM (in any state) per spider name (the cloud name less its suffix)."""
    per_name = Counter(r.name.rsplit("-", 1)[0] for r in cloud)
    assert not per_name or max(per_name.values()) == 1, [n for n, k in per_name.items() if k > 1]


async def kill_twice(rng: random.Random, tumblebug: servers.Server, lo: float, hi: float) -> None:
    for _ in range(2):
        await asyncio.sleep(rng.uniform(lo, hi))
        tumblebug.proc.kill()
        await asyncio.sleep(rng.uniform(0.0, 0.5))
        await servers.restart(tumblebug)


@pytest.mark.parametrize("seed", [1, 2])
async def test_kill_during_failover_converges(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    etcd = await servers.start_etcd(tmp_path / "etcd")
    twin = await servers.start_cloudtwin(tmp_path / "twin", **TWIN)
    spider = await servers.start_spider(tmp_path / "spider", etcd, **SPIDER)
    tumblebug = await servers.start_tumblebug(tmp_path / "tumblebug", etcd, spider)
    store = Store("127.0.0.1", etcd.port)
    try:
        async with channel(spider.address) as sch, channel(tumblebug.address) as tch:
            stub, tb = spider_pb2_grpc.SpiderStub(sch), tumblebug_pb2_grpc.TumblebugStub(tch)
            conns = await two_by_two(stub, twin)
            ns = await namespace(tb)
            req = request(conns)
            refused, planned = await busiest(tb, ns, conns, req)
            await refuse(twin, refused, 1.0)
            await tb.CreateMcisDynamic(pb.CreateMcisDynamicRequest(namespace=ns, name="m", install_agent=False,
                                                                   placement=req))
            await kill_twice(rng, tumblebug, 0.2, 1.5)  # while the refused VMs are being moved
        async with channel(tumblebug.address) as tch:
            tb = tumblebug_pb2_grpc.TumblebugStub(tch)
            done = await wait_mcis(tb, ns, "m", settled_at("Running"), timeout=120)
        records = [v.value for v in await store.list_all(f"/cb/tumblebug/ns/{ns}/mcis/m/vm/", pb.McisVm)]
        check_converged(done, records, refused, planned)
        cloud = await twin_vms(twin, conns)
        assert {r.id for r in cloud} == {v.iid.csp_id for v in records}  # a record for every VM, and only those
        made_once(await twin_vms(twin, conns, gone=True))
        spider_vms = [v.value for c in conns for v in await store.list_all(f"/cb/spider/conn/{c.name}/vms/", spb.Vm)]
        assert {v.iid.csp_id for v in spider_vms} == {v.iid.csp_id for v in records}
    finally:
        await store.close()
        for server in (tumblebug, spider, twin, etcd):
            server.stop()


async def test_kill_during_a_campaign_leaves_no_vm_behind(tmp_path: Path) -> None:
    rng = random.Random(7)
    etcd = await servers.start_etcd(tmp_path / "etcd")
    twin = await servers.start_cloudtwin(tmp_path / "twin", **TWIN)
    spider = await servers.start_spider(tmp_path / "spider", etcd, **SPIDER)
    tumblebug = await servers.start_tumblebug(tmp_path / "tumblebug", etcd, spider)
    store = Store("127.0.0.1", etcd.port)
    try:
        async with channel(spider.address) as sch, channel(tumblebug.address) as tch:
            stub, tb = spider_pb2_grpc.SpiderStub(sch), tumblebug_pb2_grpc.TumblebugStub(tch)
            provider, region = (await servers.twin_regions(twin))[0]
            conn = await servers.make_connection(stub, twin, provider, region)
            # No dragonfly here: no agent turns healthy, so each step's VM lives its (short) lifetime,
            # then is deleted — creates and deletes are what a crash must not lose or repeat.
            started = await tb.StartBenchmarkCampaign(pb.StartBenchmarkCampaignRequest(campaign=pb.BenchmarkCampaign(
                name="c1", requirements=pb.SpecRequirements(connections=[conn.name], architectures=["x86_64"],
                                                            vcpu_max=2),
                max_vms=100, max_cost=1000.0, parallel=4, vm_lifetime_s=2)))
            steps = len(started.steps)
            assert steps >= 2
            await kill_twice(rng, tumblebug, 0.5, 2.5)
        async with channel(tumblebug.address) as tch:
            tb = tumblebug_pb2_grpc.TumblebugStub(tch)
            deadline = time.monotonic() + 180
            while True:
                c = await tb.GetBenchmarkCampaign(pb.GetBenchmarkCampaignRequest(name="c1"))
                if c.state == "done" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert c.state == "done", [s.state for s in c.steps]
            assert all(s.state in ("done", "failed") for s in c.steps)
            assert not (await tb.ListMcis(pb.ListMcisRequest(namespace="cb-benchmarks"))).mcis
        assert await twin_vms(twin, [conn]) == []  # nothing left in the cloud
        assert not await store.list_all(f"/cb/spider/conn/{conn.name}/vms/", spb.Vm)
        assert not await store.list_all("/cb/tumblebug/ns/cb-benchmarks/mcis/", pb.Mcis)
        made = await twin_vms(twin, [conn], gone=True)
        made_once(made)
        assert len(made) <= c.vms_made == steps  # one VM per step at most, each reserved once
    finally:
        await store.close()
        for server in (tumblebug, spider, twin, etcd):
            server.stop()
