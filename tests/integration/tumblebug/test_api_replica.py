"""An API-only replica (`CB_TUMBLEBUG_CONTROLLER=false`) beside a controller replica: it never runs
for leader, and every call through it — writes, reads from etcd, waits — works while the other
replica reconciles."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cbapi.common.v1 import common_pb2 as c
from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services.rpc.client import channel
from services.store import Store
from tests import servers
from tests.integration.tumblebug.helpers import cheapest_spec_and_image, namespace, settled_at, wait_mcis

LEADER_KEY = "/cb/tumblebug/leader"


def led(server: servers.Server) -> bool:
    return '"msg": "leading"' in server.proc.log_path.read_text()


async def test_an_api_only_replica_never_leads_and_serves_reads_and_writes(
        tmp_path: Path, cloudtwin_process: servers.Server) -> None:
    etcd = await servers.start_etcd(tmp_path / "etcd")
    spider = await servers.start_spider(tmp_path / "spider", etcd)
    api = await servers.start_tumblebug(tmp_path / "api", etcd, spider, CB_TUMBLEBUG_CONTROLLER="false")
    started: list[servers.Server] = [api, spider, etcd]
    store = Store("127.0.0.1", etcd.port)
    try:
        async with channel(spider.address) as sch:
            stub = spider_pb2_grpc.SpiderStub(sch)
            provider, region = (await servers.twin_regions(cloudtwin_process))[0]
            conn = await servers.make_connection(stub, cloudtwin_process, provider, region)
            spec, image = await cheapest_spec_and_image(stub, conn.name)
        async with channel(api.address) as ch:
            tb = tumblebug_pb2_grpc.TumblebugStub(ch)
            ns = await namespace(tb)
            made = await tb.CreateMcisDynamic(pb.CreateMcisDynamicRequest(namespace=ns, name="m", subgroups=[
                pb.DynamicSubgroup(name="g", spec_id=f"{conn.name}+{spec}", image_id=image, size=3)]))
            # Alone, past a lease period (2 s here): accepted, but nobody leads and nothing is made.
            await asyncio.sleep(2.5)
            assert await store.get(LEADER_KEY, c.KeyValue) is None
            alone = await tb.GetMcis(pb.GetMcisRequest(namespace=ns, name="m"))
            assert alone.generation == made.generation and alone.observed_generation < alone.generation
            assert alone.status_count.total == 0

            controller = await servers.start_tumblebug(tmp_path / "controller", etcd, spider)
            started.insert(0, controller)
            # The controller replica leads and builds; the API replica reads the progress from etcd.
            running = await wait_mcis(tb, ns, "m", settled_at("Running"), timeout=60)
            assert running.status == "Running:3 (R:3/3)"
            leader = await store.get(LEADER_KEY, c.KeyValue)
            assert leader is not None and led(controller)
            vms = (await tb.ListMcisVms(pb.ListMcisVmsRequest(namespace=ns, mcis="m", page_size=10))).vms
            assert sorted(v.name for v in vms) == ["g-1", "g-2", "g-3"]
            assert all(v.status == c.RUNNING for v in vms)
            assert (await tb.GetMcisVm(pb.GetMcisVmRequest(namespace=ns, mcis="m", name="g-2"))).status == c.RUNNING
            # A verb through the API replica, followed there (`wait` watches etcd), done by the leader.
            suspended = await tb.SuspendMcis(pb.McisActionRequest(namespace=ns, name="m", wait=True), timeout=60)
            assert suspended.status == "Suspended:3 (R:0/3)"
            whole = await tb.GetMcis(pb.GetMcisRequest(namespace=ns, name="m", vms=True))
            assert [v.status for v in whole.vms] == [c.SUSPENDED] * 3
            await tb.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name="m", terminate=True, wait=True), timeout=60)
            assert not (await tb.ListMcis(pb.ListMcisRequest(namespace=ns))).mcis
        assert not led(api)
        assert "serving the API only" in api.proc.log_path.read_text()
    finally:
        await store.close()
        for server in started:
            server.stop()
