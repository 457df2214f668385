"""An MCIS across three clouds, from creation to deletion, through tumblebug → spider → CloudTwin."""

from __future__ import annotations

import uuid

import grpc

from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from tests import servers
from tests.helpers import expect_error
from tests.integration.tumblebug.helpers import (
    cheapest_spec_and_image,
    connections,
    namespace,
    settled_at,
    twin_vm_names,
    wait_mcis,
)


async def test_dynamic_mcis_across_three_providers(tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                                   spider_client: spider_pb2_grpc.SpiderStub,
                                                   cloudtwin_process: servers.Server) -> None:
    ns = await namespace(tumblebug_client)
    conns = await connections(spider_client, cloudtwin_process, 3)
    assert len({c.provider for c in conns}) == 3
    groups = []
    for i, c in enumerate(conns):
        spec, image = await cheapest_spec_and_image(spider_client, c.name)
        groups.append(pb.DynamicSubgroup(name=f"g{i}", spec_id=f"{c.name}+{spec}", image_id=image, size=2))
    made = await tumblebug_client.CreateMcisDynamic(pb.CreateMcisDynamicRequest(namespace=ns, name="web", subgroups=groups,
                                                                  request_id=uuid.uuid4().hex))
    assert made.status == "Creating" and made.target_action == pb.ACTION_CREATE
    running = await wait_mcis(tumblebug_client, ns, "web", settled_at("Running"))
    assert running.status == "Running:6 (R:6/6)" and running.status_count.running == 6

    vms = (await tumblebug_client.ListMcisVms(pb.ListMcisVmsRequest(namespace=ns, mcis="web"))).vms
    assert {v.provider for v in vms} == {c.provider for c in conns}
    assert all(v.iid.csp_id and v.private_ip.startswith("127.") for v in vms)

    suspended = await tumblebug_client.SuspendMcis(pb.McisActionRequest(namespace=ns, name="web", wait=True))
    assert suspended.status == "Suspended:6 (R:0/6)"
    err = await expect_error(grpc.StatusCode.FAILED_PRECONDITION,
                             tumblebug_client.SuspendMcis(pb.McisActionRequest(namespace=ns, name="web")))
    assert "Suspended" in (err.details() or "")
    resumed = await tumblebug_client.ResumeMcis(pb.McisActionRequest(namespace=ns, name="web", wait=True))
    assert resumed.status == "Running:6 (R:6/6)"

    grown = await tumblebug_client.ScaleSubgroup(pb.ScaleSubgroupRequest(namespace=ns, mcis="web", subgroup="g0", size=5,
                                                           wait=True))
    assert grown.status == "Running:9 (R:9/9)"
    shrunk = await tumblebug_client.ScaleSubgroup(pb.ScaleSubgroupRequest(namespace=ns, mcis="web", subgroup="g0", size=2,
                                                            wait=True))
    assert shrunk.status == "Running:6 (R:6/6)"
    names = {v.name for v in (await tumblebug_client.ListMcisVms(pb.ListMcisVmsRequest(namespace=ns, mcis="web"))).vms}
    assert {"g0-1", "g0-2"} <= names and "g0-5" not in names

    await expect_error(grpc.StatusCode.FAILED_PRECONDITION, tumblebug_client.DeleteMcis(pb.DeleteMcisRequest(namespace=ns,
                                                                                               name="web")))
    terminated = await tumblebug_client.TerminateMcis(pb.McisActionRequest(namespace=ns, name="web", wait=True))
    assert terminated.status == "Terminated:6 (R:0/6)"
    await tumblebug_client.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name="web", wait=True))
    await expect_error(grpc.StatusCode.NOT_FOUND, tumblebug_client.GetMcis(pb.GetMcisRequest(namespace=ns, name="web")))

    for collection in ("security-groups", "ssh-keys", "vnets"):
        for res in (await tumblebug_client.ListResources(pb.ListResourcesRequest(namespace=ns,
                                                                                 collection=collection))).resources:
            await tumblebug_client.DeleteResource(pb.DeleteResourceRequest(namespace=ns, collection=collection,
                                                                           name=res.name))
    await tumblebug_client.DeleteNamespace(pb.DeleteNamespaceRequest(name=ns))
    for c in conns:
        assert await twin_vm_names(cloudtwin_process, c) == set()
