"""Per-namespace quotas: limits set and read through the API, checked at create, scale and
add-group, and not overrun by requests that arrive together."""

from __future__ import annotations

import asyncio

import grpc

from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from tests import servers
from tests.helpers import expect_error
from tests.integration.tumblebug.helpers import cheapest_spec_and_image, connections, namespace, settled_at, wait_mcis
from tumblebug.settings import TumblebugSettings


async def _group(stub: spider_pb2_grpc.SpiderStub, conn: str, name: str, size: int) -> pb.DynamicSubgroup:
    spec, image = await cheapest_spec_and_image(stub, conn)
    return pb.DynamicSubgroup(name=name, spec_id=f"{conn}+{spec}", image_id=image, size=size)


async def _resources(tb: tumblebug_pb2_grpc.TumblebugStub, ns: str) -> int:
    total = 0
    for collection in ("vnets", "security-groups", "ssh-keys"):
        total += len((await tb.ListResources(pb.ListResourcesRequest(namespace=ns, collection=collection))).resources)
    return total


async def test_defaults_refuse_ten_subgroups_of_ten_thousand(tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                                             spider_client: spider_pb2_grpc.SpiderStub,
                                                             cloudtwin_process: servers.Server) -> None:
    ns = await namespace(tumblebug_client)
    conn = (await connections(spider_client, cloudtwin_process, 1))[0]
    quota = await tumblebug_client.GetNamespaceQuota(pb.GetNamespaceQuotaRequest(namespace=ns))
    defaults = TumblebugSettings()
    assert (quota.limits.vms, quota.limits.vcpus, quota.limits.mcis) == (
        defaults.quota_vms, defaults.quota_vcpus, defaults.quota_mcis)
    assert quota.usage == pb.QuotaUsage()
    groups = [await _group(spider_client, conn.name, f"g{i}", 10_000) for i in range(10)]
    err = await expect_error(grpc.StatusCode.RESOURCE_EXHAUSTED,
                             tumblebug_client.CreateMcisDynamic(pb.CreateMcisDynamicRequest(
        namespace=ns, name="huge", subgroups=groups, install_agent=False)))
    details = err.details() or ""
    assert "quota vms" in details and "100,000 more" in details and f"limit is {defaults.quota_vms:,}" in details
    # Refused before anything was made: no MCIS, no default vNet, security group or key.
    await expect_error(grpc.StatusCode.NOT_FOUND, tumblebug_client.GetMcis(pb.GetMcisRequest(namespace=ns, name="huge")))
    assert await _resources(tumblebug_client, ns) == 0


