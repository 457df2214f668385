"""VMs: references resolved to cloud IDs, live status, and the verbs with their allowed states."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from services.names import check_name, require
from spider.connections import OpenConnection
from spider.drivers.base import VmHandler, VmRefs
from spider.kinds import DISK, KEY_PAIR, SECURITY_GROUP, VM, VPC
from spider.ops.vpcs import subnet_of
from spider.resources import Make, Reads, Resources, ready_in, reference_key

# The status a verb needs, and the word for it in an error.
ALLOWED = {
    "suspend": (common.RUNNING,),
    "resume": (common.SUSPENDED,),
    "reboot": (common.RUNNING,),
}


def status_name(status: common.VmStatus) -> str:
    return common.VmStatus.Name(status).title().replace("_", "")


def _check(vm: pb.Vm) -> None:
    """What a VM request must say before any record is read or written."""
    require(vm.image, "vm.image")
    require(vm.spec, "vm.spec")
    if vm.subnet and not vm.vpc:
        raise errors.InvalidArgument.field("vm.vpc", "is required when a subnet is named")
    if vm.root_disk_gib < 0:
        raise errors.InvalidArgument.field("vm.root_disk_gib", "must not be negative")


def _ref_keys(cname: str, vm: pb.Vm) -> list[str]:
    """The records a VM refers to (read with its intent, in one transaction)."""
    out = [reference_key(cname, VPC, vm.vpc)] if vm.vpc else []
    out += [reference_key(cname, SECURITY_GROUP, g) for g in vm.security_groups]
    if vm.key_pair:
        out.append(reference_key(cname, KEY_PAIR, vm.key_pair))
    return out


def _refs(reads: Reads, cname: str, vm: pb.Vm) -> VmRefs:
    """The cloud IDs of what the VM refers to, each reference READY (else NotFound/FailedPrecondition)."""
    subnet = vpc_id = key_pair = ""
    if vm.vpc:
        vpc = ready_in(reads, cname, VPC, vm.vpc, "vm.vpc")
        vpc_id = vpc.iid.csp_id
        if vm.subnet:
            subnet = subnet_of(vpc, vm.subnet, "vm.subnet").csp_id
        elif vpc.subnets:
            subnet = vpc.subnets[0].iid.csp_id
    groups = [ready_in(reads, cname, SECURITY_GROUP, name, f"vm.security_groups[{i}]").iid.csp_id
              for i, name in enumerate(vm.security_groups)]
    if vm.key_pair:
        key_pair = ready_in(reads, cname, KEY_PAIR, vm.key_pair, "vm.key_pair").iid.csp_id
    return VmRefs(image=vm.image, spec=vm.spec, subnet=subnet, security_groups=tuple(groups),
                  key_pair=key_pair, vpc=vpc_id)


async def create(res: Resources, conn: OpenConnection, req: pb.CreateVmRequest) -> pb.Vm:
    """The intent is written in the transaction that reads the VM's references, or finds the
    record of an earlier request with this ID (answered as it is, references not read again)."""
    vm = req.vm
    cname = conn.record.name
    check_name(vm.iid.name, "vm.iid.name")
    _check(vm)
    if req.validate_only:
        _refs({k: (v[0] if v else None) for k, v in (await res.store.read_raw(_ref_keys(cname, vm))).items()},
              cname, vm)
        return vm
    handler = conn.handler(VmHandler)

    def prepare(reads: Reads) -> Make[pb.Vm]:
        refs = _refs(reads, cname, vm)

        async def make(rec: pb.Vm, token: str) -> pb.Vm:
            ask = pb.Vm()
            ask.CopyFrom(rec)
            ask.user_data = vm.user_data  # handed to the cloud, not kept in the record
            return await handler.start_vm(ask, refs, token)

        return make

    record, _ = await res.create_reading(conn, VM, vm, req.request_id, _ref_keys(cname, vm), prepare)
    return record


async def _name_disks(res: Resources, cname: str, seen: list[pb.Vm]) -> None:
    """Drivers report attached data disks by cloud ID; a VM shows them by their spider names
    (CB-Spider's DataDiskIIDs). Disks spider has no record of are left out: `disks:reconcile` lists them."""
    if not any(vm.disks for vm in seen):
        return
    names = await res.names_by_csp_id(cname, DISK)
    for vm in seen:
        named = [names[csp_id] for csp_id in vm.disks if csp_id in names]
        del vm.disks[:]
        vm.disks.extend(named)


async def get(res: Resources, conn: OpenConnection, name: str) -> pb.Vm:
    """The record, refreshed with what the cloud reports now."""
    rec = (await res.get(conn.record.name, VM, name)).value
    if not rec.iid.csp_id:
        return rec
    handler = conn.handler(VmHandler)
    try:
        seen = await handler.get_vm(rec.iid.csp_id)
    except errors.NotFound:
        rec.status = common.NOT_EXIST
        return rec
    await _name_disks(res, conn.record.name, [seen])
    return await res.observe(conn.record.name, VM, name, seen)


async def list_vms(res: Resources, conn: OpenConnection, page_size: int, token: str) -> tuple[list[pb.Vm], str]:
    """A page of records with their status from one cloud listing."""
    vms, next_token = await res.page(conn.record.name, VM, page_size, token)
    if vms:
        handler = conn.handler(VmHandler)
        cloud_vms = await handler.list_vms()
        await _name_disks(res, conn.record.name, cloud_vms)
        seen = {v.iid.csp_id: v for v in cloud_vms}
        for vm in vms:
            cloud = seen.get(vm.iid.csp_id)
            if cloud is not None:
                VM.observe(vm, cloud)
            elif vm.meta.phase == common.PHASE_READY:
                vm.status = common.NOT_EXIST
    return vms, next_token


async def watch(res: Resources, conn: OpenConnection, name: str, interval: float) -> AsyncIterator[pb.Vm]:
    """The VM now, then again whenever its status or addresses change; ends when it is gone."""
    last: tuple[int, str, str] | None = None
    while True:
        try:
            vm = await get(res, conn, name)
        except errors.NotFound:
            return
        seen = (vm.status, vm.private_ip, common.Phase.Name(vm.meta.phase))
        if seen != last:
            last = seen
            yield vm
        await asyncio.sleep(interval)


async def status(res: Resources, conn: OpenConnection, name: str) -> pb.VmStatusResponse:
    rec = (await res.get(conn.record.name, VM, name)).value
    if not rec.iid.csp_id:
        return pb.VmStatusResponse(name=name, status=common.CREATING)
    handler = conn.handler(VmHandler)
    try:
        return pb.VmStatusResponse(name=name, status=await handler.get_vm_status(rec.iid.csp_id))
    except errors.NotFound:
        return pb.VmStatusResponse(name=name, status=common.NOT_EXIST)


async def act(res: Resources, conn: OpenConnection, name: str, verb: str) -> pb.VmStatusResponse:
    """suspend | resume | reboot, refused with FAILED_PRECONDITION from the wrong status."""
    rec = (await res.get(conn.record.name, VM, name)).value
    if not rec.iid.csp_id:
        raise errors.FailedPrecondition(f"VM {name!r} is still being created; cannot {verb} it yet")
    handler = conn.handler(VmHandler)
    now = await handler.get_vm_status(rec.iid.csp_id)
    if now not in ALLOWED[verb]:
        need = " or ".join(status_name(s) for s in ALLOWED[verb])
        raise errors.FailedPrecondition(f"VM {name!r} is {status_name(now)}; it must be {need} to {verb}")
    run: dict[str, Callable[[str], Awaitable[None]]] = {
        "suspend": handler.suspend_vm, "resume": handler.resume_vm, "reboot": handler.reboot_vm}
    await run[verb](rec.iid.csp_id)
    return pb.VmStatusResponse(name=name, status=await handler.get_vm_status(rec.iid.csp_id))


async def delete(res: Resources, conn: OpenConnection, name: str, force: bool) -> pb.VmStatusResponse:
    """Terminate in the cloud and forget the VM."""
    await res.delete(conn, VM, name, force)
    return pb.VmStatusResponse(name=name, status=common.TERMINATING)
