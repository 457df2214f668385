"""Key pairs, VMs and their verbs, disks."""

from __future__ import annotations

import uuid

import grpc

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from cbapi.spider.v1 import spider_pb2_grpc
from tests.helpers import expect_error, until_ok, wait_disk_status, wait_vm_status
from tests.integration.conformance.conftest import need
from tests.integration.conformance.targets import Target
from tests.support.spider import vpc_request


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def vm_request(target: Target, name: str, **fields: object) -> pb.CreateVmRequest:
    vm = pb.Vm(iid=common.IID(name=name), image=target.image, spec=target.spec, **fields)  # type: ignore[arg-type]
    return pb.CreateVmRequest(connection=target.connection, vm=vm, request_id=uuid.uuid4().hex)


async def test_key_pair_private_key_is_returned_once(spider_client: spider_pb2_grpc.SpiderStub, target: Target) -> None:
    need(target, "key_pair")
    c, name = target.connection, _name("kp")
    made = await spider_client.CreateKeyPair(pb.CreateKeyPairRequest(connection=c,
                                                                     key_pair=pb.KeyPair(iid=common.IID(name=name))))
    assert "PRIVATE KEY" in made.private_key and made.fingerprint
    got = await spider_client.GetKeyPair(pb.GetResourceRequest(connection=c, name=name))
    assert got.private_key == "" and got.fingerprint == made.fingerprint
    listed = await spider_client.ListKeyPairs(pb.ListResourcesRequest(connection=c))
    assert all(k.private_key == "" for k in listed.key_pairs)
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, spider_client.CreateKeyPair(pb.CreateKeyPairRequest(
        connection=c, key_pair=pb.KeyPair(iid=common.IID(name=_name("kp")), public_key="not a key"))),
        "key_pair.public_key")
    if target.capabilities.key_pair_import:
        imported = await spider_client.CreateKeyPair(pb.CreateKeyPairRequest(connection=c, key_pair=pb.KeyPair(
            iid=common.IID(name=_name("kp")), public_key=made.public_key)))
        assert imported.private_key == "" and imported.iid.csp_id
        await spider_client.DeleteKeyPair(pb.DeleteResourceRequest(connection=c, name=imported.iid.name))
    await spider_client.DeleteKeyPair(pb.DeleteResourceRequest(connection=c, name=name))


async def test_vm_lifecycle_and_wrong_state(spider_client: spider_pb2_grpc.SpiderStub, target: Target) -> None:
    need(target, "vm", "vpc", "security_group", "key_pair")
    c, vpc, sg, kp, vm = target.connection, _name("vpc"), _name("sg"), _name("kp"), _name("vm")
    await spider_client.CreateVpc(vpc_request(c, vpc))
    await spider_client.CreateSecurityGroup(pb.CreateSecurityGroupRequest(connection=c, security_group=pb.SecurityGroup(
        iid=common.IID(name=sg), vpc=vpc)))
    await spider_client.CreateKeyPair(pb.CreateKeyPairRequest(connection=c, key_pair=pb.KeyPair(iid=common.IID(name=kp))))
    made = await spider_client.CreateVm(vm_request(target, vm, vpc=vpc, subnet="front", security_groups=[sg], key_pair=kp,
                                          user_data="#cloud-config\n"))
    assert made.iid.csp_id and made.status in (common.CREATING, common.RUNNING)
    assert made.user_data == "" and made.private_ip
    await wait_vm_status(spider_client, c, vm, common.RUNNING)
    if target.capabilities.vm_suspend:
        await spider_client.SuspendVm(pb.VmActionRequest(connection=c, name=vm))
        await wait_vm_status(spider_client, c, vm, common.SUSPENDED)
        err = await expect_error(grpc.StatusCode.FAILED_PRECONDITION,
                                 spider_client.SuspendVm(pb.VmActionRequest(connection=c, name=vm)))
        assert "Suspended" in (err.details() or "")
        await spider_client.ResumeVm(pb.VmActionRequest(connection=c, name=vm))
        await wait_vm_status(spider_client, c, vm, common.RUNNING)
    else:
        await expect_error(grpc.StatusCode.FAILED_PRECONDITION, spider_client.ResumeVm(pb.VmActionRequest(connection=c,
                                                                                                          name=vm)))
    if target.capabilities.vm_reboot:
        await spider_client.RebootVm(pb.VmActionRequest(connection=c, name=vm))
        await wait_vm_status(spider_client, c, vm, common.RUNNING)
    got = await spider_client.GetVm(pb.GetResourceRequest(connection=c, name=vm))
    assert got.vpc == vpc and list(got.security_groups) == [sg] and got.key_pair == kp
    listed = await spider_client.ListVms(pb.ListResourcesRequest(connection=c))
    assert {v.iid.name: v.status for v in listed.vms}[vm] == common.RUNNING
    await spider_client.DeleteVm(pb.DeleteResourceRequest(connection=c, name=vm))
    assert made.iid.csp_id not in await target.cloud_vm_ids()
    await expect_error(grpc.StatusCode.NOT_FOUND, spider_client.GetVmStatus(pb.GetResourceRequest(connection=c, name=vm)))
    # The cloud frees what the VM used once it is terminated, a moment after the delete.
    for delete, name in ((spider_client.DeleteKeyPair, kp), (spider_client.DeleteSecurityGroup, sg),
                         (spider_client.DeleteVpc, vpc)):
        await until_ok(lambda d=delete, n=name: d(pb.DeleteResourceRequest(connection=c, name=n)))


