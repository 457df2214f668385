"""What the MCIS reconciler does to the world: spider calls and the VM record writes around them.

Each action is one step `decisions.vm_step` chose for one VM. Calls are bounded per spider
connection and per cloud region (slots); a VM's record says "asked" before spider is asked, so a
removal knows to delete in the cloud and a restarted leader sends the same create again (spider
answers a repeated request ID with the VM it already made).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as spb
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.store import Store
from tumblebug import keyspace
from tumblebug.mcis import decisions
from tumblebug.mcis.agents import agent_wanted
from tumblebug.mcis.decisions import AGENT_NOTE, Step
from tumblebug.mcis.failovers import Failovers
from tumblebug.mcis.revocations import Revocations
from tumblebug.mcis.writes import Change
from tumblebug.monitoring import Monitoring
from tumblebug.settings import TumblebugSettings
from tumblebug.spider_client import Spider

log = logging.getLogger("tumblebug.reconciler")

# Failures that say nothing about the VM: try again later rather than mark it Failed.
TRANSIENT = (errors.Unavailable, errors.DeadlineExceeded, errors.Aborted)



def transient(err: errors.DomainError) -> bool:
    """A failure worth retrying: the VM's cloud did not answer (a cloud's own "no" is final)."""
    return isinstance(err, TRANSIENT) and not err.upstream_code


def set_fields(vm: pb.McisVm, **fields: object) -> pb.McisVm:
    for name, value in fields.items():
        setattr(vm, name, value)
    return vm


class VmWrites(Protocol):
    """How actions change VM records: compare-and-swap, seen at once by the reconciler's cache."""

    async def write_vm(self, key: str, change: Change) -> pb.McisVm | None: ...

    async def drop_vm(self, key: str) -> None: ...