async def test_quota_checked_at_create_scale_and_add_group(tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                                           spider_client: spider_pb2_grpc.SpiderStub,
                                                           cloudtwin_process: servers.Server) -> None:
    ns = await namespace(tumblebug_client)
    conn = (await connections(spider_client, cloudtwin_process, 1))[0]
    set_to = await tumblebug_client.UpdateNamespaceQuota(pb.UpdateNamespaceQuotaRequest(
        namespace=ns, quota=pb.QuotaLimits(vms=4, mcis=1)))
    assert (set_to.limits.vms, set_to.limits.mcis) == (4, 1)
    assert set_to.limits.vcpus == TumblebugSettings().quota_vcpus  # not given: the default stays
    group = await _group(spider_client, conn.name, "g", 2)
    await tumblebug_client.CreateMcisDynamic(pb.CreateMcisDynamicRequest(namespace=ns, name="web", subgroups=[group],
                                                           install_agent=False))
    quota = await tumblebug_client.GetNamespaceQuota(pb.GetNamespaceQuotaRequest(namespace=ns))
    assert (quota.usage.vms, quota.usage.mcis) == (2, 1) and quota.usage.vcpus > 0

    err = await expect_error(grpc.StatusCode.RESOURCE_EXHAUSTED,
                             tumblebug_client.CreateMcisDynamic(pb.CreateMcisDynamicRequest(
        namespace=ns, name="other", subgroups=[await _group(spider_client, conn.name, "g", 1)], install_agent=False)))
    assert "quota mcis" in (err.details() or "") and "1 in use" in (err.details() or "")
    err = await expect_error(grpc.StatusCode.RESOURCE_EXHAUSTED, tumblebug_client.ScaleSubgroup(pb.ScaleSubgroupRequest(
        namespace=ns, mcis="web", subgroup="g", size=5)))
    assert "quota vms" in (err.details() or "") and "2 in use" in (err.details() or "") and "limit is 4" in (
        err.details() or "")
    err = await expect_error(grpc.StatusCode.RESOURCE_EXHAUSTED, tumblebug_client.AddSubgroup(pb.AddSubgroupRequest(
        namespace=ns, mcis="web", dynamic=await _group(spider_client, conn.name, "h", 3))))
    assert "quota vms" in (err.details() or "")
    await tumblebug_client.ScaleSubgroup(pb.ScaleSubgroupRequest(namespace=ns, mcis="web", subgroup="g", size=4))

    # vCPUs too: a limit below what the MCIS asks refuses growth, not what is there.
    vcpu = quota.usage.vcpus // 2
    await tumblebug_client.UpdateNamespaceQuota(pb.UpdateNamespaceQuotaRequest(
        namespace=ns, quota=pb.QuotaLimits(vms=-1, vcpus=vcpu * 4)))
    err = await expect_error(grpc.StatusCode.RESOURCE_EXHAUSTED, tumblebug_client.ScaleSubgroup(pb.ScaleSubgroupRequest(
        namespace=ns, mcis="web", subgroup="g", size=5)))
    assert "quota vcpus" in (err.details() or "")
    await tumblebug_client.ScaleSubgroup(pb.ScaleSubgroupRequest(namespace=ns, mcis="web", subgroup="g",
                                                                 size=1))  # shrinking is fine
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT,
                       tumblebug_client.UpdateNamespaceQuota(pb.UpdateNamespaceQuotaRequest(
        namespace=ns, quota=pb.QuotaLimits(vms=-5))))
    await expect_error(grpc.StatusCode.NOT_FOUND, tumblebug_client.GetNamespaceQuota(pb.GetNamespaceQuotaRequest(
        namespace="no-such-ns")))
    await wait_mcis(tumblebug_client, ns, "web", settled_at("Running"))
    await tumblebug_client.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name="web", terminate=True, wait=True))


async def test_concurrent_requests_do_not_overrun_the_quota(tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                                            spider_client: spider_pb2_grpc.SpiderStub,
                                                            cloudtwin_process: servers.Server) -> None:
    ns = await namespace(tumblebug_client)
    conn = (await connections(spider_client, cloudtwin_process, 1))[0]
    await tumblebug_client.UpdateNamespaceQuota(pb.UpdateNamespaceQuotaRequest(namespace=ns, quota=pb.QuotaLimits(vms=6)))
    group = await _group(spider_client, conn.name, "g", 2)
    # Defaults first, so the racing requests differ only in their names.
    await tumblebug_client.CreateMcisDynamic(pb.CreateMcisDynamicRequest(namespace=ns, name="first", subgroups=[group],
                                                           install_agent=False))
    answers = await asyncio.gather(*(tumblebug_client.CreateMcisDynamic(pb.CreateMcisDynamicRequest(
        namespace=ns, name=f"m{i}", subgroups=[group], install_agent=False)) for i in range(8)),
        return_exceptions=True)
    made = [a for a in answers if isinstance(a, pb.Mcis)]
    refused = [a for a in answers if isinstance(a, grpc.aio.AioRpcError)]
    assert len(made) == 2 and len(refused) == 6, answers
    assert all(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for e in refused)
    quota = await tumblebug_client.GetNamespaceQuota(pb.GetNamespaceQuotaRequest(namespace=ns))
    assert quota.usage.vms == 6 and quota.usage.mcis == 3
    for name in ["first", *(m.name for m in made)]:
        await tumblebug_client.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name=name, force=True))
