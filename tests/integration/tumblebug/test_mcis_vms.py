"""One VM of an MCIS: taken out alone, given a data disk, acted on without changing the MCIS's
target, and its error cleared once it got where it was asked to be."""

from __future__ import annotations

import asyncio
import time

import grpc

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as spb
from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services.store import Store
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
from tumblebug import keyspace


async def _mcis(tb: tumblebug_pb2_grpc.TumblebugStub, stub: spider_pb2_grpc.SpiderStub, ns: str, conn: str,
                size: int) -> pb.Mcis:
    spec, image = await cheapest_spec_and_image(stub, conn)
    await tb.CreateMcisDynamic(pb.CreateMcisDynamicRequest(namespace=ns, name="web", install_agent=False, subgroups=[
        pb.DynamicSubgroup(name="g", spec_id=f"{conn}+{spec}", image_id=image, size=size)]))
    return await wait_mcis(tb, ns, "web", settled_at("Running"))


async def _vms(tb: tumblebug_pb2_grpc.TumblebugStub, ns: str) -> dict[str, pb.McisVm]:
    return {v.name: v for v in (await tb.ListMcisVms(pb.ListMcisVmsRequest(namespace=ns, mcis="web"))).vms}


async def test_one_vm_leaves_its_mcis(tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                      spider_client: spider_pb2_grpc.SpiderStub,
                                      cloudtwin_process: servers.Server) -> None:
    ns = await namespace(tumblebug_client)
    conn = (await connections(spider_client, cloudtwin_process, 1))[0]
    await _mcis(tumblebug_client, spider_client, ns, conn.name, 3)
    err = await expect_error(grpc.StatusCode.FAILED_PRECONDITION, tumblebug_client.DeleteMcisVm(pb.DeleteMcisVmRequest(
        namespace=ns, mcis="web", name="g-2")))
    assert "Running" in (err.details() or "") and "terminate" in (err.details() or "")
    await expect_error(grpc.StatusCode.NOT_FOUND, tumblebug_client.DeleteMcisVm(pb.DeleteMcisVmRequest(
        namespace=ns, mcis="web", name="g-9", terminate=True)))
    gone = (await _vms(tumblebug_client, ns))["g-2"].iid.name
    after = await tumblebug_client.DeleteMcisVm(pb.DeleteMcisVmRequest(namespace=ns, mcis="web", name="g-2", terminate=True,
                                                         wait=True))
    assert after.subgroups[0].size == 2 and after.status == "Running:2 (R:2/2)"
    assert set(await _vms(tumblebug_client, ns)) == {"g-1", "g-3"}  # no VM made in its place
    names = await twin_vm_names(cloudtwin_process, conn)
    assert len(names) == 2 and not any(n.startswith(gone) for n in names)
    await expect_error(grpc.StatusCode.NOT_FOUND, spider_client.GetVm(spb.GetResourceRequest(connection=conn.name,
                                                                                             name=gone)))
    await tumblebug_client.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name="web", terminate=True, wait=True))


