"""The MCIS API: it checks a request and writes the desired state; the reconciler acts on it.

Every write is to the MCIS record (one compare-and-swap), so a request is cheap
however many VMs it touches: verbs queue as intents, sizes change in the spec.
The other parts of the API live beside it, one concept each: `checks` (validation and dynamic
expansion), `reads`, `registration`, `disks`, `proxies` (commands, metrics), `following`.
"""

from __future__ import annotations

import asyncio
import uuid

from cbapi.common.v1 import common_pb2 as common
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.names import check_name
from services.proto_time import now
from services.store import Store
from services.store.conflicts import retry_on_conflict
from tumblebug import keyspace
from tumblebug.mcis import status
from tumblebug.mcis.agents import agent_wanted
from tumblebug.mcis.checks import MAX_SUBGROUP, SubgroupChecks, subgroup_field
from tumblebug.mcis.disks import DataDisks
from tumblebug.mcis.following import McisFollowing
from tumblebug.mcis.proxies import McisProxies
from tumblebug.mcis.reads import McisReads
from tumblebug.mcis.registration import Registration
from tumblebug.mcis.remote import RemoteCommands
from tumblebug.monitoring import Monitoring
from tumblebug.namespaces import Namespaces
from tumblebug.quotas import Quotas, used_by
from tumblebug.resources import Resources
from tumblebug.spider_client import Spider


