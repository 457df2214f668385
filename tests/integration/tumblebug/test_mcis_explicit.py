"""Namespace resources, an explicit MCIS built from them, groups added, VMs adopted,
watching, and the errors a user meets on the way."""

from __future__ import annotations

import asyncio
import uuid

import grpc

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as tw_grpc
from cbapi.common.v1 import common_pb2 as common
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
    settled_at,
    twin_vm_names,
    wait_mcis,
)


async def _resources(tb: tumblebug_pb2_grpc.TumblebugStub, stub: spider_pb2_grpc.SpiderStub, ns: str,
                     conn: str) -> None:
    spec, image = await cheapest_spec_and_image(stub, conn)
    make = [
        ("vnets", pb.Resource(name="net", connection=conn, vnet=pb.VNet(
            ipv4_cidr="10.5.0.0/16", subnets=[pb.Subnet(name="main", ipv4_cidr="10.5.1.0/24")]))),
        ("security-groups", pb.Resource(name="fw", connection=conn, security_group=pb.SecurityGroup(
            vnet="net", rules=[pb.FirewallRule(direction="inbound", protocol="tcp", from_port=22, to_port=22,
                                               cidr="0.0.0.0/0")]))),
        ("ssh-keys", pb.Resource(name="key", connection=conn, ssh_key=pb.SshKey())),
        ("specs", pb.Resource(name="small", connection=conn, spec_ref=pb.SpecRef(csp_spec=spec))),
        ("images", pb.Resource(name="os", connection=conn, image_ref=pb.ImageRef(csp_image=image))),
    ]
    for collection, res in make:
        made = await tb.CreateResource(pb.CreateResourceRequest(namespace=ns, collection=collection, resource=res))
        assert made.status == "Ready" and made.collection == collection
        if collection == "ssh-keys":
            assert "PRIVATE KEY" in made.ssh_key.private_key  # once, here
            again = await tb.GetResource(pb.GetResourceRequest(namespace=ns, collection=collection, name="key"))
            assert again.ssh_key.private_key == "" and again.ssh_key.fingerprint


async def test_explicit_mcis_from_namespace_resources(tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                                      spider_client: spider_pb2_grpc.SpiderStub,
                                                      cloudtwin_process: servers.Server) -> None:
    ns = await namespace(tumblebug_client)
    conn = (await connections(spider_client, cloudtwin_process, 1))[0]
    await _resources(tumblebug_client, spider_client, ns, conn.name)
    spec = (await tumblebug_client.GetResource(pb.GetResourceRequest(namespace=ns, collection="specs",
                                                                     name="small"))).spec_ref
    assert spec.vcpu > 0 and spec.price_per_hour > 0
    group = pb.Subgroup(name="app", connection=conn.name, spec="small", image="os", vnet="net", subnet="main",
                        security_groups=["fw"], ssh_key="key", size=2)
    request = pb.CreateMcisRequest(namespace=ns, mcis=pb.Mcis(name="app", subgroups=[group]),
                                   request_id=uuid.uuid4().hex)
    watched: list[str] = []

    async def watch() -> None:
        async for snapshot in tumblebug_client.WatchMcis(pb.WatchMcisRequest(namespace=ns, name="app")):
            watched.append(snapshot.status)
            if snapshot.status == "Running:2 (R:2/2)":
                return

    made = await tumblebug_client.CreateMcis(request)
    watcher = asyncio.create_task(watch())
    again = await tumblebug_client.CreateMcis(request)  # the same request: the same MCIS, no second one
    assert again.create_time == made.create_time
    await expect_error(grpc.StatusCode.ALREADY_EXISTS, tumblebug_client.CreateMcis(pb.CreateMcisRequest(
        namespace=ns, mcis=pb.Mcis(name="app", subgroups=[group]))))
    await asyncio.wait_for(watcher, 30)
    assert watched[0] in ("Creating", "Empty:0 (R:0/0)") or watched[0].startswith("Creating")
    assert watched[-1] == "Running:2 (R:2/2)"

    vm = await tumblebug_client.GetMcisVm(pb.GetMcisVmRequest(namespace=ns, mcis="app", name="app-1"))
    assert vm.status == common.RUNNING and vm.iid.csp_id and vm.target_action == pb.ACTION_NONE
    full = await tumblebug_client.GetMcis(pb.GetMcisRequest(namespace=ns, name="app", vms=True))
    assert len(full.vms) == 2 and full.subgroups[0].csp_spec

    # A resource an MCIS uses cannot go; neither can a namespace that holds things.
    await expect_error(grpc.StatusCode.FAILED_PRECONDITION, tumblebug_client.DeleteResource(pb.DeleteResourceRequest(
        namespace=ns, collection="security-groups", name="fw")))
    await expect_error(grpc.StatusCode.FAILED_PRECONDITION,
                       tumblebug_client.DeleteNamespace(pb.DeleteNamespaceRequest(name=ns)))

    # Another group, on the same resources, joins the running MCIS.
    group2 = pb.Subgroup(name="db", connection=conn.name, spec="small", image="os", vnet="net", subnet="main",
                         security_groups=["fw"], ssh_key="key", size=1)
    await tumblebug_client.AddSubgroup(pb.AddSubgroupRequest(namespace=ns, mcis="app", subgroup=group2, wait=True))
    done = await wait_mcis(tumblebug_client, ns, "app", settled_at("Running"))
    assert done.status == "Running:3 (R:3/3)"

    # One VM only: suspend db-1, the rest keep running.
    one = await tumblebug_client.SuspendMcis(pb.McisActionRequest(namespace=ns, name="app", vm="db-1", wait=True))
    assert one.status == "Partial-Running:2 (R:2/3)" and one.status_count.suspended == 1
    await tumblebug_client.TerminateMcis(pb.McisActionRequest(namespace=ns, name="app", wait=True, force=True))
    await tumblebug_client.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name="app", wait=True))
    assert await twin_vm_names(cloudtwin_process, conn) == set()
    for collection, name in (("security-groups", "fw"), ("ssh-keys", "key"), ("vnets", "net"), ("specs", "small"),
                             ("images", "os")):
        await tumblebug_client.DeleteResource(pb.DeleteResourceRequest(namespace=ns, collection=collection, name=name))
    await tumblebug_client.DeleteNamespace(pb.DeleteNamespaceRequest(name=ns))


