"""RegisterVms: adopt existing cloud VMs (through spider) as a subgroup of an MCIS."""

from __future__ import annotations

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as spb
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.names import check_name
from services.proto_time import now
from services.store import Store
from services.store.conflicts import retry_on_conflict
from tumblebug import keyspace
from tumblebug.mcis.checks import SubgroupChecks
from tumblebug.resources import Resources
from tumblebug.spider_client import Spider
from tumblebug.ssh_users import check_user


class Registration:
    """Registers cloud VMs with spider, then records them and the subgroup's new size in one write."""

    def __init__(self, store: Store, spider: Spider, resources: Resources, checks: SubgroupChecks) -> None:
        self.store = store
        self.spider = spider
        self.resources = resources
        self.checks = checks

    async def register(self, req: pb.RegisterVmsRequest) -> pb.Mcis:
        """Adopt existing cloud VMs (through spider) as a subgroup of an MCIS."""
        ns, name = req.namespace, req.mcis
        check_name(req.subgroup, "subgroup")
        if not req.vms:
            raise errors.InvalidArgument.field("vms", "at least one VM is required")
        if len(req.vms) > 100:
            raise errors.InvalidArgument.field("vms", "at most 100 VMs per request")
        found = await self.store.must_get(keyspace.mcis(ns, name), pb.Mcis, f"MCIS {name!r} in namespace {ns!r}")
        existing = next((sg for sg in found.value.subgroups if sg.name == req.subgroup), None)
        if existing is not None and existing.connection != req.connection:
            raise errors.InvalidArgument.field("connection", f"subgroup {req.subgroup!r} is on {existing.connection!r}")
        check_user(req.ssh_user, "ssh_user")
        if req.ssh_key:
            key = await self.resources.ready(ns, "ssh-keys", req.ssh_key, "ssh_key")
            if key.connection != req.connection:
                raise errors.InvalidArgument.field("ssh_key", f"{req.ssh_key!r} is on connection {key.connection!r}, "
                                                              f"the VMs on {req.connection!r}")
        users: dict[str, str] = {}  # image → its default user, asked once per request
        first = max((v.value.index for v in await self.store.list_all(keyspace.vms(ns, name), pb.McisVm)
                     if v.value.subgroup == req.subgroup), default=0) + 1
        records: list[tuple[str, pb.McisVm]] = []
        for i, want in enumerate(req.vms):
            vm_name = want.name or f"{req.subgroup}-{first + i}"
            check_name(vm_name, f"vms[{i}].name")
            spider_vm = keyspace.spider_name(ns, name, vm_name)
            await self.spider.call(self.spider.stub.RegisterResource, spb.RegisterResourceRequest(
                connection=req.connection, collection="vms", name=spider_vm, csp_id=want.csp_id))
            seen = await self.spider.call(self.spider.stub.GetVm, spb.GetResourceRequest(
                connection=req.connection, name=spider_vm))
            if not req.ssh_user and seen.image not in users:
                users[seen.image] = await self.checks.login_user(req.connection, seen.image)
            records.append((keyspace.vm(ns, name, vm_name), pb.McisVm(
                name=vm_name, subgroup=req.subgroup, connection=req.connection, status=seen.status,
                target_status=common.SUSPENDED if seen.status in (common.SUSPENDED, common.SUSPENDING)
                else common.RUNNING, target_action=pb.ACTION_NONE, iid=seen.iid, public_ip=seen.public_ip,
                private_ip=seen.private_ip, index=first + i, registered=True, requested=True,
                ssh_access_point=seen.ssh_access_point, ssh_key=req.ssh_key,
                ssh_user=req.ssh_user or users[seen.image], create_time=now(), update_time=now())))
        # Records and the new size in one transaction: the reconciler never sees one without the other.
        # The reconciler writes the MCIS record too (its status), so a lost race is tried again on the
        # latest version; the spider registrations above are not repeated.
        first_try = True

        async def attempt() -> pb.Mcis:
            nonlocal found, first_try
            if not first_try:  # lost a race: the latest version (the spider registrations are not repeated)
                found = await self.store.must_get(keyspace.mcis(ns, name), pb.Mcis, f"MCIS {name!r} in namespace {ns!r}")
            first_try = False
            rec = found.value
            group = next((sg for sg in rec.subgroups if sg.name == req.subgroup), None)
            if group is None:
                # The group names the key too, so the key cannot be deleted while they use it.
                rec.subgroups.append(pb.Subgroup(name=req.subgroup, connection=req.connection, size=len(records),
                                                 ssh_key=req.ssh_key, ssh_user=req.ssh_user))
            else:
                group.size += len(records)
            rec.generation += 1
            await self.store.commit(records, [(found.key, rec, found.mod_revision)])
            return rec

        return await retry_on_conflict(attempt, f"MCIS {name!r}")