class McisService:
    """Create, change and delete MCIS (and one VM); the API's other parts are reached through it."""

    def __init__(self, store: Store, spider: Spider, namespaces: Namespaces, resources: Resources,
                 monitoring: Monitoring, remote: RemoteCommands, quotas: Quotas) -> None:
        self.store = store
        self.quotas = quotas
        self.namespaces = namespaces
        self.resources = resources
        self.checks = SubgroupChecks(spider, resources)
        self.reads = reads = McisReads(store, namespaces, monitoring)
        self.get, self.page, self.list_vms, self.get_vm = reads.get, reads.page, reads.list_vms, reads.get_vm
        self.attach_disk = DataDisks(store, spider, resources, reads).attach_disk
        self.register = Registration(store, spider, resources, self.checks).register
        proxies = McisProxies(store, reads, remote, monitoring)
        self.command, self.metrics = proxies.command, proxies.metrics
        following = McisFollowing(store)
        self.watch, self.wait = following.watch, following.wait

    # ---------------------------------------------------------------- create

    async def create(self, ns: str, mcis: pb.Mcis, request_id: str) -> pb.Mcis:
        """Record the desired MCIS (status Creating) and return; the reconciler makes the VMs."""
        await self.namespaces.get(ns)
        check_name(mcis.name, "mcis.name")
        if not mcis.subgroups:
            raise errors.InvalidArgument.field("mcis.subgroups", "at least one subgroup is required")
        names = [sg.name for sg in mcis.subgroups]
        if len(set(names)) != len(names):
            raise errors.InvalidArgument.field("mcis.subgroups", "subgroup names must be unique")
        for i, sg in enumerate(mcis.subgroups):
            await self.checks.check_subgroup(ns, sg, i)
        return await self._record(ns, mcis, request_id)

    async def _record(self, ns: str, mcis: pb.Mcis, request_id: str) -> pb.Mcis:
        """Write a checked MCIS (subgroups complete) under the namespace's quota."""
        if agent_wanted(mcis):
            for i, sg in enumerate(mcis.subgroups):
                if sg.user_data:
                    raise errors.InvalidArgument.field(
                        subgroup_field(i, "user_data"), "cannot be combined with the monitoring agent's user-data; "
                                                         "set install_agent to false to pass your own")
        record = pb.Mcis(name=mcis.name, description=mcis.description, subgroups=mcis.subgroups,
                         policy=mcis.policy or pb.POLICY_CONTINUE, status="Creating",
                         target_status=common.RUNNING, target_action=pb.ACTION_CREATE, create_time=now(),
                         update_time=now(), request_id=request_id or uuid.uuid4().hex, generation=1, policy_op=1)
        if mcis.HasField("install_agent"):
            record.install_agent = mcis.install_agent
        record.placement.CopyFrom(mcis.placement)  # placement: the request it was placed by, for failover

        def create(existing: pb.Mcis | None) -> pb.Mcis | None:
            if existing is None:
                return record
            if request_id and existing.request_id == request_id:
                return None  # the same request again: its first answer
            raise errors.AlreadyExists(f"MCIS {mcis.name!r} already exists in namespace {ns!r}")

        return await self.quotas.write(ns, mcis.name, create, f"MCIS {mcis.name!r}")

    async def create_dynamic(self, req: pb.CreateMcisDynamicRequest) -> pb.Mcis:
        await self.namespaces.get(req.namespace)
        check_name(req.name, "name")
        if not req.subgroups:
            raise errors.InvalidArgument.field("subgroups", "at least one subgroup is required")
        names = [d.name for d in req.subgroups]
        if len(set(names)) != len(names):
            raise errors.InvalidArgument.field("subgroups", "subgroup names must be unique")
        # Every subgroup is checked with its cloud before any default resource is made.
        checked = await asyncio.gather(*(self.checks.checked_dynamic(d, f"subgroups[{i}]")
                                         for i, d in enumerate(req.subgroups)))
        # The quota is judged before the defaults too (and again, guarded, when the record is written).
        await self._fits(req.namespace, req.name, [pb.Subgroup(size=d.size, vcpu=c[1].vcpu)
                                                   for d, c in zip(req.subgroups, checked, strict=True)])
        # Every connection's defaults at once (each made once however many subgroups share it).
        connections = {c[0] for c in checked}
        await asyncio.gather(*(self.resources.ensure_defaults(req.namespace, c) for c in connections))
        groups = [await self.checks.on_defaults(req.namespace, d, *c) for d, c in zip(req.subgroups, checked, strict=True)]
        mcis = pb.Mcis(name=req.name, description=req.description, subgroups=groups, policy=req.policy)
        if req.HasField("install_agent"):
            mcis.install_agent = req.install_agent
        mcis.placement.CopyFrom(req.placement)  # placement: kept for failover (tumblebug/failover.py)
        return await self._record(req.namespace, mcis, req.request_id)

    async def _fits(self, ns: str, name: str, groups: list[pb.Subgroup]) -> None:
        """Refuse early (before anything is made) an MCIS its namespace's quota has no room for."""
        if await self.store.get(keyspace.mcis(ns, name), pb.Mcis) is None:  # else: a retry, or a name taken
            await self.quotas.check(ns, used_by(pb.Mcis(name=name, subgroups=groups)))

    # --------------------------------------------------------------- changes

    async def _change(self, ns: str, name: str, change: object) -> pb.Mcis:
        """Change the desired state (one compare-and-swap of the MCIS record, under the quota)."""
        def apply(rec: pb.Mcis | None) -> pb.Mcis:
            if rec is None:
                raise errors.NotFound(f"MCIS {name!r} not found in namespace {ns!r}")
            if rec.deleting:
                raise errors.FailedPrecondition(f"MCIS {name!r} is being deleted")
            change(rec)  # type: ignore[operator]
            rec.generation += 1
            rec.update_time.CopyFrom(now())
            return rec

        return await self.quotas.write(ns, name, apply, f"MCIS {name!r} in namespace {ns!r}")

    async def act(self, req: pb.McisActionRequest, action: pb.Action) -> pb.Mcis:
        """Queue a verb for the VMs in scope, after checking they are in a state that allows it."""
        mcis = await self.get(req.namespace, req.name)
        vms = [v.value for v in await self.store.list_all(keyspace.vms(req.namespace, req.name), pb.McisVm)]
        scope = [v for v in vms if not v.removing and (not req.subgroup or v.subgroup == req.subgroup)
                 and (not req.vm or v.name == req.vm)]
        if req.subgroup and not any(sg.name == req.subgroup for sg in mcis.subgroups):
            raise errors.NotFound(f"subgroup {req.subgroup!r} not found in MCIS {req.name!r}")
        if req.vm and not scope:
            raise errors.NotFound(f"VM {req.vm!r} not found in MCIS {req.name!r}")
        need, target = status.VERBS[action]
        verb = pb.Action.Name(action).removeprefix("ACTION_").lower()
        wrong = [v for v in scope if v.status not in need]
        if action == pb.ACTION_REFINE:
            wrong = [] if len(wrong) < len(scope) else wrong  # refine drops the failed and leaves the rest
        if not scope or (wrong and not req.force) or len(wrong) == len(scope):
            shown = ", ".join(f"{v.name} is {status.word(v.status)}" for v in wrong[:5]) or "no VMs in scope"
            raise errors.FailedPrecondition(
                f"cannot {verb} MCIS {req.name!r}: {shown}{' …' if len(wrong) > 5 else ''} "
                f"(needs {' or '.join(status.word(s) for s in need)}; pass force to {verb} the others)")

        def queue(rec: pb.Mcis) -> None:
            rec.intents.append(pb.McisIntent(id=rec.generation + 1, action=action, subgroup=req.subgroup,
                                             vm=req.vm, force=req.force))
            # The action shows work in progress (wait and cbctl follow it to NONE) whatever the scope;
            # the target status is the whole MCIS's, so only a verb on all of it changes that.
            rec.target_action = action
            if not req.subgroup and not req.vm:
                rec.target_status = target
            if action == pb.ACTION_REFINE:
                failed = [v for v in scope if v.status == common.FAILED]
                for sg in rec.subgroups:
                    sg.size -= sum(1 for v in failed if v.subgroup == sg.name)

        return await self._change(req.namespace, req.name, queue)

    async def scale(self, req: pb.ScaleSubgroupRequest) -> pb.Mcis:
        if not 0 <= req.size <= MAX_SUBGROUP:
            raise errors.InvalidArgument.field("size", f"must be 0..{MAX_SUBGROUP}")
        mcis = await self.get(req.namespace, req.mcis)
        if not any(sg.name == req.subgroup for sg in mcis.subgroups):
            raise errors.NotFound(f"subgroup {req.subgroup!r} not found in MCIS {req.mcis!r}")

        def resize(rec: pb.Mcis) -> None:
            for sg in rec.subgroups:
                if sg.name == req.subgroup:
                    if req.size > sg.size:
                        rec.policy_op = rec.generation + 1
                        rec.target_action = pb.ACTION_CREATE
                        rec.target_status = common.RUNNING
                    sg.size = req.size

        return await self._change(req.namespace, req.mcis, resize)

    async def add_subgroup(self, req: pb.AddSubgroupRequest) -> pb.Mcis:
        mcis = await self.get(req.namespace, req.mcis)
        if req.HasField("dynamic"):
            if any(g.name == req.dynamic.name for g in mcis.subgroups):
                raise errors.AlreadyExists(f"subgroup {req.dynamic.name!r} already exists in MCIS {req.mcis!r}")
            connection, spec, image = await self.checks.checked_dynamic(req.dynamic, "dynamic")
            # Room in the quota before the connection's defaults are made (the write checks again).
            await self.quotas.check(req.namespace, pb.QuotaUsage(vms=req.dynamic.size,
                                                                 vcpus=req.dynamic.size * spec.vcpu))
            sg = await self.checks.on_defaults(req.namespace, req.dynamic, connection, spec, image)
        else:
            sg = pb.Subgroup()
            sg.CopyFrom(req.subgroup)
            await self.checks.check_subgroup(req.namespace, sg, 0)
        if any(g.name == sg.name for g in mcis.subgroups):
            raise errors.AlreadyExists(f"subgroup {sg.name!r} already exists in MCIS {req.mcis!r}")

        def add(rec: pb.Mcis) -> None:
            if any(g.name == sg.name for g in rec.subgroups):
                raise errors.AlreadyExists(f"subgroup {sg.name!r} already exists in MCIS {req.mcis!r}")
            rec.subgroups.append(sg)
            rec.policy_op = rec.generation + 1
            rec.target_action = pb.ACTION_CREATE
            rec.target_status = common.RUNNING

        return await self._change(req.namespace, req.mcis, add)

    async def delete(self, req: pb.DeleteMcisRequest) -> pb.Mcis:
        """Mark for deletion (one write, whatever the MCIS's size); the reconciler deletes the VMs in
        their clouds and their records, then the MCIS record."""
        def mark(rec: pb.Mcis) -> pb.Mcis:
            # The reconciler's counts say what still lives (not a read of every VM record: a
            # 100,000-VM MCIS would take a minute to read). Counts lag the VMs by a pass at most.
            c = rec.status_count
            alive = c.total - c.terminated - c.failed
            if alive > 0 and not (req.terminate or req.force or rec.deleting):
                raise errors.FailedPrecondition(
                    f"MCIS {req.name!r} still has {alive} VMs that are not terminated; "
                    "terminate it first, or delete with terminate=true (or force=true)")
            rec.deleting = True
            rec.force_delete = rec.force_delete or req.force
            rec.target_action = pb.ACTION_TERMINATE
            rec.target_status = common.TERMINATED
            rec.generation += 1
            return rec

        return await self.store.modify(keyspace.mcis(req.namespace, req.name), pb.Mcis, mark,
                                       f"MCIS {req.name!r} in namespace {req.namespace!r}")

    async def delete_vm(self, req: pb.DeleteMcisVmRequest) -> pb.Mcis:
        """Take one VM out of its MCIS: in one transaction its subgroup shrinks by one and the VM is
        marked `removing`; the reconciler deletes it in its cloud, then its record."""
        ns, name, vm_key = req.namespace, req.mcis, keyspace.vm(req.namespace, req.mcis, req.name)
        async def attempt() -> pb.Mcis:
            head = await self.store.must_get(keyspace.mcis(ns, name), pb.Mcis, f"MCIS {name!r} in namespace {ns!r}")
            found = await self.store.must_get(vm_key, pb.McisVm, f"VM {req.name!r} in MCIS {name!r}")
            mcis, vm = head.value, found.value
            if mcis.deleting:
                raise errors.FailedPrecondition(f"MCIS {name!r} is being deleted")
            if vm.removing:
                return mcis  # already on its way out
            if vm.status not in (common.TERMINATED, common.FAILED) and vm.requested and not (req.terminate or req.force):
                raise errors.FailedPrecondition(
                    f"VM {req.name!r} is {status.word(vm.status)}; terminate it first, or delete it with "
                    "terminate=true (or force=true)")
            if vm.data_disks and not req.force:
                raise errors.FailedPrecondition(
                    f"VM {req.name!r} has data disks attached ({', '.join(vm.data_disks)}); detach them first, "
                    "or delete it with force=true")
            group = next((sg for sg in mcis.subgroups if sg.name == vm.subgroup), None)
            if group is not None and group.size > 0:
                group.size -= 1  # so membership does not make a VM in its place
            mcis.generation += 1
            mcis.update_time.CopyFrom(now())
            vm.removing = True
            vm.update_time.CopyFrom(now())
            await self.store.commit([], [(head.key, mcis, head.mod_revision), (vm_key, vm, found.mod_revision)])
            return mcis

        return await retry_on_conflict(attempt, f"MCIS {name!r}")

    async def user_of(self, ns: str, collection: str, name: str) -> str:
        """The MCIS (and subgroup) that uses a namespace resource, or ""."""
        field = {"vnets": "vnet", "ssh-keys": "ssh_key", "specs": "spec", "images": "image"}.get(collection)
        after = ""
        while True:
            page = await self.store.children(keyspace.mcis_prefix(ns), pb.Mcis, 500, after)
            for item in page.items:
                found = self._uses(item.value, collection, field, name)
                if found:
                    return found
            if not page.next_key:
                return ""
            after = page.next_key

    @staticmethod
    def _uses(mcis: pb.Mcis, collection: str, field: str | None, name: str) -> str:
        for sg in mcis.subgroups:
            used = (name in sg.security_groups) if collection == "security-groups" else (
                field is not None and getattr(sg, field) == name)
            if used:
                return f"MCIS {mcis.name!r} (subgroup {sg.name!r})"
        return ""