async def test_vm_create_is_idempotent_by_request_id(spider_client: spider_pb2_grpc.SpiderStub, target: Target) -> None:
    need(target, "vm")
    req = vm_request(target, _name("vm"))
    before = await target.cloud_vm_ids()
    first = await spider_client.CreateVm(req)
    again = await spider_client.CreateVm(req)
    assert again.iid.csp_id == first.iid.csp_id
    assert len(await target.cloud_vm_ids() - before) == 1
    other = vm_request(target, req.vm.iid.name)  # same name, another request
    await expect_error(grpc.StatusCode.ALREADY_EXISTS, spider_client.CreateVm(other))
    await spider_client.DeleteVm(pb.DeleteResourceRequest(connection=target.connection, name=req.vm.iid.name))


async def test_vm_bad_references(spider_client: spider_pb2_grpc.SpiderStub, target: Target) -> None:
    need(target, "vm")
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, spider_client.CreateVm(vm_request(target, "9starts-with-digit")),
                       "vm.iid.name")
    missing_vpc = vm_request(target, _name("vm"), vpc="no-such-vpc")
    err = await expect_error(grpc.StatusCode.NOT_FOUND, spider_client.CreateVm(missing_vpc))
    assert "vm.vpc" in (err.details() or "")
    # The intent is written with the reads of the references: a reference missing drops it again.
    await expect_error(grpc.StatusCode.NOT_FOUND, spider_client.GetVm(pb.GetResourceRequest(
        connection=target.connection, name=missing_vpc.vm.iid.name)))
    no_image = vm_request(target, _name("vm"))
    no_image.vm.image = ""
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, spider_client.CreateVm(no_image), "vm.image")
    bad_image = vm_request(target, _name("vm"))
    bad_image.vm.image = "img-does-not-exist"
    try:
        await spider_client.CreateVm(bad_image)
        raise AssertionError("a VM with an unknown image was created")
    except grpc.aio.AioRpcError as err:
        # Unknown, or not even shaped like an ID of this cloud: either answer must name it.
        assert err.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), err.code()
        assert "img-does-not-exist" in (err.details() or "")
    await expect_error(grpc.StatusCode.NOT_FOUND, spider_client.GetVm(pb.GetResourceRequest(
        connection=target.connection, name=bad_image.vm.iid.name)))  # a refused create leaves no record


async def test_disk_lifecycle(spider_client: spider_pb2_grpc.SpiderStub, target: Target) -> None:
    need(target, "disk", "vm")
    c, disk, vm = target.connection, _name("disk"), _name("vm")
    await spider_client.CreateVm(vm_request(target, vm))
    await wait_vm_status(spider_client, c, vm, common.RUNNING)
    made = await spider_client.CreateDisk(pb.CreateDiskRequest(connection=c, disk=pb.Disk(iid=common.IID(name=disk),
                                                                                          size_gib=10)))
    assert made.iid.csp_id and made.size_gib == 10
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, spider_client.CreateDisk(pb.CreateDiskRequest(
        connection=c, disk=pb.Disk(iid=common.IID(name=_name("disk")), size_gib=0))), "disk.size_gib")
    await wait_disk_status(spider_client, c, disk, "available")
    attached = await spider_client.AttachDisk(pb.AttachDiskRequest(connection=c, name=disk, vm=vm))
    assert attached.attached_vm == vm and attached.status == "attached"
    # The VM lists its data disks by their spider names (CB-Spider's DataDiskIIDs), read and listed.
    assert list((await spider_client.GetVm(pb.GetResourceRequest(connection=c, name=vm))).disks) == [disk]
    listed = await spider_client.ListVms(pb.ListResourcesRequest(connection=c, page_size=1000))
    assert [list(v.disks) for v in listed.vms if v.iid.name == vm] == [[disk]]
    await expect_error(grpc.StatusCode.FAILED_PRECONDITION,
                       spider_client.AttachDisk(pb.AttachDiskRequest(connection=c, name=disk, vm=vm)))
    await expect_error(grpc.StatusCode.FAILED_PRECONDITION,
                       spider_client.DeleteDisk(pb.DeleteResourceRequest(connection=c, name=disk)))
    detached = await spider_client.DetachDisk(pb.DetachDiskRequest(connection=c, name=disk))
    assert detached.attached_vm == ""
    assert list((await spider_client.GetVm(pb.GetResourceRequest(connection=c, name=vm))).disks) == []
    if target.capabilities.disk_resize:
        grown = await spider_client.ResizeDisk(pb.ResizeDiskRequest(connection=c, name=disk, size_gib=20))
        assert grown.size_gib == 20
        await expect_error(grpc.StatusCode.INVALID_ARGUMENT,
                           spider_client.ResizeDisk(pb.ResizeDiskRequest(connection=c, name=disk, size_gib=5)), "size_gib")
    await spider_client.DeleteDisk(pb.DeleteResourceRequest(connection=c, name=disk))
    await spider_client.DeleteVm(pb.DeleteResourceRequest(connection=c, name=vm))


