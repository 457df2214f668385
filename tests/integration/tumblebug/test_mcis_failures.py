"""Partial failure policies, and concurrent dynamic creates sharing default resources."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as tw_grpc
from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as spb
from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services.rpc.client import channel
from tests import servers
from tests.helpers import expect_error
from tests.integration.tumblebug.helpers import (
    cheapest_spec_and_image,
    connections,
    namespace,
    twin_vm_names,
    wait_mcis,
)

VMS = 20


@pytest_asyncio.fixture(loop_scope="session")
async def flaky_region(spider_client: spider_pb2_grpc.SpiderStub,
                       cloudtwin_process: servers.Server) -> AsyncIterator[servers.TwinConnection]:
    """A connection on a twin region that fails 30% of VM creates (knobs reset afterwards)."""
    provider, region = (await servers.twin_regions(cloudtwin_process))[-2]
    conn = await servers.make_connection(spider_client, cloudtwin_process, provider, region)
    async with channel(cloudtwin_process.address) as ch:
        admin = tw_grpc.CloudTwinStub(ch)
        await admin.SetKnobs(tw.SetKnobsRequest(provider=provider, region=region, knobs=tw.Knobs(failure_rate=0.3)))
        try:
            yield conn
        finally:
            await admin.SetKnobs(tw.SetKnobsRequest(provider=provider, region=region, knobs=tw.Knobs(failure_rate=0)))


async def _create(tb: tumblebug_pb2_grpc.TumblebugStub, stub: spider_pb2_grpc.SpiderStub, ns: str, name: str,
                  conn: servers.TwinConnection, policy: int) -> pb.Mcis:
    spec, image = await cheapest_spec_and_image(stub, conn.name)
    await tb.CreateMcisDynamic(pb.CreateMcisDynamicRequest(
        namespace=ns, name=name, policy=policy,  # type: ignore[arg-type]
        subgroups=[pb.DynamicSubgroup(name="g", spec_id=f"{conn.name}+{spec}", image_id=image, size=VMS)]))
    return await wait_mcis(tb, ns, name, lambda m: m.status == "deleted" or (
        m.target_action == pb.ACTION_NONE and m.observed_generation >= m.generation and m.policy_op == 0), 90)


@pytest.mark.parametrize("policy", [pb.POLICY_CONTINUE, pb.POLICY_REFINE, pb.POLICY_ROLLBACK])
async def test_failure_policies(tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                spider_client: spider_pb2_grpc.SpiderStub,
                                cloudtwin_process: servers.Server, flaky_region: servers.TwinConnection,
                                policy: int) -> None:
    ns = await namespace(tumblebug_client)
    mcis = await _create(tumblebug_client, spider_client, ns, "m", flaky_region, policy)
    cloud = await twin_vm_names(cloudtwin_process, flaky_region)
    if policy == pb.POLICY_ROLLBACK:
        assert mcis.status == "deleted"  # everything the request made is gone
        assert cloud == set()
        return
    vms = (await tumblebug_client.ListMcisVms(pb.ListMcisVmsRequest(namespace=ns, mcis="m", page_size=100))).vms
    failed = [v for v in vms if v.status == common.FAILED]
    running = [v for v in vms if v.status == common.RUNNING]
    if policy == pb.POLICY_CONTINUE:
        assert failed and running and len(vms) == VMS
        assert all("InsufficientInstanceCapacity" in v.error for v in failed)
        assert mcis.status == f"Partial-Running:{len(running)} (R:{len(running)}/{VMS})"
        assert all(not v.iid.csp_id for v in failed)  # a failed create left nothing in the cloud
    else:
        assert not failed and len(running) == len(vms) < VMS
        assert mcis.subgroups[0].size == len(vms)
        assert mcis.status == f"Running:{len(vms)} (R:{len(vms)}/{len(vms)})"
    # The records and the cloud agree: every running VM is in the cloud and nothing else is.
    assert {v.iid.csp_name for v in running} == cloud
    await tumblebug_client.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name="m", terminate=True, wait=True))
    assert await twin_vm_names(cloudtwin_process, flaky_region) == set()


async def test_refine_on_demand(tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                spider_client: spider_pb2_grpc.SpiderStub,
                                cloudtwin_process: servers.Server, flaky_region: servers.TwinConnection) -> None:
    ns = await namespace(tumblebug_client)
    await _create(tumblebug_client, spider_client, ns, "m", flaky_region, pb.POLICY_CONTINUE)
    refined = await tumblebug_client.RefineMcis(pb.McisActionRequest(namespace=ns, name="m", wait=True))
    vms = (await tumblebug_client.ListMcisVms(pb.ListMcisVmsRequest(namespace=ns, mcis="m", page_size=100))).vms
    assert vms and all(v.status == common.RUNNING for v in vms)
    assert refined.status == f"Running:{len(vms)} (R:{len(vms)}/{len(vms)})"
    await expect_error(grpc.StatusCode.FAILED_PRECONDITION, tumblebug_client.RefineMcis(pb.McisActionRequest(namespace=ns,
                                                                                               name="m")))
    await tumblebug_client.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name="m", terminate=True, wait=True))


async def test_concurrent_dynamic_creates_share_one_set_of_defaults(
        tumblebug_client: tumblebug_pb2_grpc.TumblebugStub, spider_client: spider_pb2_grpc.SpiderStub,
        cloudtwin_process: servers.Server) -> None:
    ns = await namespace(tumblebug_client)
    conns = await connections(spider_client, cloudtwin_process, 2)
    groups = []
    for c in conns:
        spec, image = await cheapest_spec_and_image(spider_client, c.name)
        groups.append(pb.DynamicSubgroup(name=c.provider[:8], spec_id=f"{c.name}+{spec}", image_id=image, size=1))
    await asyncio.gather(*(tumblebug_client.CreateMcisDynamic(pb.CreateMcisDynamicRequest(
        namespace=ns, name=f"m{i}", subgroups=groups, request_id=uuid.uuid4().hex)) for i in range(20)))
    for collection in ("vnets", "security-groups", "ssh-keys"):
        res = (await tumblebug_client.ListResources(pb.ListResourcesRequest(namespace=ns, collection=collection))).resources
        assert sorted(r.connection for r in res) == sorted(c.name for c in conns), collection
    for c in conns:
        vpcs = (await spider_client.ListVpcs(spb.ListResourcesRequest(connection=c.name))).vpcs
        keys = (await spider_client.ListKeyPairs(spb.ListResourcesRequest(connection=c.name))).key_pairs
        assert len(vpcs) == 1 and len(keys) == 1
    for i in range(20):
        await wait_mcis(tumblebug_client, ns, f"m{i}", lambda m: m.status == "Running:2 (R:2/2)", 60)
        await tumblebug_client.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name=f"m{i}", terminate=True))
    for i in range(20):
        await wait_mcis(tumblebug_client, ns, f"m{i}", lambda m: m.status == "deleted", 60)