class Actions:
    """Spider calls for VMs, bounded per connection and per region."""

    def __init__(self, store: Store, spider: Spider, settings: TumblebugSettings, monitoring: Monitoring,
                 revocations: Revocations, writes: VmWrites) -> None:
        self.store = store
        self.spider = spider
        self.settings = settings
        self.monitoring = monitoring
        self.revocations = revocations
        self.writes = writes
        self.conn_slots: dict[str, asyncio.Semaphore] = {}
        self.region_slots: dict[str, asyncio.Semaphore] = {}
        self.conn_info: dict[str, asyncio.Future[tuple[str, str]]] = {}
        self.res_names: dict[tuple[str, str, str], str] = {}
        # Set by the reconciler when tumblebug places by request (tumblebug/mcis/failovers.py).
        self.failovers: Failovers | None = None

    # ------------------------------------------------------------- bounds

    async def slotted(self, connection: str, op: Callable[[], Awaitable[None]]) -> None:
        """Run `op` holding a slot of its connection and one of its region."""
        provider, region = await self.where(connection)
        async with self._slot(self.conn_slots, connection, self.settings.max_per_connection), \
                self._slot(self.region_slots, f"{provider}/{region}", self.settings.max_per_region):
            await op()

    @staticmethod
    def _slot(slots: dict[str, asyncio.Semaphore], key: str, size: int) -> asyncio.Semaphore:
        if key not in slots:
            slots[key] = asyncio.Semaphore(size)
        return slots[key]

    async def where(self, connection: str) -> tuple[str, str]:
        """(provider, region) of a connection: asked of spider once, however many VMs ask at once."""
        found = self.conn_info.get(connection)
        if found is None or (found.done() and found.exception() is not None):
            found = asyncio.ensure_future(self._ask_where(connection))
            self.conn_info[connection] = found
        return await asyncio.shield(found)

    async def _ask_where(self, connection: str) -> tuple[str, str]:
        conn = await self.spider.connection(connection)
        return conn.provider, conn.cloud_region

    async def _spider_name(self, ns: str, collection: str, name: str) -> str:
        key = (ns, collection, name)
        if key not in self.res_names:
            found = await self.store.must_get(keyspace.resource(ns, collection, name), pb.Resource,
                                              f"{collection[:-1]} {name!r}")
            self.res_names[key] = found.value.iid.name
        return self.res_names[key]

    # ------------------------------------------------------------- records only

    async def mark(self, key: str, step: Step) -> None:
        """The steps that only change the record (MARK_TERMINATED, MARK_LOST, SETTLE)."""
        if step is Step.MARK_TERMINATED:
            await self.writes.write_vm(key, lambda v: set_fields(v, status=common.TERMINATED,
                                                                 target_action=pb.ACTION_NONE))
        elif step is Step.MARK_LOST:
            await self.writes.write_vm(key, lambda v: set_fields(v, status=common.FAILED, error=decisions.LOST,
                                                                 target_action=pb.ACTION_NONE)
                                       if v.status == common.NOT_EXIST else None)
        elif step is Step.SETTLE:
            await self.writes.write_vm(key, lambda v: set_fields(v, target_action=pb.ACTION_NONE))

    # ------------------------------------------------------------- spider

    async def create(self, ns: str, name: str, mcis: pb.Mcis, key: str, vm: pb.McisVm,
                     announced: bool = False) -> None:
        """Ask spider for the VM; `announced`: its record was born `requested` by this leader and
        the create was not sent since (`decisions.unsent_create`), so it says "asked" already."""
        sg = next((g for g in mcis.subgroups if g.name == vm.subgroup), None)
        if sg is None:
            return
        want = spb.Vm(iid=common.IID(name=vm.iid.name), spec=sg.csp_spec, image=sg.csp_image,
                      root_disk_gib=sg.root_disk_gib, user_data=sg.user_data)
        if sg.vnet:
            want.vpc = await self._spider_name(ns, "vnets", sg.vnet)
            want.subnet = sg.subnet
        want.security_groups.extend([await self._spider_name(ns, "security-groups", g) for g in sg.security_groups])
        if sg.ssh_key:
            want.key_pair = await self._spider_name(ns, "ssh-keys", sg.ssh_key)
        # The record says "asked" before spider is asked: a removal then knows to delete in the cloud.
        # The write is a compare-and-swap, so it also checks the record afresh: a VM made already
        # (the cache was behind) or on its way out is not asked for. A record born `requested` in
        # this term needs neither: it was made saying so, and nothing sent its create since.
        # A record with a cloud ID that does not say "asked" (a create's answer written before the
        # VM was marked asked again) gets the mark and no call: polling follows it from there.
        if not announced:
            asked = await self.writes.write_vm(key, lambda v: None if v.removing or (v.iid.csp_id and v.requested)
                                               else set_fields(v, requested=True))
            if asked is None or asked.iid.csp_id:
                return
        if agent_wanted(mcis) and self.monitoring.enabled:
            # A fresh credential each time: it travels in the user-data only, never in a record.
            try:
                want.user_data = await self.monitoring.agent_user_data(ns, name, vm.name, vm.request_id)
            except errors.DomainError as err:
                # Monitoring is down: the VM is worth more than its agent. Say so on the VM.
                note = f"{AGENT_NOTE}{err.message}"
                log.warning("VM made without its agent", extra={"vm": key, "error": err.message})
                await self.writes.write_vm(key, lambda v: set_fields(v, error=note))
        try:
            made = await self.spider.call(self.spider.stub.CreateVm, spb.CreateVmRequest(
                connection=vm.connection, vm=want, request_id=vm.request_id))
        except errors.DomainError as err:
            if transient(err):
                raise
            await self.create_failed(key, vm, err)
            return
        await self.writes.write_vm(key, lambda v: decisions.observe(v, made))

    async def create_failed(self, key: str, vm: pb.McisVm, err: errors.DomainError) -> None:
        """The cloud refused to make a VM (a final answer, not a timeout). The one place a refused
        create lands: a capacity or quota refusal of a VM placed by a request with failover is
        placed elsewhere (`failovers`); any other, the VM is Failed with the cloud's words on it,
        and the failure policy judges it once its operation settles."""
        if self.failovers is not None and await self.failovers.handle(key, err):
            return
        why = err.message
        await self.writes.write_vm(key, lambda v: set_fields(v, status=common.FAILED, target_action=pb.ACTION_NONE,
                                                             error=why))

    async def verb(self, key: str, vm: pb.McisVm, step: Step, revoke: bool = False) -> None:
        """Spider's terminate (DeleteVm), reboot, suspend or resume of one VM."""
        stub = self.spider.stub
        request = spb.VmActionRequest(connection=vm.connection, name=vm.iid.name)
        try:
            if step is Step.TERMINATE:
                await self.spider.call(stub.DeleteVm, spb.DeleteResourceRequest(connection=vm.connection,
                                                                                 name=vm.iid.name))
                reply = spb.VmStatusResponse(status=common.TERMINATED)
            else:
                rpc = {Step.SUSPEND: stub.SuspendVm, Step.RESUME: stub.ResumeVm, Step.REBOOT: stub.RebootVm}[step]
                reply = await self.spider.call(rpc, request)
        except errors.NotFound:
            reply = spb.VmStatusResponse(status=common.TERMINATED if step is Step.TERMINATE else common.NOT_EXIST)
        except errors.FailedPrecondition as err:
            why = err.message

            def refused(v: pb.McisVm) -> pb.McisVm:
                v.error = why
                aim = decisions.after_refusal(v)
                if aim is not None:
                    v.target_status, v.target_action = aim.target_status, aim.target_action
                return v

            await self.writes.write_vm(key, refused)
            return
        if step is Step.TERMINATE and revoke:
            await self.revocations.owe(key, vm)  # the VM is gone for good: so is its agent's identity
        ended = {"target_action": pb.ACTION_NONE} if step.ends_action else {}
        await self.writes.write_vm(key, lambda v: set_fields(v, status=reply.status, error="", **ended))

    async def remove(self, key: str, vm: pb.McisVm, force: bool, revoke: bool) -> None:
        """Delete the VM in its cloud (if it was ever asked for), then its record."""
        if vm.requested:
            try:
                await self.spider.call(self.spider.stub.DeleteVm, spb.DeleteResourceRequest(
                    connection=vm.connection, name=vm.iid.name, force=force))
            except errors.NotFound:
                pass
            except errors.FailedPrecondition:
                if not force:
                    raise
        if revoke:
            await self.revocations.owe(key, vm)  # before the record goes: a crash between loses nothing
        with contextlib.suppress(errors.NotFound):
            await self.writes.drop_vm(key)