async def test_register_and_reconcile(spider_client: spider_pb2_grpc.SpiderStub, target: Target) -> None:
    need(target, "vpc", "register")
    c = target.connection
    csp_id = await target.cloud_make_vpc(_name("outside"))
    before = await spider_client.ReconcileResources(pb.ReconcileResourcesRequest(connection=c, collection="vpcs"))
    assert csp_id in {i.csp_id for i in before.only_cloud}
    name = _name("adopted")
    reg = await spider_client.RegisterResource(pb.RegisterResourceRequest(connection=c, collection="vpcs", name=name,
                                                                 csp_id=csp_id))
    assert reg.iid.name == name and reg.iid.csp_id == csp_id
    await expect_error(grpc.StatusCode.ALREADY_EXISTS, spider_client.RegisterResource(pb.RegisterResourceRequest(
        connection=c, collection="vpcs", name=_name("again"), csp_id=csp_id)))
    await expect_error(grpc.StatusCode.NOT_FOUND, spider_client.RegisterResource(pb.RegisterResourceRequest(
        connection=c, collection="vpcs", name=_name("ghost"), csp_id="vpc-does-not-exist")))
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, spider_client.RegisterResource(pb.RegisterResourceRequest(
        connection=c, collection="widgets", name=_name("w"), csp_id="x")), "collection")
    after = await spider_client.ReconcileResources(pb.ReconcileResourcesRequest(connection=c, collection="vpcs"))
    assert name in {i.name for i in after.mapped} and csp_id not in {i.csp_id for i in after.only_cloud}
    # Unregister forgets the name and leaves the VPC in the cloud, where it can be adopted again.
    gone = await spider_client.UnregisterResource(pb.UnregisterResourceRequest(connection=c, collection="vpcs", name=name))
    assert gone.iid.name == name and gone.iid.csp_id == csp_id
    await expect_error(grpc.StatusCode.NOT_FOUND, spider_client.GetVpc(pb.GetResourceRequest(connection=c, name=name)))
    await expect_error(grpc.StatusCode.NOT_FOUND, spider_client.UnregisterResource(pb.UnregisterResourceRequest(
        connection=c, collection="vpcs", name=name)))
    forgotten = await spider_client.ReconcileResources(pb.ReconcileResourcesRequest(connection=c, collection="vpcs"))
    assert csp_id in {i.csp_id for i in forgotten.only_cloud}
    assert any(i.endswith(csp_id) for i in await target.cloud_inventory())  # as the cloud's own client sees it
    await spider_client.RegisterResource(pb.RegisterResourceRequest(connection=c, collection="vpcs", name=name,
                                                                    csp_id=csp_id))
    await spider_client.DeleteVpc(pb.DeleteResourceRequest(connection=c, name=name))


async def test_call_log_records_cloud_calls(spider_client: spider_pb2_grpc.SpiderStub, target: Target) -> None:
    need(target, "specs")
    await spider_client.ListSpecs(pb.ListSpecsRequest(connection=target.connection))
    log = await spider_client.ListCallLog(pb.ListCallLogRequest(connection=target.connection, page_size=1000))
    assert log.entries and all(e.connection == target.connection and e.cloud_api for e in log.entries)
    assert all(e.elapsed_seconds >= 0 for e in log.entries)
    stats = await spider_client.GetCallStats(pb.GetCallStatsRequest(connection=target.connection))
    assert stats.stats and all(s.calls >= 1 and s.p99_seconds >= s.p50_seconds for s in stats.stats)


async def test_watch_vm_streams_status_changes(spider_client: spider_pb2_grpc.SpiderStub, target: Target) -> None:
    need(target, "vm")
    c, vm = target.connection, _name("vm")
    await spider_client.CreateVm(vm_request(target, vm))
    seen = []
    async for snapshot in spider_client.WatchVm(pb.WatchVmRequest(connection=c, name=vm, interval_seconds=0.2)):
        seen.append(snapshot.status)
        if snapshot.status == common.RUNNING:
            break
    assert seen[-1] == common.RUNNING and len(seen) == len(set(seen))  # one message per change
    await spider_client.DeleteVm(pb.DeleteResourceRequest(connection=c, name=vm))
    ended = [s async for s in spider_client.WatchVm(pb.WatchVmRequest(connection=c, name=vm))]
    assert ended == []
