"""Data disks of MCIS VMs: attach and detach through spider, then recorded on the VM."""

from __future__ import annotations

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as spb
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.proto_time import now
from services.store import Store
from tumblebug import keyspace
from tumblebug.mcis import status
from tumblebug.mcis.reads import McisReads
from tumblebug.resources import Resources
from tumblebug.spider_client import Spider


class DataDisks:
    """AttachMcisVmDataDisk and DetachMcisVmDataDisk."""

    def __init__(self, store: Store, spider: Spider, resources: Resources, reads: McisReads) -> None:
        self.store = store
        self.spider = spider
        self.resources = resources
        self.reads = reads

    async def attach_disk(self, req: pb.VmDataDiskRequest, attach: bool) -> pb.McisVm:
        """Attach (or detach) a namespace data disk to an MCIS VM through spider, then record it on
        the VM. Spider's answer is the truth: a retry after a lost record write finds the disk
        already where it was asked to be and only records it."""
        ns, vm_key = req.namespace, keyspace.vm(req.namespace, req.mcis, req.name)
        field = "data_disk"
        if not req.data_disk:
            raise errors.InvalidArgument.field(field, "is required")
        await self.reads.get(ns, req.mcis)
        vm = (await self.store.must_get(vm_key, pb.McisVm, f"VM {req.name!r} in MCIS {req.mcis!r}")).value
        disk = await self.resources.ready(ns, "data-disks", req.data_disk, field)
        if disk.connection != vm.connection:
            raise errors.InvalidArgument.field(field, f"{req.data_disk!r} is on connection {disk.connection!r}, "
                                                      f"the VM on {vm.connection!r}")
        if vm.removing or not vm.iid.csp_id:
            raise errors.FailedPrecondition(f"VM {req.name!r} is {'being removed' if vm.removing else 'not made yet'}")
        cloud = await self.spider.call(self.spider.stub.GetDisk, spb.GetResourceRequest(
            connection=disk.connection, name=disk.iid.name))
        if attach:
            if cloud.status == "creating":
                raise errors.FailedPrecondition(f"{field}: {req.data_disk!r} is still being made in its cloud; "
                                                "retry in a moment")
            if cloud.attached_vm and cloud.attached_vm != vm.iid.name:
                raise errors.FailedPrecondition(f"{field}: {req.data_disk!r} is attached to another VM "
                                                f"({cloud.attached_vm})")
            if vm.status not in (common.RUNNING, common.SUSPENDED):
                raise errors.FailedPrecondition(f"VM {req.name!r} is {status.word(vm.status)}; "
                                                "a disk is attached to a Running or Suspended VM")
            if cloud.attached_vm != vm.iid.name:
                await self.spider.call(self.spider.stub.AttachDisk, spb.AttachDiskRequest(
                    connection=disk.connection, name=disk.iid.name, vm=vm.iid.name))
        else:
            if req.data_disk not in vm.data_disks and cloud.attached_vm != vm.iid.name:
                raise errors.FailedPrecondition(f"{field}: {req.data_disk!r} is not attached to VM {req.name!r}")
            if cloud.attached_vm == vm.iid.name:
                await self.spider.call(self.spider.stub.DetachDisk, spb.DetachDiskRequest(
                    connection=disk.connection, name=disk.iid.name))

        def record(v: pb.McisVm) -> pb.McisVm | None:
            disks = [d for d in v.data_disks if d != req.data_disk] + ([req.data_disk] if attach else [])
            if list(v.data_disks) == disks:
                return None
            del v.data_disks[:]
            v.data_disks.extend(disks)
            v.update_time.CopyFrom(now())
            return v

        return await self.store.modify(vm_key, pb.McisVm, record, f"VM {req.name!r} in MCIS {req.mcis!r}")

