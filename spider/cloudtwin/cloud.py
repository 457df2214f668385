"""The emulated cloud's API semantics, independent of gRPC: create (with
idempotency, quotas, injected failures and the lost-response behaviour), get,
list, delete and the verbs, all scoped to the calling account."""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as pb

from . import faults, lifecycle, resources
from .accounts import Accounts
from .catalog import Catalog, RegionCatalog, stable_hex
from .knobs import KnobTable, KnobValues
from .lifecycle import Pace
from .ratelimit import RateLimiter
from .ssh_hosts import serves_ssh
from .store import Record, Store, kind_name

DEFAULT_PAGE = 100
MAX_PAGE = 1000


def wire(rec: Record) -> pb.Resource:
    """A copy of the record's message, safe to hand to gRPC."""
    out = pb.Resource()
    out.CopyFrom(rec.res)
    return out


@dataclass(frozen=True)
class Where:
    """An account acting in one region, with the knobs in force there."""

    account: str
    region: RegionCatalog
    knobs: KnobValues

    @property
    def provider(self) -> str:
        return self.region.provider

    @property
    def name(self) -> str:
        return self.region.name


class TwinCloud:
    """Every account's resources in every emulated region."""

    def __init__(self, catalog: Catalog, knobs: KnobTable, store: Store, rng: random.Random,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, ssh_port: int = 0) -> None:
        self.catalog = catalog
        # Where new VMs that need one get their SSH server (0: none do).
        self.ssh_port = ssh_port
        self.knobs = knobs
        self.store = store
        self.rng = rng
        self.sleep = sleep
        self.limiter = RateLimiter()
        self.accounts = Accounts(on_new=self._state_changed)

    def _state_changed(self) -> None:
        self.store.dirty = True  # the housekeeper saves the state file on its next round

    # -- shared steps -----------------------------------------------------------

    def enter(self, account: str, provider: str, region: str) -> Where:
        """The region a resource call targets, after the region's API rate limit."""
        reg = self.catalog.region(provider, region)
        knobs = self.knobs.get(provider, region)
        if not self.limiter.allow((provider, region), knobs.api_rate, knobs.api_burst, self.store.clock()):
            raise faults.request_limit_exceeded(provider, region)
        return Where(account=account, region=reg, knobs=knobs)

    def _pace(self, knobs: KnobValues, pace: Pace) -> float:
        dist = knobs.boot_latency if pace is Pace.BOOT else knobs.action_latency
        return dist.sample(self.rng)

    def _find(self, at: Where, kind: pb.Kind, rid: str) -> Record:
        return self.store.find(at.account, at.provider, at.name, kind, rid)

    # -- create ---------------------------------------------------------------

    async def create(self, account: str, req: pb.CreateResourceRequest) -> pb.Resource:
        """Record the resource at once, then take the create latency to answer.

        A caller that gives up (or dies) during the latency still leaves the
        resource in the cloud, as a lost response from a real cloud does; the
        same client_token then finds it. An injected failure records nothing.
        """
        at = self.enter(account, req.provider, req.region)
        if req.client_token:
            earlier = self.store.by_token(account, req.client_token)
            if earlier is not None:
                return self._repeat(earlier, req)
        draft = resources.draft(req, resources.Context(account, at.region, self.store))
        if draft.kind == pb.VM:
            self._check_quota(at, draft.vcpu)
        latency = at.knobs.create_latency.sample(self.rng)
        if draft.kind == pb.VM and self.rng.random() < at.knobs.failure_rate:
            await self.sleep(latency)
            raise faults.insufficient_capacity(req.vm.spec, at.name)
        rec = self._record(at, req, draft, latency)
        await self.sleep(latency)
        self.store.advance(rec)  # it may have moved on, or even gone, meanwhile
        out = wire(rec)
        if draft.private_key:
            out.key_pair.private_key = draft.private_key
        return out

    def _repeat(self, earlier: Record, req: pb.CreateResourceRequest) -> pb.Resource:
        """The answer to a create repeated with the same client token."""
        kind = resources.PROPS_KIND.get(req.WhichOneof("props") or "")
        if kind != earlier.kind:
            raise faults.idempotent_mismatch(req.client_token, f"it made a {kind_name(earlier.kind)}")
        if (req.provider, req.region) != (earlier.res.provider, earlier.res.region):
            raise faults.idempotent_mismatch(
                req.client_token, f"it was used in {earlier.res.provider}/{earlier.res.region}")
        return wire(earlier)

    def _check_quota(self, at: Where, vcpu: int) -> None:
        used = self.store.usage(at.account, at.provider, at.name)
        if at.knobs.quota_vms and used.vms + 1 > at.knobs.quota_vms:
            raise faults.instance_limit_exceeded(at.knobs.quota_vms, at.name)
        if at.knobs.quota_vcpus and used.vcpus + vcpu > at.knobs.quota_vcpus:
            raise faults.vcpu_limit_exceeded(at.knobs.quota_vcpus, used.vcpus + vcpu, at.name)

    def _record(self, at: Where, req: pb.CreateResourceRequest, draft: resources.Draft, latency: float) -> Record:
        now = self.store.clock()
        rec = self.store.new_record(draft.kind, at.account, at.provider, at.name, now)
        res = rec.res
        res.name, res.zone, res.client_token = req.name, draft.zone, req.client_token
        res.tags.update(req.tags)
        getattr(res, draft.field).CopyFrom(draft.props)
        if draft.kind == pb.VM:
            res.vm.private_ip = res.vm.public_ip = self.store.allocate_ip()
            if self.ssh_port and serves_ssh(res.vm):
                res.vm.ssh_port = self.ssh_port
            ready = now + latency + self._pace(at.knobs, Pace.BOOT)
            self.store.schedule(rec, lifecycle.CREATING, lifecycle.RUNNING, ready)
        else:
            ready = now + latency + self._pace(at.knobs, Pace.ACTION)
            self.store.schedule(rec, lifecycle.PENDING, lifecycle.AVAILABLE, ready)
        self.store.add(rec)
        return rec

    # -- read -----------------------------------------------------------------

    def get(self, account: str, req: pb.GetResourceRequest) -> pb.Resource:
        at = self.enter(account, req.provider, req.region)
        return wire(self._find(at, req.kind, req.id))

    def list(self, account: str, req: pb.ListResourcesRequest) -> pb.ListResourcesResponse:
        """One page of the account's resources of one kind in one region, oldest first."""
        at = self.enter(account, req.provider, req.region)
        if req.kind == pb.KIND_UNSPECIFIED:
            raise faults.invalid_parameter("kind", "required")
        if req.page_size < 0:
            raise faults.invalid_parameter("page_size", "must be >= 0")
        limit = min(req.page_size or DEFAULT_PAGE, MAX_PAGE)
        fence = stable_hex(at.provider, at.name, req.kind, req.name, length=8)
        after = decode_token(req.page_token, fence)
        now = self.store.clock()

        def accept(rec: Record) -> bool:
            return self.store.advance(rec, now) and (not req.name or rec.res.name == req.name)

        page, more = self.store.scope(account, at.provider, at.name, req.kind).page(after, limit, accept)
        out = pb.ListResourcesResponse(resources=[rec.res for _, rec in page])
        if more:
            out.next_page_token = encode_token(page[-1][0], fence)
        return out

    # -- delete ---------------------------------------------------------------

    def delete(self, account: str, req: pb.DeleteResourceRequest) -> pb.Resource:
        """VMs go through terminating to terminated; others through deleting to gone."""
        at = self.enter(account, req.provider, req.region)
        rec = self._find(at, req.kind, req.id)
        if rec.kind == pb.VM:
            self._terminate(at, rec)
        elif rec.state != lifecycle.DELETING:
            self._check_unused(at, rec)
            self.store.schedule(rec, lifecycle.DELETING, lifecycle.DELETED,
                                self.store.clock() + self._pace(at.knobs, Pace.ACTION))
        return wire(rec)

    def _terminate(self, at: Where, vm: Record) -> None:
        move = lifecycle.VM_DELETE
        if vm.state not in move.allowed_from:
            return  # already terminating or terminated
        self.store.charge(vm, -1)
        self.store.schedule(vm, move.via, move.to, self.store.clock() + self._pace(at.knobs, move.pace))

    def _check_unused(self, at: Where, rec: Record) -> None:
        """Refuse to delete what something still depends on."""
        if rec.kind == pb.DISK and rec.res.disk.attached_to:
            raise faults.volume_in_use(rec.id, rec.res.disk.attached_to)
        if rec.kind == pb.VPC:
            for kind in (pb.SUBNET, pb.SECURITY_GROUP):
                for child in self.store.live(at.account, at.provider, at.name, kind):
                    parent = child.res.subnet.vpc_id if kind == pb.SUBNET else child.res.security_group.vpc_id
                    if parent == rec.id and child.state != lifecycle.DELETING:
                        raise faults.dependency_violation(f"VPC {rec.id} still has {child.id}")
        if rec.kind in (pb.SUBNET, pb.SECURITY_GROUP):
            for vm in self.store.live(at.account, at.provider, at.name, pb.VM):
                uses = (vm.res.vm.subnet_id == rec.id if rec.kind == pb.SUBNET
                        else rec.id in vm.res.vm.security_group_ids)
                if uses and vm.state not in lifecycle.VM_GONE:
                    raise faults.dependency_violation(f"{rec.id} is used by VM {vm.id} ({vm.state})")

    # -- verbs ----------------------------------------------------------------

    def act(self, account: str, req: pb.ActOnResourceRequest) -> pb.Resource:
        """stop/start/reboot a VM; attach/detach/resize a disk; authorize/revoke SG rules."""
        at = self.enter(account, req.provider, req.region)
        rec = self._find(at, req.kind, req.id)
        if rec.kind == pb.VM:
            self._vm_action(at, rec, req.action)
        elif rec.kind == pb.DISK:
            self._disk_action(at, rec, req)
        elif rec.kind == pb.SECURITY_GROUP:
            self._group_action(rec, req)
        else:
            raise faults.invalid_parameter("action", f"a {kind_name(rec.kind)} has no actions")
        return wire(rec)

    def _vm_action(self, at: Where, vm: Record, action: str) -> None:
        move = lifecycle.VM_ACTIONS.get(action)
        if move is None:
            raise faults.invalid_parameter("action", f"a VM can {', '.join(lifecycle.VM_ACTIONS)}, not {action!r}")
        if vm.state not in move.allowed_from:
            raise faults.incorrect_state(f"cannot {action} VM {vm.id} while it is {vm.state}")
        self.store.schedule(vm, move.via, move.to, self.store.clock() + self._pace(at.knobs, move.pace))

    def _disk_action(self, at: Where, disk: Record, req: pb.ActOnResourceRequest) -> None:
        if req.action == "attach":
            self._attach(at, disk, req.target_id)
        elif req.action == "detach":
            self._detach(disk, req.target_id)
        elif req.action == "resize":
            if disk.state not in (lifecycle.AVAILABLE, lifecycle.IN_USE):
                raise faults.incorrect_state(f"cannot resize disk {disk.id} while it is {disk.state}")
            if not disk.res.disk.size_gib < req.size_gib <= resources.MAX_DISK_GIB:
                raise faults.invalid_parameter(
                    "size_gib", f"must grow: above {disk.res.disk.size_gib} and at most {resources.MAX_DISK_GIB}")
            disk.res.disk.size_gib = req.size_gib
            self.store.dirty = True
        else:
            raise faults.invalid_parameter("action", f"a disk can attach, detach or resize, not {req.action!r}")

    def _attach(self, at: Where, disk: Record, vm_id: str) -> None:
        if disk.res.disk.attached_to:
            raise faults.volume_in_use(disk.id, disk.res.disk.attached_to)
        if disk.state != lifecycle.AVAILABLE:
            raise faults.incorrect_state(f"cannot attach disk {disk.id} while it is {disk.state}")
        if not vm_id:
            raise faults.invalid_parameter("target_id", "the VM to attach to is required")
        vm = self._find(at, pb.VM, vm_id)
        if vm.state not in lifecycle.VM_ATTACHABLE:
            raise faults.incorrect_state(f"cannot attach to VM {vm.id} while it is {vm.state}")
        if vm.res.zone != disk.res.zone:
            raise faults.invalid_parameter(
                "target_id", f"VM {vm.id} is in {vm.res.zone} but disk {disk.id} is in {disk.res.zone}")
        disk.res.disk.attached_to = vm.id
        vm.res.vm.disk_ids.append(disk.id)
        self.store.settle(disk, lifecycle.IN_USE)

    def _detach(self, disk: Record, target_id: str) -> None:
        """Detach; `target_id`, when given, must name the VM the disk is attached to."""
        vm_id = disk.res.disk.attached_to
        if not vm_id:
            raise faults.incorrect_state(f"disk {disk.id} is not attached")
        if target_id and target_id != vm_id:
            raise faults.invalid_parameter("target_id", f"disk {disk.id} is attached to {vm_id}, not {target_id}")
        vm = self.store.lookup(vm_id)
        if vm is not None and disk.id in vm.res.vm.disk_ids:
            vm.res.vm.disk_ids.remove(disk.id)
        disk.res.disk.attached_to = ""
        self.store.settle(disk, lifecycle.AVAILABLE)

    def _group_action(self, group: Record, req: pb.ActOnResourceRequest) -> None:
        if req.action not in ("authorize", "revoke"):
            raise faults.invalid_parameter("action", f"a security group can authorize or revoke, not {req.action!r}")
        if not req.rules:
            raise faults.invalid_parameter("rules", "give at least one rule")
        rules = resources.check_rules(req.rules, "rules")
        props = group.res.security_group
        if req.action == "authorize":
            kept = resources.merge_rules(list(props.rules), rules)
        else:
            gone = {resources.rule_key(r) for r in rules}
            kept = [r for r in props.rules if resources.rule_key(r) not in gone]
        del props.rules[:]
        props.rules.extend(kept)
        self.store.dirty = True

    # -- admin ----------------------------------------------------------------

    def get_knobs(self, provider: str, region: str) -> pb.Knobs:
        """The knobs in force in a region; with neither named, the defaults."""
        if not provider and not region:
            return self.knobs.defaults().to_proto()
        if not provider or not region:
            raise faults.invalid_parameter("region" if provider else "provider", "name both, or neither")
        return self.knobs.get(provider, region).to_proto()

    def set_knobs(self, provider: str, region: str, knobs: pb.Knobs) -> int:
        """Change the fields `knobs` sets; an empty provider or region means every one."""
        changed = self.knobs.set(provider, region, knobs)
        self.store.dirty = True
        return len(changed)

    def snapshot(self) -> pb.TwinState:
        """Everything the state file keeps."""
        state = self.store.snapshot()
        state.knobs.extend(self.knobs.admin_entries())
        state.account_secret_digests.update(self.accounts.snapshot())
        return state

    def restore(self, state: pb.TwinState) -> None:
        self.store.load(state)
        self.knobs.load_admin(state.knobs)
        self.accounts.load(state.account_secret_digests)

    def stats(self) -> pb.Stats:
        """Counts of what the emulator holds, every record brought up to date first."""
        now = self.store.clock()
        self.store.sweep(now)
        by_kind: Counter[str] = Counter()
        running = 0
        for rec in self.store.all_records():
            if not self.store.advance(rec, now):
                continue
            by_kind[kind_name(rec.kind)] += 1
            if rec.kind == pb.VM and rec.state == lifecycle.RUNNING:
                running += 1
        return pb.Stats(providers=len(self.catalog.providers), regions=self.catalog.region_count(),
                        resources_by_kind=dict(by_kind), vms_running=running)


def encode_token(seq: int, fence: str) -> str:
    return base64.urlsafe_b64encode(f"{seq}:{fence}".encode()).decode()


def decode_token(token: str, fence: str) -> int:
    """The sequence number a page token continues after; the fence ties it to its query."""
    if not token:
        return 0
    try:
        seq_text, _, got = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        seq = int(seq_text)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise faults.invalid_parameter("page_token", "not a token this API gave out") from exc
    if got != fence:
        raise faults.invalid_parameter("page_token", "the token belongs to another query")
    return seq
