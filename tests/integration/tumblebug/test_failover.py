"""Failover on CloudTwin: one region refuses every create for capacity; a 20-VM MCIS placed by a
request ends Running elsewhere, within the request's constraints, every move recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from tests import servers
from tests.integration.tumblebug.helpers import namespace, settled_at, twin_vm_names, wait_mcis
from tests.support.failover import busiest, check_converged, refuse, request, two_by_two


@pytest_asyncio.fixture(loop_scope="session")
async def four(spider_client: spider_pb2_grpc.SpiderStub, cloudtwin_process: servers.Server) -> AsyncIterator[
        list[servers.TwinConnection]]:
    conns = await two_by_two(spider_client, cloudtwin_process)
    try:
        yield conns
    finally:
        for c in conns:
            await refuse(cloudtwin_process, c, 0.0)


async def test_a_region_without_capacity_fails_over(tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                                    cloudtwin_process: servers.Server,
                                                    four: list[servers.TwinConnection]) -> None:
    ns = await namespace(tumblebug_client)
    req = request(four)
    refused, planned = await busiest(tumblebug_client, ns, four, req)
    await refuse(cloudtwin_process, refused, 1.0)
    made = await tumblebug_client.CreateMcisDynamic(pb.CreateMcisDynamicRequest(namespace=ns, name="m", install_agent=False,
                                                                  placement=req))
    assert any(sg.connection == refused.name and sg.size == planned for sg in made.subgroups)
    done = await wait_mcis(tumblebug_client, ns, "m", settled_at("Running"), timeout=120)
    vms = list((await tumblebug_client.ListMcisVms(pb.ListMcisVmsRequest(namespace=ns, mcis="m", page_size=100))).vms)
    check_converged(done, vms, refused, planned)
    # The refused subgroup is empty now; the cloud holds exactly the recorded VMs.
    assert all(sg.size == 0 for sg in done.subgroups if sg.connection == refused.name)
    cloud = set().union(*[await twin_vm_names(cloudtwin_process, c) for c in four])
    assert cloud == {v.iid.csp_name for v in vms}
    await tumblebug_client.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name="m", terminate=True, wait=True))


async def test_no_failover_leaves_the_vms_failed(tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                                 cloudtwin_process: servers.Server,
                                                 four: list[servers.TwinConnection]) -> None:
    ns = await namespace(tumblebug_client)
    req = request(four, pb.FAILOVER_NONE)
    refused, planned = await busiest(tumblebug_client, ns, four, req)
    await refuse(cloudtwin_process, refused, 1.0)
    await tumblebug_client.CreateMcisDynamic(pb.CreateMcisDynamicRequest(namespace=ns, name="m", install_agent=False,
                                                           placement=req))
    done = await wait_mcis(tumblebug_client, ns, "m", lambda m: m.target_action == pb.ACTION_NONE and m.policy_op == 0, 120)
    assert done.status_count.failed == planned and not done.events
    vms = (await tumblebug_client.ListMcisVms(pb.ListMcisVmsRequest(namespace=ns, mcis="m", page_size=100))).vms
    assert all(not v.failovers for v in vms)
    await tumblebug_client.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name="m", terminate=True, wait=True))
