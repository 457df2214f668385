"""The MCIS reconciler: level-triggered, leader-only, restartable at any point.

It keeps an informer (a watched copy) of every MCIS and VM record and, for each
MCIS that changed, compares what is wanted with what is recorded:

1. queued verbs (intents) become targets on the VM records in their scope;
2. each subgroup gets as many VM records as its size (new ones Creating;
   extra ones, failed first, marked for removal);
3. each VM whose status differs from its target gets one spider call
   (create, suspend, resume, reboot, delete), bounded per connection and per
   region; the record is written before the call and completed after it;
4. VMs on their way somewhere are polled, one spider listing per connection;
5. the MCIS summary is recomputed, the failure policy applied once the VMs of
   a request settle, and a deleted MCIS removed once its VMs are gone.

A VM with an agent that is terminated or removed has its agent credential revoked
(see `revocations`: owed in etcd first, so it is retried rather than lost).

A VM's spider create carries a request ID kept in its record, so after a crash
the same create is sent again and spider answers with the VM it already made.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from google.protobuf.message import Message

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as spb
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.store import Informer, Store
from tumblebug import keys
from tumblebug.mcis import status
from tumblebug.mcis.revocations import Revocations, had_credential
from tumblebug.monitoring import Monitoring
from tumblebug.namespaces import now
from tumblebug.settings import TumblebugSettings
from tumblebug.spider_client import Spider

log = logging.getLogger("tumblebug.reconciler")

# The least time between two passes over one MCIS while its VMs keep changing.
PASS_GAP_S = 0.1
# Yield to the event loop every this many VMs in a long pass.
YIELD_EVERY = 500

# The start of the note on a VM made without its agent: a lasting fact about the VM, not an error
# it recovers from, so it is not cleared when the VM reaches its target.
AGENT_NOTE = "no agent: "

# Failures that say nothing about the VM: try again later rather than mark it Failed.
TRANSIENT = (errors.Unavailable, errors.DeadlineExceeded, errors.Aborted)


def transient(err: errors.DomainError) -> bool:
    """A failure worth retrying: the VM's cloud did not answer (a cloud's own "no" is final)."""
    return isinstance(err, TRANSIENT) and not err.upstream_code


def _group(key: str) -> str:
    """Informer groups: the VMs of each MCIS together; MCIS records in one group."""
    parsed = keys.parse(key)
    if parsed is None or not parsed[2]:
        return ""
    return f"{parsed[0]}/{parsed[1]}"


def _decode(key: str, raw: bytes) -> Message | None:
    parsed = keys.parse(key)
    if parsed is None:
        return None
    return pb.McisVm.FromString(raw) if parsed[2] else pb.Mcis.FromString(raw)


class Reconciler:
    """Drives every MCIS toward its desired state; run it only in the elected leader."""

    def __init__(self, store: Store, spider: Spider, settings: TumblebugSettings, monitoring: Monitoring) -> None:
        self.store = store
        self.spider = spider
        self.monitoring = monitoring
        self.revocations = Revocations(store, monitoring)
        self.settings = settings
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.queued: set[tuple[str, str]] = set()
        self.busy: set[tuple[str, str]] = set()
        self.dirty: set[tuple[str, str]] = set()
        self.inflight: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.conn_slots: dict[str, asyncio.Semaphore] = {}
        self.region_slots: dict[str, asyncio.Semaphore] = {}
        self.conn_info: dict[str, asyncio.Future[tuple[str, str]]] = {}
        self.res_names: dict[tuple[str, str, str], str] = {}
        self.informer: Informer | None = None

    # ------------------------------------------------------------ plumbing

    async def run(self) -> None:
        """The leader's body: follow the records and reconcile until cancelled."""
        self.informer = Informer(self.store, keys.NS_ROOT, _decode, self._changed, _group)
        await self.informer.start()
        for key in list(self.informer.cache):
            self._changed(key)
        loops = [asyncio.create_task(self._worker()) for _ in range(self.settings.workers)]
        loops.append(asyncio.create_task(self._poller()))
        if self.monitoring.enabled:
            loops.append(asyncio.create_task(self.revocations.run()))
        try:
            await asyncio.gather(*loops)
        finally:
            for task in [*loops, *self.tasks]:
                task.cancel()
            for task in [*loops, *self.tasks]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.informer.stop()

    def _changed(self, key: str) -> None:
        parsed = keys.parse(key)
        if parsed is not None:
            self.enqueue(parsed[0], parsed[1])

    def enqueue(self, ns: str, name: str) -> None:
        ref = (ns, name)
        if ref in self.busy:
            self.dirty.add(ref)  # look again when the current pass ends
        elif ref not in self.queued:
            self.queued.add(ref)
            self.queue.put_nowait(ref)

    async def _worker(self) -> None:
        while True:
            ref = await self.queue.get()
            self.queued.discard(ref)
            self.busy.add(ref)
            try:
                await self.reconcile(*ref)
            except errors.DomainError as err:
                if not isinstance(err, errors.Aborted):
                    log.warning("reconcile failed", extra={"mcis": "/".join(ref), "error": err.message})
                self._later(ref, 0.5)
            finally:
                self.busy.discard(ref)
                if ref in self.dirty:
                    # Changes came in during the pass: look again soon, not at once, so a burst of
                    # VM updates makes a few passes rather than one per update.
                    self.dirty.discard(ref)
                    self._later(ref, PASS_GAP_S)

    def _later(self, ref: tuple[str, str], delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.enqueue, *ref)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _records(self, ns: str, name: str) -> tuple[tuple[pb.Mcis, int] | None, dict[str, tuple[pb.McisVm, int]]]:
        """The MCIS (a copy: a pass edits it) and its VMs (the cached records: read only,
        every change goes through `_write_vm`, which reads afresh)."""
        assert self.informer is not None
        entry = self.informer.cache.get(keys.mcis(ns, name))
        head = None
        if entry is not None:
            mcis = pb.Mcis()
            mcis.CopyFrom(entry.value)  # type: ignore[arg-type]
            head = (mcis, entry.mod_revision)
        vms = {key: (e.value, e.mod_revision) for key, e in self.informer.group(f"{ns}/{name}")}
        return head, vms  # type: ignore[return-value]

    # ----------------------------------------------------------- one pass

    async def reconcile(self, ns: str, name: str) -> None:
        head, vms = self._records(ns, name)
        if head is None:
            return
        mcis, rev = head
        if mcis.deleting:
            # Every VM of a deleted MCIS is on its way out: `_drive` reads that from the MCIS record
            # (see `_leaving`), so a delete costs no write per VM before the VMs start going.
            if not vms:
                with contextlib.suppress(errors.Aborted):
                    await self.store.delete(keys.mcis(ns, name), rev)
                    self._forgot(keys.mcis(ns, name))
                return
        elif mcis.intents:
            await self._apply_intents(ns, name, mcis, rev, vms)
            return  # the MCIS write brings the next pass
        else:
            await self._membership(ns, name, mcis, vms)
        for i, (key, (vm, _)) in enumerate(vms.items()):
            self._drive(ns, name, mcis, key, vm)
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # a pass over thousands of VMs must not stall the loop
        await self._summarize(ns, name, mcis, rev, vms)

    async def _write_vm(self, key: str, change: Callable[[pb.McisVm], pb.McisVm | None]) -> None:
        """Change a VM record (read afresh, compare-and-swap) and see the change at once."""
        def stamped(vm: pb.McisVm) -> pb.McisVm | None:
            out = change(vm)
            if out is not None:
                out.update_time.CopyFrom(now())
            return out

        with contextlib.suppress(errors.NotFound):
            written = await self.store.modify_versioned(key, pb.McisVm, stamped, key)
            self._wrote(key, written.value, written.mod_revision)

    def _wrote(self, key: str, value: Message, revision: int) -> None:
        assert self.informer is not None
        self.informer.wrote(key, value, revision)

    def _forgot(self, key: str) -> None:
        assert self.informer is not None
        self.informer.forgot(key)

    async def _apply_intents(self, ns: str, name: str, mcis: pb.Mcis, rev: int,
                             vms: dict[str, tuple[pb.McisVm, int]]) -> None:
        for intent in mcis.intents:
            need, target = status.VERBS[intent.action]
            for key, (vm, _) in vms.items():
                in_scope = (not intent.subgroup or vm.subgroup == intent.subgroup) and (
                    not intent.vm or vm.name == intent.vm)
                if not in_scope or vm.removing or intent.action == pb.ACTION_REFINE:
                    continue  # refine only shrinks sizes; membership drops the failed VMs
                if vm.status not in need and not intent.force:
                    continue

                def aim(v: pb.McisVm, target: common.VmStatus = target, action: pb.Action = intent.action) -> pb.McisVm:
                    v.target_status = target
                    v.target_action = action
                    v.error = ""
                    return v

                await self._write_vm(key, aim)
        applied = max(i.id for i in mcis.intents)
        del mcis.intents[:]
        mcis.observed_generation = max(mcis.observed_generation, applied)
        self._wrote(keys.mcis(ns, name), mcis, await self.store.update(keys.mcis(ns, name), mcis, rev))

    async def _membership(self, ns: str, name: str, mcis: pb.Mcis, vms: dict[str, tuple[pb.McisVm, int]]) -> None:
        """As many live VM records per subgroup as its size: add new ones, mark extras (failed first)."""
        groups = {sg.name: sg for sg in mcis.subgroups}
        by_group: dict[str, list[tuple[str, pb.McisVm]]] = {g: [] for g in groups}
        for key, (vm, _) in vms.items():
            if vm.subgroup in by_group:
                by_group[vm.subgroup].append((key, vm))
            elif not vm.removing:
                await self._write_vm(key, lambda v: _set(v, removing=True))
        for sg in mcis.subgroups:
            members = by_group[sg.name]
            live = [(k, v) for k, v in members if not v.removing]
            if len(live) > sg.size:
                live.sort(key=lambda kv: (kv[1].status != common.FAILED, -kv[1].index))
                for key, _ in live[: len(live) - sg.size]:
                    await self._write_vm(key, lambda v: _set(v, removing=True))
            elif len(live) < sg.size:
                await self._add_vms(ns, name, mcis, sg, members, sg.size - len(live))

    async def _add_vms(self, ns: str, name: str, mcis: pb.Mcis, sg: pb.Subgroup,
                       members: list[tuple[str, pb.McisVm]], count: int) -> None:
        provider, region = await self._where(sg.connection)
        start = max((v.index for _, v in members), default=0) + 1
        records = []
        for index in range(start, start + count):
            vm_name = f"{sg.name}-{index}"
            records.append((keys.vm(ns, name, vm_name), pb.McisVm(
                name=vm_name, subgroup=sg.name, connection=sg.connection, status=common.CREATING,
                target_status=common.RUNNING, target_action=pb.ACTION_CREATE, request_id=uuid.uuid4().hex,
                provider=provider, region=region, index=index, origin=mcis.policy_op or mcis.generation,
                iid=common.IID(name=keys.spider_name(ns, name, vm_name)), create_time=now(), update_time=now())))
        for i in range(0, len(records), 100):
            with contextlib.suppress(errors.Aborted):  # a previous pass made some: the next pass sees them
                revision = await self.store.commit(records[i:i + 100], [])
                for key, record in records[i:i + 100]:
                    self._wrote(key, record, revision)

    # ------------------------------------------------------------ driving

    def _drive(self, ns: str, name: str, mcis: pb.Mcis, key: str, vm: pb.McisVm) -> None:
        """Start the one spider call this VM needs now, if any and none is running for it."""
        if key in self.inflight:
            return
        op: Callable[[], Awaitable[None]] | None = None
        # Whether a VM on its way out may hold an agent credential to have revoked.
        revoke = self.monitoring.enabled and agent_wanted(mcis) and had_credential(vm)
        if _leaving(mcis, vm):
            op = lambda: self._remove(key, vm, mcis.force_delete, revoke)  # noqa: E731
        elif not vm.requested:
            if vm.target_status == common.RUNNING:
                op = lambda: self._create(ns, name, mcis, key, vm)  # noqa: E731
            elif vm.target_status == common.TERMINATED and vm.status != common.TERMINATED:
                op = lambda: self._write_vm(key, lambda v: _set(v, status=common.TERMINATED,  # noqa: E731
                                                                  target_action=pb.ACTION_NONE))
        elif vm.status in (common.FAILED, common.TERMINATING) or vm.status in status.MOVING:
            op = None  # failed stays failed; moving ones are polled
        elif vm.target_status == common.TERMINATED and vm.status != common.TERMINATED:
            op = lambda: self._verb(key, vm, "terminate", revoke)  # noqa: E731
        elif vm.target_action == pb.ACTION_REBOOT and vm.status == common.RUNNING:
            op = lambda: self._verb(key, vm, "reboot")  # noqa: E731
        elif vm.target_status == common.SUSPENDED and vm.status == common.RUNNING:
            op = lambda: self._verb(key, vm, "suspend")  # noqa: E731
        elif vm.target_status == common.RUNNING and vm.status == common.SUSPENDED:
            op = lambda: self._verb(key, vm, "resume")  # noqa: E731
        elif vm.target_action != pb.ACTION_NONE and vm.status == vm.target_status:
            op = lambda: self._write_vm(key, lambda v: _set(v, target_action=pb.ACTION_NONE))  # noqa: E731
        if op is not None:
            self.inflight.add(key)
            self._spawn(self._run_op(ns, name, key, vm.connection, op))

    async def _run_op(self, ns: str, name: str, key: str, connection: str, op: Callable[[], Awaitable[None]]) -> None:
        try:
            provider, region = await self._where(connection)
            async with self._slot(self.conn_slots, connection, self.settings.max_per_connection), \
                    self._slot(self.region_slots, f"{provider}/{region}", self.settings.max_per_region):
                await op()
        except errors.DomainError as err:
            if transient(err):
                log.info("VM operation will be retried", extra={"vm": key, "error": err.message})
                await asyncio.sleep(0.5)
            else:
                log.warning("VM operation failed", extra={"vm": key, "error": err.message})
        finally:
            self.inflight.discard(key)
            self.enqueue(ns, name)

    @staticmethod
    def _slot(slots: dict[str, asyncio.Semaphore], key: str, size: int) -> asyncio.Semaphore:
        if key not in slots:
            slots[key] = asyncio.Semaphore(size)
        return slots[key]

    async def _where(self, connection: str) -> tuple[str, str]:
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
            found = await self.store.must_get(keys.resource(ns, collection, name), pb.Resource,
                                              f"{collection[:-1]} {name!r}")
            self.res_names[key] = found.value.iid.name
        return self.res_names[key]

    async def _create(self, ns: str, name: str, mcis: pb.Mcis, key: str, vm: pb.McisVm) -> None:
        sg = next((g for g in mcis.subgroups if g.name == vm.subgroup), None)
        fresh = await self.store.get(key, pb.McisVm)
        if sg is None or fresh is None or fresh.value.iid.csp_id or fresh.value.removing:
            return  # made already (the cache was behind), or on its way out
        want = spb.Vm(iid=common.IID(name=vm.iid.name), spec=sg.csp_spec, image=sg.csp_image,
                      root_disk_gib=sg.root_disk_gib, user_data=sg.user_data)
        if sg.vnet:
            want.vpc = await self._spider_name(ns, "vnets", sg.vnet)
            want.subnet = sg.subnet
        want.security_groups.extend([await self._spider_name(ns, "security-groups", g) for g in sg.security_groups])
        if sg.ssh_key:
            want.key_pair = await self._spider_name(ns, "ssh-keys", sg.ssh_key)
        if agent_wanted(mcis) and self.monitoring.enabled:
            # A fresh credential each time: it travels in the user-data only, never in a record.
            try:
                want.user_data = await self.monitoring.agent_user_data(ns, name, vm.name, vm.request_id)
            except errors.DomainError as err:
                # Monitoring is down: the VM is worth more than its agent. Say so on the VM.
                note = f"{AGENT_NOTE}{err.message}"
                log.warning("VM made without its agent", extra={"vm": key, "error": err.message})
                await self._write_vm(key, lambda v: _set(v, error=note))
        # The record says "asked" before spider is asked: a removal then knows to delete in the cloud.
        await self._write_vm(key, lambda v: _set(v, requested=True))
        try:
            made = await self.spider.call(self.spider.stub.CreateVm, spb.CreateVmRequest(
                connection=vm.connection, vm=want, request_id=vm.request_id))
        except errors.DomainError as err:
            if transient(err):
                raise
            why = err.message  # the cloud's words stay on the VM
            await self._write_vm(key, lambda v: _set(v, status=common.FAILED, target_action=pb.ACTION_NONE, error=why))
            return
        await self._write_vm(key, lambda v: _observe(v, made))

    async def _verb(self, key: str, vm: pb.McisVm, verb: str, revoke: bool = False) -> None:
        stub = self.spider.stub
        request = spb.VmActionRequest(connection=vm.connection, name=vm.iid.name)
        try:
            if verb == "terminate":
                await self.spider.call(stub.DeleteVm, spb.DeleteResourceRequest(connection=vm.connection,
                                                                                 name=vm.iid.name))
                reply = spb.VmStatusResponse(status=common.TERMINATED)
            else:
                rpc = {"suspend": stub.SuspendVm, "resume": stub.ResumeVm, "reboot": stub.RebootVm}[verb]
                reply = await self.spider.call(rpc, request)
        except errors.NotFound:
            reply = spb.VmStatusResponse(status=common.TERMINATED if verb == "terminate" else common.NOT_EXIST)
        except errors.FailedPrecondition as err:
            # The cloud moved on its own (or a verb raced): record why; a VM that has settled
            # somewhere keeps that as its target, one on its way is left to polling.
            why = err.message

            def refused(v: pb.McisVm) -> pb.McisVm:
                v.error = why
                if v.status not in status.MOVING:
                    v.target_status = v.status
                    v.target_action = pb.ACTION_NONE
                return v

            await self._write_vm(key, refused)
            return
        if verb == "terminate" and revoke:
            await self.revocations.owe(key, vm)  # the VM is gone for good: so is its agent's identity
        done = pb.ACTION_NONE if verb in ("reboot", "terminate") else None
        await self._write_vm(key, lambda v: _set(v, status=reply.status, error="",
                                                 **({"target_action": done} if done is not None else {})))

    async def _remove(self, key: str, vm: pb.McisVm, force: bool, revoke: bool) -> None:
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
            await self.store.delete(key)
            self._forgot(key)

    # ------------------------------------------------------------ polling

    async def _poller(self) -> None:
        """Poll VMs on their way somewhere (and, now and then, all of them), one listing per connection."""
        last_full = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            full = time.monotonic() - last_full > self.settings.resync_interval_s
            if full:
                last_full = time.monotonic()
            assert self.informer is not None
            by_conn: dict[str, list[tuple[str, pb.McisVm]]] = {}
            for key, entry in list(self.informer.cache.items()):
                vm = entry.value
                if not isinstance(vm, pb.McisVm) or not vm.requested or vm.removing or key in self.inflight:
                    continue
                if vm.status != common.FAILED and (full or vm.status in status.MOVING or not vm.iid.csp_id):
                    by_conn.setdefault(vm.connection, []).append((key, vm))
            if full:
                for ns, name in {(p[0], p[1]) for k in list(self.informer.cache) if (p := keys.parse(k))}:
                    self.enqueue(ns, name)
            await asyncio.gather(*(self._poll_connection(c, items) for c, items in by_conn.items()),
                                 return_exceptions=True)

    async def _poll_connection(self, connection: str, items: list[tuple[str, pb.McisVm]]) -> None:
        seen: dict[str, spb.Vm] = {}
        token = ""
        while True:
            page = await self.spider.call(self.spider.stub.ListVms, spb.ListResourcesRequest(
                connection=connection, page_size=1000, page_token=token))
            seen.update((v.iid.name, v) for v in page.vms)
            token = page.next_page_token
            if not token:
                break
        for key, vm in items:
            cloud = seen.get(vm.iid.name)
            if cloud is None:
                if not vm.iid.csp_id and key not in self.inflight:
                    # Asked, but spider never recorded it (we stopped before the call reached it,
                    # or spider dropped an intent the cloud never acted on): ask again, same request ID.
                    await self._write_vm(key, lambda v: _set(v, requested=False)
                                         if not v.iid.csp_id and v.status == common.CREATING else None)
                continue
            if cloud.meta.phase != common.PHASE_READY:
                continue
            if (cloud.status, cloud.private_ip, cloud.iid.csp_id, cloud.ssh_access_point) != \
                    (vm.status, vm.private_ip, vm.iid.csp_id, vm.ssh_access_point):
                await self._write_vm(key, functools.partial(_observe, seen=cloud))

    # ------------------------------------------------------------ summary

    async def _summarize(self, ns: str, name: str, mcis: pb.Mcis, rev: int,
                         vms: dict[str, tuple[pb.McisVm, int]]) -> None:
        records = [v for v, _ in vms.values()]
        counts = status.count(records)
        groups = {sg.name: sg.size for sg in mcis.subgroups}
        live = [v for v in records if not v.removing]
        # Done when every VM is where it was asked to be (or failed) and nothing is on its way.
        complete = (not mcis.deleting and not mcis.intents and status.settled(counts)
                    and len(live) == len(records) == sum(groups.values())
                    and all((v.requested or v.status == common.TERMINATED) and v.target_action != pb.ACTION_REBOOT
                            and v.status in (v.target_status, common.FAILED) for v in live))
        new = pb.Mcis()
        new.CopyFrom(mcis)
        new.status_count.CopyFrom(counts)
        new.status = status.summary(counts)
        if complete:
            new.observed_generation = new.generation
            new.target_action = pb.ACTION_NONE
            if new.policy_op:
                self._judge(new, live)
        if new != mcis:
            new.update_time.CopyFrom(now())
            try:
                self._wrote(keys.mcis(ns, name), new, await self.store.update(keys.mcis(ns, name), new, rev))
            except errors.Aborted:
                self.enqueue(ns, name)  # the record moved on meanwhile: summarize the new one

    @staticmethod
    def _judge(mcis: pb.Mcis, live: list[pb.McisVm]) -> None:
        """The failure policy, once the VMs of operation `policy_op` have all settled."""
        made = [v for v in live if v.origin == mcis.policy_op]
        failed = [v for v in made if v.status == common.FAILED]
        op, mcis.policy_op = mcis.policy_op, 0
        if not failed or mcis.policy in (pb.POLICY_CONTINUE, pb.FAILURE_POLICY_UNSPECIFIED):
            return
        drop = made if mcis.policy == pb.POLICY_ROLLBACK else failed
        for sg in mcis.subgroups:
            sg.size -= sum(1 for v in drop if v.subgroup == sg.name)
        mcis.target_action = pb.ACTION_REFINE if mcis.policy == pb.POLICY_REFINE else pb.ACTION_TERMINATE
        mcis.message = (f"{len(failed)} of {len(made)} new VMs failed; "
                        f"{'rolled back' if mcis.policy == pb.POLICY_ROLLBACK else 'dropped the failed'}")
        if mcis.policy == pb.POLICY_ROLLBACK and op == 1:
            mcis.deleting = True  # the request that made the MCIS is undone whole
        mcis.generation += 1


