"""An API-only replica (`CB_TUMBLEBUG_CONTROLLER=false`) beside a controller replica: it never runs
for leader, and every call through it — writes, reads from etcd, waits — works while the other
replica reconciles."""

from __future__ import annotations

from pathlib import Path

from cbapi.common.v1 import common_pb2 as c
from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services.rpc.client import channel
from services.store import Store
from tests import servers
from tests.integration.tumblebug.helpers import (
    cheapest_spec_and_image,
    connections,
    namespace,
    settled_at,
    wait_mcis,
)

LEADER_KEY = "/cb/tumblebug/leader"


def led(server: servers.Server) -> bool:
    return '"msg": "leading"' in server.proc.log_path.read_text()


async def test_an_api_only_replica_never_leads_and_serves_reads_and_writes(
        tmp_path: Path, cloudtwin_process: servers.Server, etcd_process: servers.Server,
        spider_process: servers.Server, spider_client: spider_pb2_grpc.SpiderStub,
        tumblebug_process: servers.Server) -> None:
    # Beside the session's tumblebug (a controller replica: it leads and reconciles).
    api = await servers.start_tumblebug(tmp_path / "api", etcd_process, spider_process,
                                        CB_TUMBLEBUG_CONTROLLER="false")
    store = Store("127.0.0.1", etcd_process.port)
    try:
        conn = (await connections(spider_client, cloudtwin_process, 1))[0]
        spec, image = await cheapest_spec_and_image(spider_client, conn.name)
        async with channel(api.address) as ch:
            tb = tumblebug_pb2_grpc.TumblebugStub(ch)
            ns = await namespace(tb)
            await tb.CreateMcisDynamic(pb.CreateMcisDynamicRequest(namespace=ns, name="m", subgroups=[
                pb.DynamicSubgroup(name="g", spec_id=f"{conn.name}+{spec}", image_id=image, size=3)]))
            # Written through the API replica, built by the leader, its progress read back here.
            running = await wait_mcis(tb, ns, "m", settled_at("Running"), timeout=60)
            assert running.status == "Running:3 (R:3/3)"
            leader = await store.get(LEADER_KEY, c.KeyValue)
            assert leader is not None and led(tumblebug_process)
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
        api.stop()
