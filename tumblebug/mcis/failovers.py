"""Failover wired into the MCIS reconciler: a VM whose create the cloud refused for capacity or
quota is placed again, by its MCIS's own placement request (`tumblebug.failover.decide`).

`Failovers.handle` is called from `Actions.create_failed`, the one place a refused create lands.
A move is one etcd transaction over the MCIS record and two VM records:

- the VM's subgroup shrinks by one and a subgroup of the new spec grows by one (or is added, on
  the new connection's default network, security group and key, made before the transaction);
- the refused VM is marked `removing` (its record goes once spider confirms nothing is left);
- its successor's record is written in the same transaction, Creating and not yet asked for,
  carrying the chain of moves in `failovers` (so the bound on moves and the specs already tried
  follow the VM from record to record); membership then finds every subgroup full;
- the move is appended to the MCIS's events.

So a crash at any point leaves either the refused VM still Creating (the poller sends the same
create again, the cloud refuses again, the decision is made again) or the move whole. When no move
keeps the request, the VM is marked Failed with the reason, with an event, in one transaction.
Failovers of one MCIS run one at a time in the leader, so each decision sees the moves before it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Protocol

from cbapi.common.v1 import common_pb2 as common
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.proto_time import now
from services.store import Store
from services.store.conflicts import retry_on_conflict
from tumblebug import keyspace
from tumblebug.failover import DEFAULT_MAX_MOVES, Move, Stay, decide, is_capacity_error
from tumblebug.mcis.checks import SubgroupChecks
from tumblebug.mcis.events import FAILOVER, FAILOVER_FAILED, add_event
from tumblebug.placement import CandidateTable, PlacementError
from tumblebug.placement.request import Keep
from tumblebug.placement_service import PlacementService, pick_image, plan_request

log = logging.getLogger("tumblebug.failover")

MODES = {pb.FAILOVER_REGION: "region", pb.FAILOVER_CLOUD: "cloud"}


class Records(Protocol):
    """How failover writes: one transaction, seen at once by the reconciler's cache."""

    async def commit(self, creates: Sequence[tuple[str, pb.McisVm]],
                     updates: Sequence[tuple[str, pb.Mcis | pb.McisVm, int]]) -> None: ...

    def vms_of(self, ns: str, name: str) -> Mapping[str, pb.McisVm]: ...


# ------------------------------------------------------------------ pure helpers


def group_of(subgroup: str, groups: Iterable[str]) -> str | None:
    """The placement group a subgroup was made for: a placement makes `{group}` or `{group}-{k}`
    (see `PlacementService.subgroups`); the longest group name that fits wins. None: a subgroup
    added by hand, which failover leaves alone."""
    best = None
    for g in groups:
        if (subgroup == g or re.fullmatch(re.escape(g) + r"-\d+", subgroup)) and (best is None or len(g) > len(best)):
            best = g
    return best


def spec_id(sg: pb.Subgroup) -> str:
    """A subgroup's catalog spec ID."""
    return f"{sg.connection}+{sg.csp_spec}"


def tried_specs(vm: pb.McisVm) -> list[str]:
    """The specs a VM failed on before, from its moves (`"{from} -> {to} ({kind}): {why}"`)."""
    return [note.split(" -> ", 1)[0] for note in vm.failovers]


def pinned(mcis: pb.Mcis, vms: Mapping[str, pb.McisVm], skip: str, failed_spec: str,
           table: CandidateTable) -> list[Keep]:
    """The request's VMs in place, per (group, spec): live, not failed, not the refused VM, and not
    on the refused spec (that spec is out of the new plan). VMs of hand-made subgroups don't count."""
    groups = [g.name for g in mcis.placement.groups]
    sgs = {sg.name: sg for sg in mcis.subgroups}
    counts: dict[tuple[str, str], int] = {}
    for key, vm in vms.items():
        sg = sgs.get(vm.subgroup)
        group = group_of(vm.subgroup, groups)
        if key == skip or vm.removing or vm.status == common.FAILED or sg is None or group is None:
            continue
        sid = spec_id(sg)
        if sid == failed_spec or sid not in table.row_of:
            continue
        counts[(group, sid)] = counts.get((group, sid), 0) + 1
    return [Keep(g, s, n) for (g, s), n in sorted(counts.items())]