def agent_wanted(mcis: pb.Mcis) -> bool:
    """Agents are installed unless the MCIS asked for none."""
    return not mcis.HasField("install_agent") or mcis.install_agent


def _leaving(mcis: pb.Mcis, vm: pb.McisVm) -> bool:
    """Whether a VM is on its way out: marked itself (scale-in, refine, DeleteMcisVm), or its MCIS
    is being deleted. The second is not written on each VM: deleting a 100,000-VM MCIS then
    starts removing VMs at once instead of after 100,000 record writes."""
    return vm.removing or mcis.deleting


def _set(vm: pb.McisVm, **fields: object) -> pb.McisVm:
    for field, value in fields.items():
        setattr(vm, field, value)
    return vm


def _observe(vm: pb.McisVm, seen: spb.Vm) -> pb.McisVm:
    vm.status = seen.status
    vm.iid.CopyFrom(common.IID(name=vm.iid.name or seen.iid.name, csp_name=seen.iid.csp_name,
                               csp_id=seen.iid.csp_id))
    vm.private_ip = seen.private_ip
    vm.public_ip = seen.public_ip
    vm.ssh_access_point = seen.ssh_access_point
    if vm.status == vm.target_status and vm.target_action != pb.ACTION_REBOOT:
        vm.target_action = pb.ACTION_NONE
    if vm.status == vm.target_status and vm.status != common.FAILED and not vm.error.startswith(AGENT_NOTE):
        # It got where it was asked to be: whatever went wrong on the way is over (a refused verb,
        # a cloud that moved on its own). A VM's `error` tells what is wrong now, not what once was.
        vm.error = ""
    return vm
