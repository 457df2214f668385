"""The resources CloudTwin holds: records, indexes, the lazy state machine,
quota usage, idempotency tokens, counters, and the state file's content.

Each record keeps the wire message (`pb.Resource`) as its single source of
truth, so answering and saving are copies of ready messages. A record's state
moves only when someone reads it: `advance` applies every transition whose
time has passed, so 10,000 idle VMs cost no timers and no CPU.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as pb

from . import faults, lifecycle
from .ids import loopback_ip, make_id, seq_of
from .index import Bucket

ScopeKey = tuple[str, str, str, pb.Kind]  # account, provider, region, kind
UsageKey = tuple[str, str, str]  # account, provider, region


def kind_name(kind: pb.Kind) -> str:
    return pb.Kind.Name(kind)


def set_time(ts: Timestamp, at: float) -> None:
    ts.FromNanoseconds(int(at * 1e9))


@dataclass(eq=False)
class Record:
    """One resource: its wire message plus what the indexes need."""

    res: pb.Resource
    seq: int
    # res.next_state_time as seconds since the epoch; inf while not moving.
    next_at: float = math.inf

    @property
    def id(self) -> str:
        return self.res.id

    @property
    def kind(self) -> pb.Kind:
        return self.res.kind

    @property
    def state(self) -> str:
        return self.res.state

    def scope(self) -> ScopeKey:
        return (self.res.account, self.res.provider, self.res.region, self.res.kind)

    def usage_key(self) -> UsageKey:
        return (self.res.account, self.res.provider, self.res.region)


@dataclass
class Usage:
    """What counts against the quotas of one account in one region."""

    vms: int = 0
    vcpus: int = 0


@dataclass
class Store:
    """Every record, indexed by ID, by scope, and by idempotency token."""

    retention_s: float
    clock: Callable[[], float] = time.time
    next_seq: int = 1
    next_ip: int = 0
    dirty: bool = False
    _by_id: dict[str, Record] = field(default_factory=dict)
    _scopes: dict[ScopeKey, Bucket[Record]] = field(default_factory=dict)
    _tokens: dict[tuple[str, str], Record] = field(default_factory=dict)
    _usage: dict[UsageKey, Usage] = field(default_factory=dict)
    # (time, seq, id) of records on their way to removal, so they go even if nobody reads them.
    _removals: list[tuple[float, int, str]] = field(default_factory=list)

    # -- adding and removing -------------------------------------------------

    def new_record(self, kind: pb.Kind, account: str, provider: str, region: str,
                   now: float | None = None) -> Record:
        """A fresh record with a new ID, created at `now` (not yet added)."""
        seq = self.next_seq
        self.next_seq += 1
        res = pb.Resource(kind=kind, id=make_id(kind, seq), account=account, provider=provider, region=region)
        set_time(res.create_time, self.clock() if now is None else now)
        return Record(res=res, seq=seq)

    def allocate_ip(self) -> str:
        ip = loopback_ip(self.next_ip)
        self.next_ip += 1
        return ip

    def add(self, rec: Record) -> None:
        self._by_id[rec.id] = rec
        self._scopes.setdefault(rec.scope(), Bucket()).add(rec.seq, rec)
        if rec.res.client_token:
            self._tokens[(rec.res.account, rec.res.client_token)] = rec
        if rec.kind == pb.VM and rec.state not in lifecycle.VM_RELEASED:
            self.charge(rec, +1)
        if rec.res.next_state in (lifecycle.TERMINATED, lifecycle.DELETED):
            heapq.heappush(self._removals, (rec.next_at, rec.seq, rec.id))
        self.dirty = True

    def _remove(self, rec: Record) -> None:
        self._by_id.pop(rec.id, None)
        bucket = self._scopes.get(rec.scope())
        if bucket is not None:
            bucket.remove(rec.seq)
        token = (rec.res.account, rec.res.client_token)
        if rec.res.client_token and self._tokens.get(token) is rec:
            del self._tokens[token]
        self.dirty = True

    def charge(self, vm: Record, sign: int) -> None:
        """Count a VM against (sign=+1) or off (sign=-1) its account's quotas."""
        usage = self._usage.setdefault(vm.usage_key(), Usage())
        usage.vms += sign
        usage.vcpus += sign * vm.res.vm.vcpu

    def usage(self, account: str, provider: str, region: str) -> Usage:
        return self._usage.get((account, provider, region), Usage())

    # -- moving through states ----------------------------------------------

    def schedule(self, rec: Record, via: str, to: str, at: float) -> None:
        """Put `rec` in state `via` now, reaching `to` at time `at`."""
        rec.res.state = via
        rec.res.next_state = to
        set_time(rec.res.next_state_time, at)
        rec.next_at = at
        if to in (lifecycle.TERMINATED, lifecycle.DELETED):
            heapq.heappush(self._removals, (at, rec.seq, rec.id))
        self.dirty = True

    def settle(self, rec: Record, state: str) -> None:
        """Put `rec` in `state` with nothing pending."""
        rec.res.state = state
        rec.res.next_state = ""
        rec.res.ClearField("next_state_time")
        rec.next_at = math.inf
        self.dirty = True

    def advance(self, rec: Record, now: float | None = None) -> bool:
        """Apply the transitions whose time has come; False if the record is gone."""
        now = self.clock() if now is None else now
        if rec.kind == pb.DISK and rec.res.disk.attached_to:
            # The VM's termination detaches this disk: bring the VM up to date first.
            vm = self._by_id.get(rec.res.disk.attached_to)
            if vm is not None:
                self.advance(vm, now)
        while rec.next_at <= now:
            at, reached = rec.next_at, rec.res.next_state
            if reached == lifecycle.DELETED:
                self._remove(rec)
                return False
            self.settle(rec, reached)
            if rec.kind == pb.VM and reached == lifecycle.TERMINATED:
                self._on_terminated(rec, at)
        return rec.id in self._by_id

    def _on_terminated(self, vm: Record, at: float) -> None:
        """A terminated VM lets go of its disks and disappears after the retention time."""
        for disk_id in vm.res.vm.disk_ids:
            disk = self._by_id.get(disk_id)
            if disk is not None and disk.res.disk.attached_to == vm.id:
                disk.res.disk.attached_to = ""
                if disk.state == lifecycle.IN_USE:
                    self.settle(disk, lifecycle.AVAILABLE)
        del vm.res.vm.disk_ids[:]
        self.schedule(vm, lifecycle.TERMINATED, lifecycle.DELETED, at + self.retention_s)

    def sweep(self, now: float | None = None) -> int:
        """Remove records whose time to go has passed, read or not; returns how many."""
        now = self.clock() if now is None else now
        removed = 0
        while self._removals and self._removals[0][0] <= now:
            _, _, rid = heapq.heappop(self._removals)
            rec = self._by_id.get(rid)
            if rec is not None and not self.advance(rec, now):
                removed += 1
        return removed

    # -- looking up -----------------------------------------------------------

    def lookup(self, rid: str) -> Record | None:
        """The record with this ID, brought up to date; None if there is none."""
        rec = self._by_id.get(rid)
        if rec is None or not self.advance(rec):
            return None
        return rec

    def find(self, account: str, provider: str, region: str, kind: pb.Kind, rid: str) -> Record:
        """A record the account owns in this region, else NOT_FOUND (the same for
        a resource of another account, so IDs reveal nothing)."""
        rec = self.lookup(rid)
        if (rec is None or rec.res.account != account or rec.res.provider != provider
                or rec.res.region != region or (kind != pb.KIND_UNSPECIFIED and rec.kind != kind)):
            label = kind_name(kind).lower() if kind != pb.KIND_UNSPECIFIED else "resource"
            raise faults.resource_not_found(label, rid)
        return rec

    def by_token(self, account: str, token: str) -> Record | None:
        rec = self._tokens.get((account, token))
        if rec is None or not self.advance(rec):
            return None
        return rec

    def scope(self, account: str, provider: str, region: str, kind: pb.Kind) -> Bucket[Record]:
        return self._scopes.get((account, provider, region, kind)) or Bucket()

    def live(self, account: str, provider: str, region: str, kind: pb.Kind) -> Iterator[Record]:
        """Up-to-date records of one scope."""
        now = self.clock()
        for rec in self.scope(account, provider, region, kind).values():
            if self.advance(rec, now):
                yield rec

    def all_records(self) -> list[Record]:
        return list(self._by_id.values())

    # -- the state file -------------------------------------------------------

    def snapshot(self) -> pb.TwinState:
        """Resources and counters as the state file holds them (knobs are added by the caller)."""
        state = pb.TwinState(next_ip=self.next_ip, next_id=self.next_seq)
        state.resources.extend(r.res for r in self._by_id.values())
        return state

    def load(self, state: pb.TwinState) -> None:
        """Take over the resources and counters of a state file."""
        self.next_ip = max(self.next_ip, state.next_ip)
        self.next_seq = max(self.next_seq, state.next_id)
        records = []
        for res in state.resources:
            seq = seq_of(res.id)
            if seq < 0:
                continue
            next_at = res.next_state_time.ToNanoseconds() / 1e9 if res.next_state else math.inf
            records.append(Record(res=res, seq=seq, next_at=next_at))
        for rec in sorted(records, key=lambda r: r.seq):
            self.add(rec)
            self.next_seq = max(self.next_seq, rec.seq + 1)
        self.dirty = False