async def _cloud_vm(twin: servers.Server, conn: servers.TwinConnection, spec: str, image: str) -> tw.Resource:
    """A VM made in the cloud directly, as another tool would: spider knows nothing of it."""
    async with channel(twin.address) as ch:
        return await tw_grpc.CloudTwinStub(ch).CreateResource(tw.CreateResourceRequest(
            provider=conn.provider, region=conn.region, name=f"legacy-{uuid.uuid4().hex[:4]}",
            vm=tw.VmProps(spec=spec, image_id=image)),
            metadata=(("x-twin-access-key", conn.access_key), ("x-twin-secret-key", conn.secret_key)))


async def test_register_existing_vms(tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                     spider_client: spider_pb2_grpc.SpiderStub,
                                     cloudtwin_process: servers.Server) -> None:
    ns = await namespace(tumblebug_client)
    conn = (await connections(spider_client, cloudtwin_process, 1))[0]
    spec, image = await cheapest_spec_and_image(spider_client, conn.name)
    await tumblebug_client.CreateMcisDynamic(pb.CreateMcisDynamicRequest(namespace=ns, name="m", subgroups=[
        pb.DynamicSubgroup(name="g", spec_id=f"{conn.name}+{spec}", image_id=image, size=1)], wait=True))
    legacy = await _cloud_vm(cloudtwin_process, conn, spec, image)
    after = await tumblebug_client.RegisterVms(pb.RegisterVmsRequest(
        namespace=ns, mcis="m", subgroup="adopted", connection=conn.name,
        vms=[pb.RegisteredVm(name="legacy", csp_id=legacy.id)]))
    assert [sg.size for sg in after.subgroups if sg.name == "adopted"] == [1]
    vm = await tumblebug_client.GetMcisVm(pb.GetMcisVmRequest(namespace=ns, mcis="m", name="legacy"))
    assert vm.registered and vm.iid.csp_id == legacy.id
    done = await wait_mcis(tumblebug_client, ns, "m", settled_at("Running"))
    assert done.status == "Running:2 (R:2/2)"  # adopted, not made again
    await expect_error(grpc.StatusCode.ALREADY_EXISTS, tumblebug_client.RegisterVms(pb.RegisterVmsRequest(
        namespace=ns, mcis="m", subgroup="again", connection=conn.name,
        vms=[pb.RegisteredVm(name="twice", csp_id=legacy.id)])))
    await expect_error(grpc.StatusCode.NOT_FOUND, tumblebug_client.RegisterVms(pb.RegisterVmsRequest(
        namespace=ns, mcis="m", subgroup="ghost", connection=conn.name,
        vms=[pb.RegisteredVm(name="ghost", csp_id="i-does-not-exist")])))
    await tumblebug_client.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name="m", terminate=True, wait=True))
    assert await twin_vm_names(cloudtwin_process, conn) == set()  # adopted VMs go with their MCIS


