"""The MCIS API: it checks a request and writes the desired state; the reconciler acts on it.

Every write is to the MCIS record (one compare-and-swap), so a request is cheap
however many VMs it touches: verbs queue as intents, sizes change in the spec.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

from cbapi.common.v1 import common_pb2 as common
from cbapi.dragonfly.v1 import dragonfly_pb2 as dpb
from cbapi.spider.v1 import spider_pb2 as spb
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb

from services import errors
from services.names import check_name
from services.store import Store
from tumblebug import keys
from tumblebug.mcis import status
from tumblebug.mcis.agents import agent_wanted
from tumblebug.mcis.remote import RemoteCommands
from tumblebug.monitoring import Monitoring
from tumblebug.namespaces import Namespaces, now, page_size
from tumblebug.quotas import Quotas, used_by
from tumblebug.resources import Resources
from tumblebug.spider_client import Spider
from tumblebug.ssh_users import check_user, default_user

MAX_SUBGROUP = 10_000


def _subgroup_field(i: int, field: str) -> str:
    return f"mcis.subgroups[{i}].{field}"


def _same_architecture(spec_arch: str, image_arch: str, spec: str, image: str, field: str) -> None:
    """An image must run on its spec's processors (unknown on either side: not this check's to refuse)."""
    if spec_arch and image_arch and spec_arch != image_arch:
        raise errors.InvalidArgument.field(field, f"image {image!r} is {image_arch}, spec {spec!r} is {spec_arch}")


class McisService:
    def __init__(self, store: Store, spider: Spider, namespaces: Namespaces, resources: Resources,
                 monitoring: Monitoring, remote: RemoteCommands, quotas: Quotas) -> None:
        self.store = store
        self.quotas = quotas
        self.spider = spider
        self.namespaces = namespaces
        self.resources = resources
        self.monitoring = monitoring
        self.remote = remote

    # ----------------------------------------------------------------- reads

    async def get(self, ns: str, name: str, with_vms: bool = False) -> pb.Mcis:
        found = await self.store.must_get(keys.mcis(ns, name), pb.Mcis, f"MCIS {name!r} in namespace {ns!r}")
        mcis = found.value
        if with_vms:
            mcis.vms.extend(v.value for v in await self.store.list_all(keys.vms(ns, name), pb.McisVm))
            await self._agents(ns, mcis, list(mcis.vms))
        return mcis

    async def page(self, ns: str, size: int, token: str) -> tuple[list[pb.Mcis], str]:
        await self.namespaces.get(ns)
        page = await self.store.children(keys.mcis_prefix(ns), pb.Mcis, page_size(size), token)
        return [i.value for i in page.items], page.next_key

    async def list_vms(self, ns: str, mcis: str, size: int, token: str) -> tuple[list[pb.McisVm], str]:
        head = await self.get(ns, mcis)
        page = await self.store.page(keys.vms(ns, mcis), pb.McisVm, page_size(size), token)
        vms = [i.value for i in page.items]
        await self._agents(ns, head, vms)
        return vms, page.next_key

    async def get_vm(self, ns: str, mcis: str, name: str) -> pb.McisVm:
        head = await self.get(ns, mcis)
        found = await self.store.must_get(keys.vm(ns, mcis, name), pb.McisVm, f"VM {name!r} in MCIS {mcis!r}")
        await self._agents(ns, head, [found.value])
        return found.value

    async def _agents(self, ns: str, mcis: pb.Mcis, vms: list[pb.McisVm]) -> None:
        """Fill each VM's agent status from dragonfly's heartbeats (read now, not stored)."""
        if not agent_wanted(mcis) or not self.monitoring.enabled:
            for vm in vms:
                vm.agent_status = "None"
            return
        try:
            health = await self.monitoring.health(ns, mcis.name)
        except errors.DomainError:
            health = {}
            for vm in vms:
                vm.agent_status = "Unknown"
            return
        for vm in vms:
            vm.agent_status = health.get(vm.name, "Pending")

    # ---------------------------------------------------------------- create

    async def _check_subgroup(self, ns: str, sg: pb.Subgroup, i: int) -> None:
        """Validate an explicit subgroup and fill in the cloud names of its spec and image.

        Everything it names must be in the namespace, ready, and on the subgroup's connection; its
        subnet must be one of its vNet's; its image's architecture must be its spec's."""
        check_name(sg.name, _subgroup_field(i, "name"))
        if not 1 <= sg.size <= MAX_SUBGROUP:
            raise errors.InvalidArgument.field(_subgroup_field(i, "size"), f"must be 1..{MAX_SUBGROUP}")
        if not sg.connection:
            raise errors.InvalidArgument.field(_subgroup_field(i, "connection"), "is required")

        def same_connection(res: pb.Resource, field: str) -> None:
            if res.connection != sg.connection:
                raise errors.InvalidArgument.field(
                    _subgroup_field(i, field), f"{res.name!r} is on connection {res.connection!r}, "
                                               f"the subgroup on {sg.connection!r}")

        spec_arch = image_arch = ""
        if not sg.csp_spec:
            if not sg.spec:
                raise errors.InvalidArgument.field(_subgroup_field(i, "spec"), "is required")
            spec = await self.resources.ready(ns, "specs", sg.spec, _subgroup_field(i, "spec"))
            same_connection(spec, "spec")
            sg.csp_spec = spec.spec_ref.csp_spec
            sg.vcpu, spec_arch = spec.spec_ref.vcpu, spec.spec_ref.architecture
        else:
            cloud_spec = await self._cloud_spec(sg.connection, sg.csp_spec, _subgroup_field(i, "csp_spec"))
            sg.vcpu, spec_arch = cloud_spec.vcpu, cloud_spec.architecture
        image_os = ""
        if not sg.csp_image:
            if not sg.image:
                raise errors.InvalidArgument.field(_subgroup_field(i, "image"), "is required")
            image = await self.resources.ready(ns, "images", sg.image, _subgroup_field(i, "image"))
            same_connection(image, "image")
            sg.csp_image = image.image_ref.csp_image
            image_os, image_arch = image.image_ref.os, image.image_ref.architecture
        _same_architecture(spec_arch, image_arch, sg.csp_spec, sg.csp_image, _subgroup_field(i, "image"))
        check_user(sg.ssh_user, _subgroup_field(i, "ssh_user"))
        sg.ssh_user = sg.ssh_user or await self._login_user(sg.connection, sg.csp_image, image_os)
        named = [("vnets", sg.vnet, "vnet"), ("ssh-keys", sg.ssh_key, "ssh_key"),
                 *(("security-groups", g, f"security_groups[{j}]") for j, g in enumerate(sg.security_groups))]
        for collection, name, field in named:
            if name:
                res = await self.resources.ready(ns, collection, name, _subgroup_field(i, field))
                same_connection(res, field)
                if collection == "vnets" and sg.subnet and sg.subnet not in {s.name for s in res.vnet.subnets}:
                    raise errors.NotFound(f"{_subgroup_field(i, 'subnet')}: subnet {sg.subnet!r} not found in vNet "
                                          f"{name!r} (it has {', '.join(s.name for s in res.vnet.subnets) or 'none'})")
        if sg.subnet and not sg.vnet:
            raise errors.InvalidArgument.field(_subgroup_field(i, "subnet"), "needs the vnet it belongs to")

    async def _cloud_spec(self, connection: str, name: str, field: str) -> spb.Spec:
        """A spec as the connection's cloud has it; NOT_FOUND naming `field` when it has none."""
        try:
            spec: spb.Spec = await self.spider.call(self.spider.stub.GetSpec, spb.GetSpecRequest(
                connection=connection, name=name))
        except errors.NotFound as err:
            raise errors.NotFound(f"{field}: {err.message}") from err
        return spec

    async def _cloud_image(self, connection: str, name: str, field: str) -> spb.Image:
        try:
            image: spb.Image = await self.spider.call(self.spider.stub.GetImage, spb.GetImageRequest(
                connection=connection, name=name))
        except errors.NotFound as err:
            raise errors.NotFound(f"{field}: image {name!r} not found on connection {connection!r} "
                                  f"({err.message})") from err
        return image

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
            await self._check_subgroup(ns, sg, i)
        return await self._record(ns, mcis, request_id)

    async def _record(self, ns: str, mcis: pb.Mcis, request_id: str) -> pb.Mcis:
        """Write a checked MCIS (subgroups complete) under the namespace's quota."""
        if agent_wanted(mcis):
            for i, sg in enumerate(mcis.subgroups):
                if sg.user_data:
                    raise errors.InvalidArgument.field(
                        _subgroup_field(i, "user_data"), "cannot be combined with the monitoring agent's user-data; "
                                                         "set install_agent to false to pass your own")
        record = pb.Mcis(name=mcis.name, description=mcis.description, subgroups=mcis.subgroups,
                         policy=mcis.policy or pb.POLICY_CONTINUE, status="Creating",
                         target_status=common.RUNNING, target_action=pb.ACTION_CREATE, create_time=now(),
                         update_time=now(), request_id=request_id or uuid.uuid4().hex, generation=1, policy_op=1)
        if mcis.HasField("install_agent"):
            record.install_agent = mcis.install_agent

        def create(existing: pb.Mcis | None) -> pb.Mcis | None:
            if existing is None:
                return record
            if request_id and existing.request_id == request_id:
                return None  # the same request again: its first answer
            raise errors.AlreadyExists(f"MCIS {mcis.name!r} already exists in namespace {ns!r}")

        return await self.quotas.write(ns, mcis.name, create, f"MCIS {mcis.name!r}")

    async def _login_user(self, connection: str, csp_image: str, image_os: str = "") -> str:
        """The image's default SSH user, from what the cloud says of the image."""
        words = [image_os, csp_image]
        if not image_os:
            # An unknown image is not this check's to refuse: the VM's create says what is wrong.
            with contextlib.suppress(errors.DomainError):
                image = await self.spider.call(self.spider.stub.GetImage, spb.GetImageRequest(
                    connection=connection, name=csp_image))
                words += [image.os, image.display_name]
        return default_user(*words)

    async def _checked_dynamic(self, d: pb.DynamicSubgroup, field: str) -> tuple[str, spb.Spec, spb.Image]:
        """(connection, spec, image) of a dynamic subgroup, all checked with its cloud; nothing is made."""
        check_name(d.name, f"{field}.name")
        connection, _, spec_name = d.spec_id.partition("+")
        if not connection or not spec_name:
            raise errors.InvalidArgument.field(f"{field}.spec_id", "must be `{connection}+{spec}`")
        image_conn, sep, image_name = d.image_id.partition("+")
        if not sep:
            image_name, image_conn = d.image_id, connection
        if not image_name:
            raise errors.InvalidArgument.field(f"{field}.image_id", "is required")
        if image_conn != connection:
            raise errors.InvalidArgument.field(f"{field}.image_id", f"is on connection {image_conn!r}, "
                                                                    f"the spec on {connection!r}")
        if not 1 <= d.size <= MAX_SUBGROUP:
            raise errors.InvalidArgument.field(f"{field}.size", f"must be 1..{MAX_SUBGROUP}")
        check_user(d.ssh_user, f"{field}.ssh_user")
        spec = await self._cloud_spec(connection, spec_name, f"{field}.spec_id")
        image = await self._cloud_image(connection, image_name, f"{field}.image_id")
        _same_architecture(spec.architecture, image.architecture, spec.name, image.name, f"{field}.image_id")
        return connection, spec, image

    async def dynamic_subgroup(self, ns: str, d: pb.DynamicSubgroup, i: int) -> pb.Subgroup:
        """An explicit subgroup from catalog IDs, on the connection's default network and key.
        Every check is made before the defaults are (a refused request makes nothing)."""
        connection, spec, image = await self._checked_dynamic(d, f"subgroups[{i}]")
        return await self._on_defaults(ns, d, connection, spec, image)

    async def _on_defaults(self, ns: str, d: pb.DynamicSubgroup, connection: str, spec: spb.Spec,
                           image: spb.Image) -> pb.Subgroup:
        vnet, sg, key = await self.resources.ensure_defaults(ns, connection)
        return pb.Subgroup(name=d.name, connection=connection, csp_spec=spec.name, csp_image=image.name, vnet=vnet,
                           subnet="default", security_groups=[sg], ssh_key=key, size=d.size, vcpu=spec.vcpu,
                           root_disk_gib=d.root_disk_gib,
                           ssh_user=d.ssh_user or default_user(image.os, image.name, image.display_name))

    async def create_dynamic(self, req: pb.CreateMcisDynamicRequest) -> pb.Mcis:
        await self.namespaces.get(req.namespace)
        check_name(req.name, "name")
        if not req.subgroups:
            raise errors.InvalidArgument.field("subgroups", "at least one subgroup is required")
        names = [d.name for d in req.subgroups]
        if len(set(names)) != len(names):
            raise errors.InvalidArgument.field("subgroups", "subgroup names must be unique")
        # Every subgroup is checked with its cloud before any default resource is made.
        checked = await asyncio.gather(*(self._checked_dynamic(d, f"subgroups[{i}]")
                                         for i, d in enumerate(req.subgroups)))
        # The quota is judged before the defaults too (and again, guarded, when the record is written).
        await self._fits(req.namespace, req.name, [pb.Subgroup(size=d.size, vcpu=c[1].vcpu)
                                                   for d, c in zip(req.subgroups, checked, strict=True)])
        # Every connection's defaults at once (each made once however many subgroups share it).
        connections = {c[0] for c in checked}
        await asyncio.gather(*(self.resources.ensure_defaults(req.namespace, c) for c in connections))
        groups = [await self._on_defaults(req.namespace, d, *c) for d, c in zip(req.subgroups, checked, strict=True)]
        mcis = pb.Mcis(name=req.name, description=req.description, subgroups=groups, policy=req.policy)
        if req.HasField("install_agent"):
            mcis.install_agent = req.install_agent
        return await self._record(req.namespace, mcis, req.request_id)

    async def _fits(self, ns: str, name: str, groups: list[pb.Subgroup]) -> None:
        """Refuse early (before anything is made) an MCIS its namespace's quota has no room for."""
        if await self.store.get(keys.mcis(ns, name), pb.Mcis) is None:  # else: a retry, or a name taken
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
        vms = [v.value for v in await self.store.list_all(keys.vms(req.namespace, req.name), pb.McisVm)]
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
            connection, spec, image = await self._checked_dynamic(req.dynamic, "dynamic")
            # Room in the quota before the connection's defaults are made (the write checks again).
            await self.quotas.check(req.namespace, pb.QuotaUsage(vms=req.dynamic.size,
                                                                 vcpus=req.dynamic.size * spec.vcpu))
            sg = await self._on_defaults(req.namespace, req.dynamic, connection, spec, image)
        else:
            sg = pb.Subgroup()
            sg.CopyFrom(req.subgroup)
            await self._check_subgroup(req.namespace, sg, 0)
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

        return await self.store.modify(keys.mcis(req.namespace, req.name), pb.Mcis, mark,
                                       f"MCIS {req.name!r} in namespace {req.namespace!r}")

    async def delete_vm(self, req: pb.DeleteMcisVmRequest) -> pb.Mcis:
        """Take one VM out of its MCIS: in one transaction its subgroup shrinks by one and the VM is
        marked `removing`; the reconciler deletes it in its cloud, then its record."""
        ns, name, vm_key = req.namespace, req.mcis, keys.vm(req.namespace, req.mcis, req.name)
        for _ in range(20):
            head = await self.store.must_get(keys.mcis(ns, name), pb.Mcis, f"MCIS {name!r} in namespace {ns!r}")
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
            try:
                await self.store.commit([], [(head.key, mcis, head.mod_revision), (vm_key, vm, found.mod_revision)])
                return mcis
            except errors.Aborted:
                await asyncio.sleep(0.005)
        raise errors.Aborted(f"MCIS {name!r} is being changed by many writers at once; retry")

    # ------------------------------------------------------------ data disks

    async def attach_disk(self, req: pb.VmDataDiskRequest, attach: bool) -> pb.McisVm:
        """Attach (or detach) a namespace data disk to an MCIS VM through spider, then record it on
        the VM. Spider's answer is the truth: a retry after a lost record write finds the disk
        already where it was asked to be and only records it."""
        ns, vm_key = req.namespace, keys.vm(req.namespace, req.mcis, req.name)
        field = "data_disk"
        if not req.data_disk:
            raise errors.InvalidArgument.field(field, "is required")
        await self.get(ns, req.mcis)
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

    async def register(self, req: pb.RegisterVmsRequest) -> pb.Mcis:
        """Adopt existing cloud VMs (through spider) as a subgroup of an MCIS."""
        ns, name = req.namespace, req.mcis
        check_name(req.subgroup, "subgroup")
        if not req.vms:
            raise errors.InvalidArgument.field("vms", "at least one VM is required")
        if len(req.vms) > 100:
            raise errors.InvalidArgument.field("vms", "at most 100 VMs per request")
        found = await self.store.must_get(keys.mcis(ns, name), pb.Mcis, f"MCIS {name!r} in namespace {ns!r}")
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
        first = max((v.value.index for v in await self.store.list_all(keys.vms(ns, name), pb.McisVm)
                     if v.value.subgroup == req.subgroup), default=0) + 1
        records: list[tuple[str, pb.McisVm]] = []
        for i, want in enumerate(req.vms):
            vm_name = want.name or f"{req.subgroup}-{first + i}"
            check_name(vm_name, f"vms[{i}].name")
            spider_vm = keys.spider_name(ns, name, vm_name)
            await self.spider.call(self.spider.stub.RegisterResource, spb.RegisterResourceRequest(
                connection=req.connection, collection="vms", name=spider_vm, csp_id=want.csp_id))
            seen = await self.spider.call(self.spider.stub.GetVm, spb.GetResourceRequest(
                connection=req.connection, name=spider_vm))
            if not req.ssh_user and seen.image not in users:
                users[seen.image] = await self._login_user(req.connection, seen.image)
            records.append((keys.vm(ns, name, vm_name), pb.McisVm(
                name=vm_name, subgroup=req.subgroup, connection=req.connection, status=seen.status,
                target_status=common.SUSPENDED if seen.status in (common.SUSPENDED, common.SUSPENDING)
                else common.RUNNING, target_action=pb.ACTION_NONE, iid=seen.iid, public_ip=seen.public_ip,
                private_ip=seen.private_ip, index=first + i, registered=True, requested=True,
                ssh_access_point=seen.ssh_access_point, ssh_key=req.ssh_key,
                ssh_user=req.ssh_user or users[seen.image], create_time=now(), update_time=now())))
        # Records and the new size in one transaction: the reconciler never sees one without the other.
        # The reconciler writes the MCIS record too (its status), so a lost race is tried again on the
        # latest version; the spider registrations above are not repeated.
        for _ in range(20):
            rec = found.value
            group = next((sg for sg in rec.subgroups if sg.name == req.subgroup), None)
            if group is None:
                # The group names the key too, so the key cannot be deleted while they use it.
                rec.subgroups.append(pb.Subgroup(name=req.subgroup, connection=req.connection, size=len(records),
                                                 ssh_key=req.ssh_key, ssh_user=req.ssh_user))
            else:
                group.size += len(records)
            rec.generation += 1
            try:
                await self.store.commit(records, [(found.key, rec, found.mod_revision)])
                return rec
            except errors.Aborted:
                await asyncio.sleep(0.005)
                found = await self.store.must_get(keys.mcis(ns, name), pb.Mcis, f"MCIS {name!r} in namespace {ns!r}")
        raise errors.Aborted(f"MCIS {name!r} is being changed by many writers at once; retry")

    async def user_of(self, ns: str, collection: str, name: str) -> str:
        """The MCIS (and subgroup) that uses a namespace resource, or ""."""
        field = {"vnets": "vnet", "ssh-keys": "ssh_key", "specs": "spec", "images": "image"}.get(collection)
        after = ""
        while True:
            page = await self.store.children(keys.mcis_prefix(ns), pb.Mcis, 500, after)
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

    # ------------------------------------------------------- agents' work

    async def command(self, req: pb.McisCommandRequest) -> pb.McisCommandResponse:
        """Run a command on every running VM in scope (through its agent, or over SSH); one result per VM."""
        if not req.command.strip():
            raise errors.InvalidArgument.field("command", "is required")
        if req.timeout_s < 0 or req.timeout_s > 3600:
            raise errors.InvalidArgument.field("timeout_s", "must be within 0..3600 seconds")
        mcis = await self.get(req.namespace, req.name)
        vms = [v.value for v in await self.store.list_all(keys.vms(req.namespace, req.name), pb.McisVm)
               if not v.value.removing and (not req.subgroup or v.value.subgroup == req.subgroup)
               and (not req.vm or v.value.name == req.vm)]
        if not vms:
            raise errors.NotFound(f"no VM of MCIS {req.name!r} matches subgroup={req.subgroup!r} vm={req.vm!r}")
        vms.sort(key=lambda v: (v.subgroup, v.index))
        results = await self.remote.run(req.namespace, mcis, vms, req.command, req.timeout_s or 60.0)
        return pb.McisCommandResponse(results=results)

    async def metrics(self, req: pb.McisMetricsRequest) -> dpb.QueryMetricsResponse:
        await self.get(req.namespace, req.name)
        if not req.group:
            raise errors.InvalidArgument.field("group", "is required: cpu, cpufreq, memory, disk, diskio or network")
        got = await self.monitoring.metrics(dpb.QueryMcisMetricsRequest(
            ns=req.namespace, mcis=req.name, group=req.group, period=req.period or "m",
            aggregate=req.aggregate or "avg", duration=req.duration or "10m"))
        # Dragonfly names a VM `{ns}.{mcis}.{vm}`; here it is the VM of this MCIS, named as in ListMcisVms.
        prefix = f"{req.namespace}.{req.name}."
        for series in got.series:
            series.vm = series.vm.removeprefix(prefix)
        return got

    # ------------------------------------------------------------ following

    async def watch(self, ns: str, name: str) -> AsyncIterator[pb.Mcis]:
        """The MCIS now, then each new version of its record; ends when it is deleted."""
        key = keys.mcis(ns, name)
        current = await self.store.must_get(key, pb.Mcis, f"MCIS {name!r} in namespace {ns!r}")
        yield current.value
        async for ev in self.store.watch(key, current.mod_revision + 1):
            if ev.key != key:
                continue
            if ev.value is None:
                return
            yield pb.Mcis.FromString(ev.value)

    async def wait(self, ns: str, name: str, generation: int, timeout: float) -> pb.Mcis:
        """Until the reconciler acted on `generation` and no VM is on its way anywhere."""
        deadline = time.monotonic() + timeout
        last = pb.Mcis()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.1)):
                async for mcis in self.watch(ns, name):
                    last = mcis
                    if mcis.observed_generation >= generation and mcis.target_action == pb.ACTION_NONE:
                        return mcis
                return last  # deleted
        raise errors.DeadlineExceeded(f"MCIS {name!r} did not settle within {timeout:.0f}s: {last.status}")