async def test_data_disk_attached_to_an_mcis_vm(tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                                spider_client: spider_pb2_grpc.SpiderStub,
                                                cloudtwin_process: servers.Server) -> None:
    ns = await namespace(tumblebug_client)
    one, two = [c.name for c in await connections(spider_client, cloudtwin_process, 2)]
    await _mcis(tumblebug_client, spider_client, ns, one, 2)
    for name, conn in (("data", one), ("far", two)):
        await tumblebug_client.CreateResource(pb.CreateResourceRequest(namespace=ns, collection="data-disks",
                                                                       resource=pb.Resource(
            name=name, connection=conn, data_disk=pb.DataDisk(size_gib=10))))
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, tumblebug_client.AttachDataDisk(pb.VmDataDiskRequest(
        namespace=ns, mcis="web", name="g-1", data_disk="far")), field="data_disk")
    await expect_error(grpc.StatusCode.NOT_FOUND, tumblebug_client.AttachDataDisk(pb.VmDataDiskRequest(
        namespace=ns, mcis="web", name="g-1", data_disk="none")))
    disk = (await tumblebug_client.GetResource(pb.GetResourceRequest(namespace=ns, collection="data-disks",
                                                                     name="data"))).iid.name
    # While the cloud still makes the disk, an attach is refused, saying so; the disk may finish
    # between any two calls, so the attach that works ends the loop whenever it comes.
    deadline = time.monotonic() + 30
    while True:
        try:
            vm = await tumblebug_client.AttachDataDisk(pb.VmDataDiskRequest(namespace=ns, mcis="web", name="g-1",
                                                                            data_disk="data"))
            break
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err
            assert "still being made" in (err.details() or "") and time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert list(vm.data_disks) == ["data"]
    again = await tumblebug_client.AttachDataDisk(pb.VmDataDiskRequest(namespace=ns, mcis="web", name="g-1",
                                                                       data_disk="data"))
    assert list(again.data_disks) == ["data"]  # asked twice: attached once
    cloud = await spider_client.GetDisk(spb.GetResourceRequest(connection=one, name=disk))
    assert cloud.attached_vm == vm.iid.name
    err = await expect_error(grpc.StatusCode.FAILED_PRECONDITION, tumblebug_client.AttachDataDisk(pb.VmDataDiskRequest(
        namespace=ns, mcis="web", name="g-2", data_disk="data")))
    assert "another VM" in (err.details() or "")
    await expect_error(grpc.StatusCode.FAILED_PRECONDITION, tumblebug_client.DeleteMcisVm(pb.DeleteMcisVmRequest(
        namespace=ns, mcis="web", name="g-1", terminate=True)))
    vm = await tumblebug_client.DetachDataDisk(pb.VmDataDiskRequest(namespace=ns, mcis="web", name="g-1", data_disk="data"))
    assert list(vm.data_disks) == []
    assert not (await spider_client.GetDisk(spb.GetResourceRequest(connection=one, name=disk))).attached_vm
    await tumblebug_client.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name="web", terminate=True, wait=True))


async def test_a_vm_verb_keeps_the_mcis_target_and_errors_clear(tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                                                spider_client: spider_pb2_grpc.SpiderStub,
                                                                cloudtwin_process: servers.Server,
                                                                etcd_process: servers.Server) -> None:
    ns = await namespace(tumblebug_client)
    conn = (await connections(spider_client, cloudtwin_process, 1))[0]
    await _mcis(tumblebug_client, spider_client, ns, conn.name, 2)
    done = await tumblebug_client.SuspendMcis(pb.McisActionRequest(namespace=ns, name="web", vm="g-1", wait=True))
    assert done.status == "Partial-Running:1 (R:1/2)"
    assert done.target_status == common.RUNNING and done.target_action == pb.ACTION_NONE
    assert (await _vms(tumblebug_client, ns))["g-1"].status == common.SUSPENDED
    await tumblebug_client.ResumeMcis(pb.McisActionRequest(namespace=ns, name="web", vm="g-1", wait=True))

    # A VM that met a problem on its way (here: recorded as a refused verb would leave it) and then got
    # where it was asked to be carries no error any more.
    store = Store("127.0.0.1", etcd_process.port)
    try:
        def stale(vm: pb.McisVm) -> pb.McisVm:
            vm.status = common.CREATING
            vm.error = "InvalidInstanceState: the instance is busy"
            return vm

        await store.modify(keyspace.vm(ns, "web", "g-2"), pb.McisVm, stale, "g-2")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            vm = (await _vms(tumblebug_client, ns))["g-2"]
            if vm.status == common.RUNNING:
                break
            await asyncio.sleep(0.1)
        assert vm.status == common.RUNNING and vm.error == ""
    finally:
        await store.close()
    await tumblebug_client.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name="web", terminate=True, wait=True))