async def test_bad_requests_say_what_is_wrong(tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                              spider_client: spider_pb2_grpc.SpiderStub,
                                              cloudtwin_process: servers.Server) -> None:
    ns = await namespace(tumblebug_client)
    conn = (await connections(spider_client, cloudtwin_process, 1))[0]
    spec, image = await cheapest_spec_and_image(spider_client, conn.name)
    good = pb.DynamicSubgroup(name="g", spec_id=f"{conn.name}+{spec}", image_id=image, size=1)
    await expect_error(grpc.StatusCode.NOT_FOUND, tumblebug_client.CreateMcisDynamic(pb.CreateMcisDynamicRequest(
        namespace="no-such-ns", name="m", subgroups=[good])))
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, tumblebug_client.CreateMcisDynamic(pb.CreateMcisDynamicRequest(
        namespace=ns, name="Bad Name", subgroups=[good])), "name")
    bad_spec = pb.DynamicSubgroup(name="g", spec_id="no-plus-sign", image_id=image, size=1)
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, tumblebug_client.CreateMcisDynamic(pb.CreateMcisDynamicRequest(
        namespace=ns, name="m", subgroups=[bad_spec])), "subgroups[0].spec_id")
    no_spec = pb.DynamicSubgroup(name="g", spec_id=f"{conn.name}+no-such-spec", image_id=image, size=1)
    await expect_error(grpc.StatusCode.NOT_FOUND, tumblebug_client.CreateMcisDynamic(pb.CreateMcisDynamicRequest(
        namespace=ns, name="m", subgroups=[no_spec])))
    zero = pb.DynamicSubgroup(name="g", spec_id=f"{conn.name}+{spec}", image_id=image, size=0)
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, tumblebug_client.CreateMcisDynamic(pb.CreateMcisDynamicRequest(
        namespace=ns, name="m", subgroups=[zero])), "subgroups[0].size")
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, tumblebug_client.CreateResource(pb.CreateResourceRequest(
        namespace=ns, collection="widgets", resource=pb.Resource(name="w", connection=conn.name))), "collection")
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, tumblebug_client.CreateResource(pb.CreateResourceRequest(
        namespace=ns, collection="vnets", resource=pb.Resource(name="n", connection=conn.name))), "resource.vnet")
    await expect_error(grpc.StatusCode.NOT_FOUND, tumblebug_client.CreateResource(pb.CreateResourceRequest(
        namespace=ns, collection="vnets", resource=pb.Resource(name="n", connection="no-such-conn",
                                                                vnet=pb.VNet(ipv4_cidr="10.0.0.0/16")))))
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, tumblebug_client.CreateResource(pb.CreateResourceRequest(
        namespace=ns, collection="vnets", resource=pb.Resource(name="n", connection=conn.name,
                                                                vnet=pb.VNet(ipv4_cidr="10.0.0.0/99")))))
    await expect_error(grpc.StatusCode.NOT_FOUND, tumblebug_client.GetMcis(pb.GetMcisRequest(namespace=ns, name="nothing")))
    await tumblebug_client.CreateMcisDynamic(pb.CreateMcisDynamicRequest(namespace=ns, name="m", subgroups=[good],
                                                                         wait=True))
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, tumblebug_client.ScaleSubgroup(pb.ScaleSubgroupRequest(
        namespace=ns, mcis="m", subgroup="g", size=-1)), "size")
    await expect_error(grpc.StatusCode.NOT_FOUND, tumblebug_client.ScaleSubgroup(pb.ScaleSubgroupRequest(
        namespace=ns, mcis="m", subgroup="nope", size=2)))
    await expect_error(grpc.StatusCode.FAILED_PRECONDITION, tumblebug_client.ResumeMcis(pb.McisActionRequest(namespace=ns,
                                                                                                             name="m")))
    await tumblebug_client.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name="m", terminate=True, wait=True))
