"""The MCIS reconciler: level-triggered, leader-only, restartable at any point.

Built on the shared controller runtime (`services.controller`): an informer follows every MCIS and
VM record; a change enqueues its MCIS; workers run one pass per MCIS at a time. A pass asks
`decisions` what to do and acts through `actions` (spider calls, bounded per connection and
region); `poller` follows VMs on their way somewhere. What it decides:

1. a deleted MCIS: every VM leaves (`decisions.leaving`), then the MCIS record goes;
2. queued verbs (intents) become targets on the VM records in their scope;
3. each subgroup gets as many VM records as its size (new ones Creating; extras marked removing);
4. each VM that changed since the last pass gets the one step it needs (`decisions.vm_step`);
5. the MCIS summary, kept incrementally by a `Tally` from VM events, is written when it changed;
   once complete, the failure policy judges the last operation.

A pass drives only the VMs that changed since the last one; a change of the MCIS spec
(generation, deletion) or a resync makes a full pass over its VMs. Driving a VM queues its key on
its connection's lane (`lanes`: a few runner tasks per connection, not a task per VM); the step is
decided when its turn comes. Long loops yield every few milliseconds (`TimeSlice`).

A VM with an agent that is terminated or removed has its agent credential revoked
(see `revocations`: owed in etcd first, so it is retried rather than lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence

from google.protobuf.message import Message

from cbapi.common.v1 import common_pb2 as common
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.controller import Backoff, Controller
from services.controller.slices import TimeSlice
from services.proto_time import now
from services.store import Informer, Store
from tumblebug import keyspace
from tumblebug.mcis import decisions
from tumblebug.mcis.actions import Actions, set_fields, transient
from tumblebug.mcis.agents import agent_wanted
from tumblebug.mcis.checks import SubgroupChecks
from tumblebug.mcis.decisions import Pass, Step
from tumblebug.mcis.failovers import Failovers
from tumblebug.mcis.lanes import Lanes
from tumblebug.mcis.poller import Poller
from tumblebug.mcis.reads import cached_mcis
from tumblebug.mcis.revocations import Revocations, had_credential
from tumblebug.mcis.tally import Tally
from tumblebug.mcis.writes import Change, GroupWriter
from tumblebug.monitoring import Monitoring
from tumblebug.placement_service import PlacementService
from tumblebug.resources import Resources
from tumblebug.settings import TumblebugSettings
from tumblebug.spider_client import Spider

log = logging.getLogger("tumblebug.reconciler")

McisRef = tuple[str, str]

# The least time between two passes over one MCIS while its VMs keep changing.
PASS_GAP_S = 0.1
# New VM records per transaction (etcd allows 128 operations in one).
ADD_BATCH = 100
ADD_IN_FLIGHT = 4
# VM records one pass changes at once (many waves of transactions, not one task per VM of a huge MCIS).
WRITE_WAVE = 1000


def mcis_ref(key: str) -> McisRef | None:
    """The MCIS a record belongs to (an MCIS record and its VM records alike)."""
    parsed = keyspace.parse(key)
    return None if parsed is None else (parsed[0], parsed[1])


def _group(key: str) -> str:
    """Informer groups: the VMs of each MCIS together; MCIS records in one group."""
    parsed = keyspace.parse(key)
    if parsed is None or not parsed[2]:
        return ""
    return f"{parsed[0]}/{parsed[1]}"


def _is_vm(key: str) -> bool:
    parsed = keyspace.parse(key)
    return parsed is not None and bool(parsed[2])


def _decode(key: str, raw: bytes) -> Message | None:
    parsed = keyspace.parse(key)
    if parsed is None:
        return None
    return pb.McisVm.FromString(raw) if parsed[2] else pb.Mcis.FromString(raw)


class Reconciler:
    """Drives every MCIS toward its desired state; run it only in the elected leader."""

    def __init__(self, store: Store, spider: Spider, settings: TumblebugSettings, monitoring: Monitoring,
                 placement: PlacementService | None = None, resources: Resources | None = None) -> None:
        self.store = store
        self.settings = settings
        self.monitoring = monitoring
        self.revocations = Revocations(store, monitoring)
        self.actions = Actions(store, spider, settings, monitoring, self.revocations, self)
        if placement is not None and resources is not None:  # failover needs the placement and the defaults
            self.actions.failovers = Failovers(store, placement, SubgroupChecks(spider, resources),
                                               self.actions.where, self)
        self.poller = Poller(spider, settings, self, self._watched, self._inflight, self._resync)
        self.controller: Controller[McisRef] = Controller(
            "mcis", self.reconcile, key_of=mcis_ref, workers=settings.workers, requeue_gap=PASS_GAP_S,
            quiet=(errors.Aborted,), backoff=lambda: Backoff(base=0.1, cap=10.0))
        # Per VM key: the operation in flight (one at a time), and the backoff of transient failures.
        self.inflight: set[str] = set()
        self.op_backoff: Backoff[str] = Backoff(base=0.5, cap=30.0)
        # Operations wait their turn per connection in a queue, not as a task each (`lanes`).
        self.lanes: Lanes[tuple[McisRef, str]] = Lanes(lambda: settings.max_per_connection, self._turn)
        self.backing_off: dict[str, asyncio.TimerHandle] = {}  # VM key → when its operation may go again
        # VM records this term made `requested` whose create it has not sent yet (`decisions.unsent_create`).
        self.unsent: set[str] = set()
        self.tallies: dict[McisRef, Tally] = {}
        self.polled: set[str] = set()  # VM keys worth polling (kept as records change)
        self.informer: Informer | None = None
        self.writer = GroupWriter(store, lambda: self.cache, self._wrote)

    # ------------------------------------------------------------ runtime

    async def run(self) -> None:
        """One leadership term: follow the records and reconcile until cancelled."""
        self.tallies.clear()
        self.polled.clear()
        self.unsent.clear()
        self.informer = Informer(self.store, keyspace.NS_ROOT, _decode, self._changed, _group, own=self._own)
        alongside = [self.poller.run] + ([self.revocations.run] if self.monitoring.enabled else [])
        try:
            await self.controller.run(self.informer, alongside=alongside)
        finally:
            await self.writer.close()
            await self.lanes.close()
            for timer in self.backing_off.values():
                timer.cancel()
            self.backing_off.clear()
            self.inflight.clear()  # queued and backing-off operations were dropped: the next term starts over
            self.unsent.clear()  # the next term finds them requested and looks for them in spider

    @property
    def cache(self) -> Informer:
        assert self.informer is not None
        return self.informer

    def _changed(self, key: str) -> None:
        """The informer's event handler: keep the tally current, then enqueue the MCIS."""
        self._saw(key)
        self.controller.notify(key)

    def _saw(self, key: str) -> None:
        """Take in the cached version of `key` (or its absence) into its MCIS's tally."""
        ref = mcis_ref(key)
        if ref is None or not _is_vm(key):
            return
        entry = self.cache.cache.get(key)
        tally = self.tallies.get(ref)
        if entry is None:
            self.polled.discard(key)
            self.unsent.discard(key)
            if tally is not None:
                tally.gone(key)
            return
        vm = entry.value
        assert isinstance(vm, pb.McisVm)
        if decisions.needs_poll(vm, False):
            self.polled.add(key)
        else:
            self.polled.discard(key)
        if tally is not None:
            tally.saw(key, vm)
        # else: the tally is made from the whole group when first asked for (`_tally`)

    def _tally(self, ref: McisRef) -> Tally:
        tally = self.tallies.get(ref)
        if tally is None:
            tally = self.tallies[ref] = Tally(decisions.vm_done)
            for key, entry in self.cache.group("/".join(ref)):
                vm = entry.value
                assert isinstance(vm, pb.McisVm)
                tally.saw(key, vm)
                if decisions.needs_poll(vm, False):
                    self.polled.add(key)
        return tally

    def _resync(self) -> None:
        """Every MCIS gets a full pass soon. Its tally stays: it is kept exact by every change
        (rebuilding it would cost a scan of every VM for nothing)."""
        for tally in self.tallies.values():
            tally.spec = None
        for key, _ in self.cache.group(""):  # the MCIS records (`_group`)
            self.controller.notify(key)

    def _watched(self, full: bool) -> Iterator[tuple[str, pb.McisVm]]:
        source = list(self.cache.cache) if full else list(self.polled)
        for key in source:
            entry = self.cache.cache.get(key)
            if entry is not None and isinstance(entry.value, pb.McisVm):
                yield key, entry.value

    def read_mcis(self, ns: str, name: str, floor: int, with_vms: bool) -> pb.Mcis | None:
        """`reads.McisView`: the MCIS from the cache, if it has seen revision `floor`."""
        informer = self.informer
        out = cached_mcis(informer, ns, name, floor)
        if out is not None and informer is not None and with_vms:
            out.vms.extend(e.value for _, e in sorted(informer.group(f"{ns}/{name}")))  # type: ignore[misc]
        return out

    def _own(self, key: str) -> bool:
        """Whether the reconciler is writing `key` now (the informer skips its own events)."""
        return key in self.writer.busy

    def _inflight(self, key: str) -> bool:
        return key in self.inflight

    # ------------------------------------------------------------ records

    async def write_vm(self, key: str, change: Change) -> pb.McisVm | None:
        """Change a VM record by compare-and-swap and see the change at once; the record written,
        or None when `change` left it alone (or it is gone). Changes of many VMs made at the same
        time share transactions (`writes.GroupWriter`)."""
        return await self.writer.write(key, change)

    async def commit(self, creates: Sequence[tuple[str, pb.McisVm]],
                     updates: Sequence[tuple[str, pb.Mcis | pb.McisVm, int]]) -> None:
        """New VM records and guarded updates (MCIS or VM) in one transaction, seen at once."""
        revision = await self.store.commit(creates, updates)
        for key, value in [*creates, *((k, v) for k, v, _ in updates)]:
            if _is_vm(key):
                self._wrote(key, value, revision)
            else:
                self.cache.wrote(key, value, revision)
                self.controller.notify(key)

    def vms_of(self, ns: str, name: str) -> dict[str, pb.McisVm]:
        """The VM records of one MCIS, as the cache has them."""
        return self._vms((ns, name))

    async def drop_vm(self, key: str) -> None:
        await self.store.delete(key)
        self.cache.forgot(key)
        self._saw(key)

    def _wrote(self, key: str, value: Message, revision: int) -> None:
        self.cache.wrote(key, value, revision)
        self._saw(key)
        ref = mcis_ref(key)
        if ref is not None and _is_vm(key):
            self.controller.enqueue(ref)

    # ----------------------------------------------------------- one pass

    async def reconcile(self, ref: McisRef) -> None:
        """One pass over an MCIS (the controller's sync)."""
        ns, name = ref
        entry = self.cache.cache.get(keyspace.mcis(ns, name))
        if entry is None:
            self.tallies.pop(ref, None)
            return
        mcis = pb.Mcis()
        mcis.CopyFrom(entry.value)  # type: ignore[arg-type]
        rev = entry.mod_revision
        tally = self._tally(ref)
        kind = decisions.pass_kind(mcis)
        if kind is Pass.DELETE and decisions.mcis_gone(mcis, tally.marks):
            with contextlib.suppress(errors.Aborted):
                await self.store.delete(keyspace.mcis(ns, name), rev)
                self.cache.forgot(keyspace.mcis(ns, name))
                self.tallies.pop(ref, None)
            return
        if kind is Pass.INTENTS:
            await self._apply_intents(ref, mcis, rev)
            return  # the MCIS write brings the next pass
        spec = (mcis.generation, mcis.deleting)
        full = tally.spec != spec
        if full:
            tally.spec = spec
            if kind is Pass.MEMBERSHIP and decisions.membership_due(mcis, tally, tally.members_of):
                tally.members_of = spec
                try:
                    await self._membership(ref, mcis)
                except BaseException:
                    tally.spec = tally.members_of = None  # not done: the retry is a full pass again
                    raise
            tally.take_dirty()
            todo = [k for k, _ in self.cache.group(f"{ns}/{name}")]
        else:
            todo = list(tally.take_dirty())
        turn = TimeSlice()  # a pass over thousands of VMs must not stall the loop
        for key in todo:
            found = self.cache.cache.get(key)
            if found is not None and isinstance(found.value, pb.McisVm):
                self._drive(ref, mcis, key, found.value)
            await turn.tick()
        await self._summarize(ref, mcis, rev, tally)

    def _vms(self, ref: McisRef) -> dict[str, pb.McisVm]:
        return {k: e.value for k, e in self.cache.group("/".join(ref))}  # type: ignore[misc]

    async def _apply_intents(self, ref: McisRef, mcis: pb.Mcis, rev: int) -> None:
        def change(aim: decisions.Retarget) -> Change:
            def retarget(v: pb.McisVm) -> pb.McisVm:
                v.target_status, v.target_action, v.error = aim.target_status, aim.target_action, ""
                if aim.remove:
                    v.removing = True
                return v
            return retarget

        await self._write_all([(key, change(aim))
                               for key, aim in decisions.retargets(mcis.intents, self._vms(ref)).items()])
        mcis.observed_generation = decisions.applied_generation(mcis)
        del mcis.intents[:]
        await self._write_mcis(ref, mcis, rev)

    async def _write_all(self, changes: Sequence[tuple[str, Change]]) -> None:
        """Change many VM records at once (they share transactions), a bounded number in flight."""
        for i in range(0, len(changes), WRITE_WAVE):
            await asyncio.gather(*(self.write_vm(key, change) for key, change in changes[i:i + WRITE_WAVE]))

    async def _write_mcis(self, ref: McisRef, mcis: pb.Mcis, rev: int) -> None:
        """Write the MCIS record (guarded by `rev`) and pass over it again: what the pass wrote
        (applied intents, a verdict) may need acting on."""
        key = keyspace.mcis(*ref)
        self.cache.wrote(key, mcis, await self.store.update(key, mcis, rev))
        self.controller.enqueue(ref)

    async def _membership(self, ref: McisRef, mcis: pb.Mcis) -> None:
        plan = decisions.membership(mcis, self._vms(ref))
        await self._write_all([(key, lambda v: set_fields(v, removing=True)) for key in plan.remove])
        if plan.add:
            await self._add_vms(ref, mcis, plan.add)

    async def _add_vms(self, ref: McisRef, mcis: pb.Mcis, adds: Sequence[decisions.NewVms]) -> None:
        """New VM records of every subgroup that lacks some, a few transactions at once; each VM
        is driven as soon as its record is written (its create need not wait for the others')."""
        ns, name = ref
        records: list[tuple[str, pb.McisVm]] = []
        made = now()
        turn = TimeSlice()  # thousands of new records must not stall the loop
        for new in adds:
            sg = next(g for g in mcis.subgroups if g.name == new.subgroup)
            provider, region = await self.actions.where(sg.connection)
            for index in new.indexes:
                vm_name = f"{sg.name}-{index}"
                # Born `requested`: the record says "asked" before spider is asked, in the transaction
                # that makes it, so the create sends at once (`decisions.unsent_create`).
                records.append((keyspace.vm(ns, name, vm_name), pb.McisVm(
                    name=vm_name, subgroup=sg.name, connection=sg.connection, status=common.CREATING,
                    target_status=common.RUNNING, target_action=pb.ACTION_CREATE, request_id=uuid.uuid4().hex,
                    requested=True,
                    provider=provider, region=region, index=index, origin=mcis.policy_op or mcis.generation,
                    iid=common.IID(name=keyspace.spider_name(ns, name, vm_name)), create_time=made, update_time=made)))
                await turn.tick()

        async def add(batch: list[tuple[str, pb.McisVm]]) -> None:
            try:
                revision = await self.store.commit(batch, [])
            except errors.Aborted:
                # A previous pass made some (the cache was behind): look again at the whole MCIS.
                self._tally(ref).spec = self._tally(ref).members_of = None
                self.controller.enqueue(ref)
                return
            for key, record in batch:
                self.cache.wrote(key, record, revision)
                self.unsent.add(key)
                self._saw(key)
                self._drive(ref, mcis, key, record)

        # A few transactions at once: 10,000 new records one transaction after another took seconds.
        batches = [records[i:i + ADD_BATCH] for i in range(0, len(records), ADD_BATCH)]
        for i in range(0, len(batches), ADD_IN_FLIGHT):
            await asyncio.gather(*(add(batch) for batch in batches[i:i + ADD_IN_FLIGHT]))

    # ------------------------------------------------------------ driving

    def _drive(self, ref: McisRef, mcis: pb.Mcis, key: str, vm: pb.McisVm) -> None:
        """Queue this VM on its connection's lane if it needs a step now and has none queued or
        running. The queue holds the key alone: what the step is, is decided when its turn comes."""
        if key in self.inflight or decisions.vm_step(vm, mcis.deleting, key in self.unsent) is Step.NONE:
            return
        self.inflight.add(key)
        self.lanes.submit(vm.connection, (ref, key))

    async def _turn(self, item: tuple[McisRef, str]) -> None:
        """A VM's turn on its lane: the one step its record needs now (it may have moved on while
        it waited), from the cached VM and MCIS records."""
        ref, key = item
        found = self.cache.cache.get(key)
        head = self.cache.cache.get(keyspace.mcis(*ref))
        if found is None or head is None:
            self.inflight.discard(key)
            return
        vm, mcis = found.value, head.value
        assert isinstance(vm, pb.McisVm) and isinstance(mcis, pb.Mcis)
        step = decisions.vm_step(vm, mcis.deleting, key in self.unsent)
        if step is Step.NONE:
            self.inflight.discard(key)
            return
        ns, name = ref
        # Whether a VM on its way out may hold an agent credential to have revoked.
        revoke = self.monitoring.enabled and agent_wanted(mcis) and had_credential(vm)
        op: Callable[[], Awaitable[None]]
        if step is Step.REMOVE:
            op = lambda: self.actions.remove(key, vm, mcis.force_delete, revoke)  # noqa: E731
        elif step is Step.CREATE:
            op = lambda: self._create(ns, name, mcis, key, vm)  # noqa: E731
        elif step in decisions.SPIDER_VERBS:
            op = lambda: self.actions.verb(key, vm, step, revoke)  # noqa: E731
        else:
            op = lambda: self.actions.mark(key, step)  # noqa: E731
        await self._run_op(ref, key, vm.connection, op)

    async def _create(self, ns: str, name: str, mcis: pb.Mcis, key: str, vm: pb.McisVm) -> None:
        """The create step; a record born `requested` is sent as it is (no write first). Once spider
        answered (made, or refused for good) it is no longer unsent; a transient failure leaves it
        unsent, so the retry sends it again the same way."""
        await self.actions.create(ns, name, mcis, key, vm, announced=key in self.unsent)
        self.unsent.discard(key)

    async def _run_op(self, ref: McisRef, key: str, connection: str, op: Callable[[], Awaitable[None]]) -> None:
        retry_in = 0.0
        try:
            await self.actions.slotted(connection, op)
            self.op_backoff.forget(key)
        except errors.DomainError as err:
            if transient(err):
                log.info("VM operation will be retried", extra={"vm": key, "error": err.message})
                retry_in = self.op_backoff.when(key)
            else:
                log.warning("VM operation failed", extra={"vm": key, "error": err.message})
        finally:
            if retry_in:
                # The VM waits out its backoff, not the lane: the operations behind it go on.
                self.backing_off[key] = asyncio.get_running_loop().call_later(retry_in, self._op_done, ref, key)
            else:
                self._op_done(ref, key)

    def _op_done(self, ref: McisRef, key: str) -> None:
        self.backing_off.pop(key, None)
        self.inflight.discard(key)
        tally = self.tallies.get(ref)
        if tally is not None and key in tally.marks:
            tally.dirty.add(key)  # look at it again: it may need its next step
        self.controller.enqueue(ref)

    # ------------------------------------------------------------ summary

    async def _summarize(self, ref: McisRef, mcis: pb.Mcis, rev: int, tally: Tally) -> None:
        def live() -> list[pb.McisVm]:
            return [v for v in self._vms(ref).values() if not v.removing]

        new = decisions.summarize_from(mcis, tally, live)
        if new == mcis:
            return
        new.update_time.CopyFrom(now())
        try:
            await self._write_mcis(ref, new, rev)
        except errors.Aborted:
            self.controller.enqueue(ref)  # the record moved on meanwhile: summarize the new one