def new_subgroup_name(group: str, taken: Iterable[str]) -> str:
    """`{group}-{k}`, the least k ≥ 2 not taken."""
    names = set(taken)
    k = 2
    while f"{group}-{k}" in names:
        k += 1
    return f"{group}-{k}"


def apply_move(mcis: pb.Mcis, vm: pb.McisVm, target: pb.Subgroup, note: str) -> pb.Subgroup:
    """The MCIS after the move (in place): the VM's subgroup one fewer, `target` (by name) one more
    or added with size 1; the generation bumped; the event appended. Returns the target subgroup."""
    for sg in mcis.subgroups:
        if sg.name == vm.subgroup and sg.size > 0:
            sg.size -= 1
    found = next((sg for sg in mcis.subgroups if sg.name == target.name), None)
    if found is None:
        found = mcis.subgroups.add()
        found.CopyFrom(target)
        found.size = 1
    else:
        found.size += 1
    mcis.generation += 1
    mcis.update_time.CopyFrom(now())
    add_event(mcis, FAILOVER, vm.name, note)
    return found


# ------------------------------------------------------------------ the wiring


class Failovers:
    """Places refused VMs elsewhere (see the module docstring); the leader's reconciler holds one."""

    def __init__(self, store: Store, placement: PlacementService, checks: SubgroupChecks,
                 where: Callable[[str], Awaitable[tuple[str, str]]], records: Records) -> None:
        self.store = store
        self.placement = placement
        self.checks = checks
        self.where = where
        self.records = records
        self.locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def handle(self, key: str, err: errors.DomainError) -> bool:
        """Act on a refused create of the VM at `key`: True when failover took it (moved, or marked
        Failed with its reason), False when it is not failover's (the caller marks it Failed)."""
        parsed = keyspace.parse(key)
        if parsed is None or not is_capacity_error(err):
            return False
        ns, name, _ = parsed
        lock = self.locks.setdefault((ns, name), asyncio.Lock())
        async with lock:
            head = await self.store.get(keyspace.mcis(ns, name), pb.Mcis)
            if head is None or head.value.deleting:
                return False
            mcis = head.value
            mode = MODES.get(mcis.placement.failover)
            found = await self.store.get(key, pb.McisVm)
            if mode is None or found is None:
                return False
            vm = found.value
            if vm.removing or vm.iid.csp_id:
                return True  # on its way out already, or made after all: nothing to move
            sg = next((g for g in mcis.subgroups if g.name == vm.subgroup), None)
            group = group_of(vm.subgroup, [g.name for g in mcis.placement.groups])
            if sg is None or group is None:
                return False
            verdict = await self._decide(mcis, vm, self.records.vms_of(ns, name), key, group, spec_id(sg),
                                         err.message, mode)
            if isinstance(verdict, Stay):
                await self._stay(ns, name, key, err.message, verdict)
                return True
            target = await self._target(ns, mcis, group, verdict.spec_id)
            await self._move(ns, name, key, target, verdict)
            return True

    async def _decide(self, mcis: pb.Mcis, vm: pb.McisVm, vms: Mapping[str, pb.McisVm], key: str, group: str,
                      failed: str, why: str, mode: str) -> Move | Stay:
        snap = await self.placement.snapshot()
        try:
            req = plan_request(mcis.placement)
        except errors.InvalidArgument as err:
            return Stay(f"its placement request cannot be read: {err.message}")
        placed = pinned(mcis, vms, key, failed, snap.table)
        tried = tried_specs(vm)
        most = mcis.placement.max_failovers or DEFAULT_MAX_MOVES
        try:
            # The solver holds the CPU for up to its time limit: off the event loop.
            return await asyncio.to_thread(decide, snap.table, req, mode, group, failed, why, placed, tried, most,
                                           snap.rtt)
        except PlacementError as err:
            return Stay(f"{err.field}: {err.message}")

    async def _target(self, ns: str, mcis: pb.Mcis, group: str, to_spec: str) -> pb.Subgroup:
        """The subgroup the VM moves into: the group's subgroup of that spec, else a new one on the
        spec's connection (its default network, security group and key made now if missing)."""
        groups = [g.name for g in mcis.placement.groups]
        for sg in mcis.subgroups:
            if spec_id(sg) == to_spec and group_of(sg.name, groups) == group:
                return sg
        wanted = next(g for g in mcis.placement.groups if g.name == group)
        snap = await self.placement.snapshot()
        cand = snap.table.candidates[snap.table.row_of[to_spec]]
        image = pick_image(await self.placement.catalog.all_images(), cand, wanted.image)
        if image is None:
            raise errors.FailedPrecondition(f"failover: connection {cand.connection!r} has no {cand.architecture} "
                                            f"image matching {wanted.image or 'any'!r}")
        d = pb.DynamicSubgroup(name=new_subgroup_name(group, (sg.name for sg in mcis.subgroups)), spec_id=to_spec,
                               image_id=image, size=1, root_disk_gib=wanted.root_disk_gib)
        connection, spec, img = await self.checks.checked_dynamic(d, "failover")
        return await self.checks.on_defaults(ns, d, connection, spec, img)

    async def _move(self, ns: str, name: str, key: str, target: pb.Subgroup, move: Move) -> None:
        note = move.note()
        provider, region = await self.where(target.connection)

        async def attempt() -> None:
            head = await self.store.must_get(keyspace.mcis(ns, name), pb.Mcis, f"MCIS {name!r}")
            found = await self.store.must_get(key, pb.McisVm, f"VM {key!r}")
            mcis, vm = head.value, found.value
            if mcis.deleting or vm.removing or vm.iid.csp_id:
                return
            same = next((sg for sg in mcis.subgroups if sg.name == target.name), None)
            if same is not None and spec_id(same) != spec_id(target):
                raise errors.FailedPrecondition(f"failover: subgroup {target.name!r} appeared with another spec")
            sg = apply_move(mcis, vm, target, note)
            members = [v for v in self.records.vms_of(ns, name).values() if v.subgroup == sg.name]
            index = max((v.index for v in members), default=0) + 1
            vm_name = f"{sg.name}-{index}"
            successor = pb.McisVm(
                name=vm_name, subgroup=sg.name, connection=sg.connection, status=common.CREATING,
                target_status=common.RUNNING, target_action=pb.ACTION_CREATE, request_id=uuid.uuid4().hex,
                provider=provider, region=region, index=index, origin=vm.origin,
                iid=common.IID(name=keyspace.spider_name(ns, name, vm_name)), create_time=now(), update_time=now(),
                failovers=[*vm.failovers, note])
            vm.removing = True
            vm.failovers.append(note)
            vm.error = f"failover: {note}"
            vm.update_time.CopyFrom(now())
            # The successor's key must be new (a create compare): a name taken meanwhile retries.
            await self.records.commit([(keyspace.vm(ns, name, vm_name), successor)],
                                      [(head.key, mcis, head.mod_revision), (key, vm, found.mod_revision)])
            log.info("failover", extra={"vm": key, "to": vm_name, "move": note})

        await retry_on_conflict(attempt, f"MCIS {name!r}")

    async def _stay(self, ns: str, name: str, key: str, why: str, stay: Stay) -> None:
        async def attempt() -> None:
            head = await self.store.must_get(keyspace.mcis(ns, name), pb.Mcis, f"MCIS {name!r}")
            found = await self.store.must_get(key, pb.McisVm, f"VM {key!r}")
            mcis, vm = head.value, found.value
            if vm.removing or vm.iid.csp_id:
                return
            vm.status, vm.target_action = common.FAILED, pb.ACTION_NONE
            vm.error = f"{why}; no failover: {stay.reason}"
            vm.update_time.CopyFrom(now())
            add_event(mcis, FAILOVER_FAILED, vm.name, vm.error)
            mcis.update_time.CopyFrom(now())
            await self.records.commit([], [(head.key, mcis, head.mod_revision), (key, vm, found.mod_revision)])

        await retry_on_conflict(attempt, f"MCIS {name!r}")
