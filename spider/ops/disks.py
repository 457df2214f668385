"""Data disks: create, attach to a VM, detach, grow."""

from __future__ import annotations

from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from services.names import require
from spider.connections import OpenConnection
from spider.drivers.base import DiskHandler
from spider.kinds import DISK, VM
from spider.resources import Resources


async def create(res: Resources, conn: OpenConnection, req: pb.CreateDiskRequest) -> pb.Disk:
    if req.disk.size_gib <= 0:
        raise errors.InvalidArgument.field("disk.size_gib", "must be a positive number of GiB")
    if req.validate_only:
        return req.disk
    handler = conn.handler(DiskHandler)
    record, _ = await res.create(conn, DISK, req.disk, req.request_id, handler.create_disk)
    return record


async def attach(res: Resources, conn: OpenConnection, req: pb.AttachDiskRequest) -> pb.Disk:
    cname = conn.record.name
    require(req.vm, "vm")
    disk = await res.ready(cname, DISK, req.name, "name")
    if disk.attached_vm:
        raise errors.FailedPrecondition(f"disk {req.name!r} is attached to VM {disk.attached_vm!r}; detach it first")
    vm = await res.ready(cname, VM, req.vm, "vm")
    handler = conn.handler(DiskHandler)
    seen = await handler.attach_disk(disk.iid.csp_id, vm.iid.csp_id)

    def attached(rec: pb.Disk) -> pb.Disk:
        DISK.observe(rec, seen)
        rec.attached_vm = req.vm
        return rec

    return await res.modify(cname, DISK, req.name, attached)


async def detach(res: Resources, conn: OpenConnection, req: pb.DetachDiskRequest) -> pb.Disk:
    cname = conn.record.name
    disk = await res.ready(cname, DISK, req.name, "name")
    if not disk.attached_vm:
        raise errors.FailedPrecondition(f"disk {req.name!r} is not attached")
    vm = await res.get(cname, VM, disk.attached_vm)
    handler = conn.handler(DiskHandler)
    seen = await handler.detach_disk(disk.iid.csp_id, vm.value.iid.csp_id)

    def detached(rec: pb.Disk) -> pb.Disk:
        DISK.observe(rec, seen)
        rec.attached_vm = ""
        return rec

    return await res.modify(cname, DISK, req.name, detached)


async def resize(res: Resources, conn: OpenConnection, req: pb.ResizeDiskRequest) -> pb.Disk:
    disk = await res.ready(conn.record.name, DISK, req.name, "name")
    if req.size_gib <= disk.size_gib:
        raise errors.InvalidArgument.field("size_gib", f"must be larger than the current {disk.size_gib} GiB")
    handler = conn.handler(DiskHandler)
    seen = await handler.resize_disk(disk.iid.csp_id, req.size_gib)
    return await res.observe(conn.record.name, DISK, req.name, seen)


async def get(res: Resources, conn: OpenConnection, name: str) -> pb.Disk:
    rec = (await res.get(conn.record.name, DISK, name)).value
    if not rec.iid.csp_id:
        return rec
    handler = conn.handler(DiskHandler)
    return await res.observe(conn.record.name, DISK, name, await handler.get_disk(rec.iid.csp_id))
