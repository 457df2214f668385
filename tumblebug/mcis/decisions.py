"""What the MCIS reconciler decides, as pure functions of the records (no I/O, no clock).

The reconciler reads the MCIS record and its VM records, asks these functions what to do, and
acts (spider calls, compare-and-swap writes). Each answer is a small value that says the action:

- `pass_kind`: what one pass over an MCIS does (delete it, apply its intents, keep membership);
- `vm_step`: the one spider call (or record change) a VM needs now, from its status, target and
  flags; `retargets`: the targets its MCIS's queued intents set on it;
- `leaving`: whether a VM is on its way out (marked itself, or its MCIS is being deleted: a delete
  is one write to the MCIS record, never a write per VM);
- `membership`: which VM records a pass creates, and which it marks for removal when a subgroup
  shrinks (failed first, then the newest); `membership_due`: whether a full pass works it out;
- `judge` / `apply_verdict`: the failure policy once the VMs of an operation settle; the VMs it
  drops are named (queued as per-VM refine intents), so a rollback removes exactly what it made;
- `complete` / `summarize`: whether the MCIS reached what was asked, and its new summary record,
  from the counts a `Tally` keeps as VM records change (no scan of the VMs);
- `observe`: a VM record after spider said what the cloud has;
- `needs_poll`, `after_refusal`, `reached_target`: small rules of polling and of spider's answers.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass, field

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as spb
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from tumblebug.mcis import status
from tumblebug.mcis.tally import Tally

# The start of the note on a VM made without its agent: a lasting fact about the VM, not an error
# it recovers from, so it is not cleared when the VM reaches its target.
AGENT_NOTE = "no agent: "
# What a VM the cloud no longer has is marked with (it is Failed: a refine or a delete takes it out).
LOST = "the cloud no longer has this VM"

# ------------------------------------------------------------------------------ one pass


class Pass(enum.Enum):
    """What one pass over an MCIS does before it drives the VMs."""

    DELETE = "delete"  # every VM is leaving (`leaving`); remove the MCIS once none is left
    INTENTS = "intents"  # turn queued verbs into VM targets; the MCIS write brings the next pass
    MEMBERSHIP = "membership"  # as many live VM records per subgroup as its size


def pass_kind(mcis: pb.Mcis) -> Pass:
    if mcis.deleting:
        return Pass.DELETE
    if mcis.intents:
        return Pass.INTENTS
    return Pass.MEMBERSHIP


def drives_vms(kind: Pass) -> bool:
    """Whether the pass goes on to drive each VM and summarize (an intents pass stops after its write)."""
    return kind is not Pass.INTENTS


def mcis_gone(mcis: pb.Mcis, vms: Sized) -> bool:
    """A deleted MCIS whose VM records are all gone: its own record can go."""
    return mcis.deleting and len(vms) == 0


# ---------------------------------------------------------------------------- one VM


class Step(enum.Enum):
    """The one thing a VM needs now."""

    NONE = "none"  # nothing: at its target, failed, or on its way (polling follows it)
    MARK_LOST = "mark-lost"  # asked for, but the cloud has no such VM: record it Failed (LOST), action NONE
    REMOVE = "remove"  # delete it in the cloud if it was ever asked for, then drop its record
    CREATE = "create"  # ask spider for it (with the request ID kept in its record)
    MARK_TERMINATED = "mark-terminated"  # never asked for and meant to end: record it Terminated, action NONE
    TERMINATE = "terminate"  # spider DeleteVm
    REBOOT = "reboot"
    SUSPEND = "suspend"
    RESUME = "resume"
    SETTLE = "settle"  # at its target already: clear `target_action`

    @property
    def ends_action(self) -> bool:
        """Whether the verb's answer completes the VM's `target_action` (suspend and resume are
        completed by polling, when the VM reaches its target)."""
        return self in (Step.REBOOT, Step.TERMINATE)


SPIDER_VERBS = {Step.TERMINATE: "terminate", Step.REBOOT: "reboot", Step.SUSPEND: "suspend", Step.RESUME: "resume"}


def leaving(mcis: pb.Mcis, vm: pb.McisVm) -> bool:
    """Whether a VM is on its way out: marked itself (scale-in, refine, DeleteMcisVm), or its MCIS
    is being deleted. The second is not written on each VM: deleting a 100,000-VM MCIS then
    starts removing VMs at once instead of after 100,000 record writes."""
    return vm.removing or mcis.deleting


def vm_step(vm: pb.McisVm, out: bool = False, unsent: bool = False) -> Step:
    """The next step of one VM; `out`: its MCIS is being deleted (see `leaving`); `unsent`: the
    record was made `requested` (see `unsent_create`) and this leader has not sent its create yet.
    The caller skips VMs with a call already in flight."""
    if out or vm.removing:
        return Step.REMOVE
    if not vm.requested or (unsent and unsent_create(vm)):
        if vm.target_status in (common.RUNNING, common.SUSPENDED):
            # A forced suspend of a VM not yet asked for: make it, then suspend it.
            return Step.CREATE
        if vm.target_status == common.TERMINATED and vm.status != common.TERMINATED:
            return Step.MARK_TERMINATED
        return Step.NONE
    if vm.status == common.FAILED:
        # Failed stays failed, unless it is to end: a failed VM may still exist in its cloud.
        return Step.TERMINATE if vm.target_status == common.TERMINATED else Step.NONE
    if vm.status in status.MOVING:
        return Step.NONE  # moving ones are polled
    if vm.target_status == common.TERMINATED and vm.status != common.TERMINATED:
        return Step.TERMINATE
    if vm.status == common.NOT_EXIST:
        return Step.MARK_LOST  # nothing to resume, reboot or suspend: say so rather than wait forever
    if vm.target_action == pb.ACTION_REBOOT and vm.status == common.RUNNING:
        return Step.REBOOT
    if vm.target_status == common.SUSPENDED and vm.status == common.RUNNING:
        return Step.SUSPEND
    if vm.target_status == common.RUNNING and vm.status == common.SUSPENDED:
        return Step.RESUME
    if vm.target_action != pb.ACTION_NONE and vm.status == vm.target_status:
        return Step.SETTLE
    return Step.NONE


def unsent_create(vm: pb.McisVm) -> bool:
    """Whether a record may be one born `requested` whose create is still to be sent (membership
    writes new records saying "asked" already, so the create needs no write of its own before
    spider is asked): requested, never given a cloud ID, Creating. Only the leader that wrote it
    knows it was not sent (`vm_step`'s `unsent`), and treats it as not yet asked for; any other
    sees a requested VM and looks for it in spider (polling)."""
    return vm.requested and not vm.iid.csp_id and vm.status == common.CREATING


@dataclass(frozen=True)
class Retarget:
    """New aim for a VM: these targets, and its last error cleared; `remove`: take it out."""

    target_status: common.VmStatus
    target_action: pb.Action
    remove: bool = False


REMOVE_VM = Retarget(common.TERMINATED, pb.ACTION_TERMINATE, remove=True)


def in_scope(intent: pb.McisIntent, vm: pb.McisVm) -> bool:
    """Whether the verb addresses this VM (the whole MCIS, its subgroup, or the VM by name)."""
    return (not intent.subgroup or vm.subgroup == intent.subgroup) and (not intent.vm or vm.name == intent.vm)


def intent_target(intent: pb.McisIntent, vm: pb.McisVm) -> Retarget | None:
    """The aim one queued verb sets on one VM, or None when it leaves the VM alone: out of scope,
    on its way out, or in a status the verb does not apply to (unless forced). A refine of the
    whole MCIS or a subgroup only shrank sizes (membership drops the failed VMs); a refine naming
    a VM takes that VM out when it failed, or whatever its status when forced (the failure
    policy's verdict names the VMs it drops that way)."""
    if not in_scope(intent, vm) or vm.removing:
        return None
    if intent.action == pb.ACTION_REFINE:
        return REMOVE_VM if intent.vm and (intent.force or vm.status == common.FAILED) else None
    need, target = status.VERBS[intent.action]
    if vm.status not in need and not intent.force:
        return None
    return Retarget(target, intent.action)


def retargets(intents: Iterable[pb.McisIntent], vms: Mapping[str, pb.McisVm]) -> dict[str, Retarget]:
    """The aim of each VM key after all queued verbs, in order: each verb looks at the VM as the
    pass found it, and where several apply the last one wins."""
    out: dict[str, Retarget] = {}
    for intent in intents:
        for key, vm in vms.items():
            aim = intent_target(intent, vm)
            if aim is not None:
                out[key] = aim
    return out


def applied_generation(mcis: pb.Mcis) -> int:
    """`observed_generation` once the queued verbs are applied (each verb's ID is its generation)."""
    return max(mcis.observed_generation, max((i.id for i in mcis.intents), default=0))


# ------------------------------------------------------------------------- membership


@dataclass(frozen=True)
class NewVms:
    """VM records to create in a subgroup, named `{subgroup}-{index}`."""

    subgroup: str
    indexes: range


@dataclass(frozen=True)
class Membership:
    """Keys of VM records to mark `removing`, in order, and the records to create."""

    remove: tuple[str, ...] = ()
    add: tuple[NewVms, ...] = ()


def membership_due(mcis: pb.Mcis, tally: Tally, made_for: tuple[int, bool] | None) -> bool:
    """Whether a full pass works out membership: the spec changed since it was last made, or the
    live records no longer add up to the subgroups' sizes (a record went or came from elsewhere).
    A resync of an MCIS whose counts add up then skips a look at every one of its VMs."""
    return made_for != (mcis.generation, mcis.deleting) or \
        tally.counts.total - tally.removing != sum(sg.size for sg in mcis.subgroups)


def shrink_order(vm: pb.McisVm) -> tuple[bool, int]:
    """Sort key of live VMs when a subgroup shrinks: failed ones first, then the newest."""
    return (vm.status != common.FAILED, -vm.index)


def membership(mcis: pb.Mcis, vms: Mapping[str, pb.McisVm]) -> Membership:
    """As many live (not removing) VM records per subgroup as its size. VMs of a subgroup the
    spec no longer has are removed; new indexes continue after the highest the subgroup ever
    used among its records (removing ones included, so a name is not reused while it goes)."""
    groups = {sg.name for sg in mcis.subgroups}
    by_group: dict[str, list[tuple[str, pb.McisVm]]] = {g: [] for g in groups}
    remove: list[str] = []
    for key, vm in vms.items():
        if vm.subgroup in by_group:
            by_group[vm.subgroup].append((key, vm))
        elif not vm.removing:
            remove.append(key)
    add: list[NewVms] = []
    for sg in mcis.subgroups:
        members = by_group[sg.name]
        live = [(k, v) for k, v in members if not v.removing]
        if len(live) > sg.size:
            live.sort(key=lambda kv: shrink_order(kv[1]))
            remove.extend(k for k, _ in live[: len(live) - sg.size])
        elif len(live) < sg.size:
            start = max((v.index for _, v in members), default=0) + 1
            add.append(NewVms(sg.name, range(start, start + sg.size - len(live))))
    return Membership(tuple(remove), tuple(add))


# ---------------------------------------------------------------------- failure policy


class Policy(enum.Enum):
    """The failure policy's verdict on an operation whose VMs have all settled."""

    CONTINUE = "continue"  # nothing failed, or the policy keeps failed VMs: just close the operation
    ROLLBACK = "rollback"  # shrink by everything the operation made (delete the MCIS if it made it)
    REFINE = "refine"  # shrink by the failed VMs (membership drops failed ones first)


@dataclass(frozen=True)
class Verdict:
    """What the failure policy does to the MCIS spec."""

    policy: Policy
    made: int = 0
    failed: int = 0
    shrink: Mapping[str, int] = field(default_factory=dict)  # subgroup → VMs fewer
    delete_mcis: bool = False
    drop: tuple[str, ...] = ()  # names of the VMs to take out (by identity, not by count)

    @property
    def message(self) -> str:
        done = "rolled back" if self.policy is Policy.ROLLBACK else "dropped the failed"
        return f"{self.failed} of {self.made} new VMs failed; {done}"


def judge(mcis: pb.Mcis, live: Sequence[pb.McisVm]) -> Verdict:
    """The verdict on operation `mcis.policy_op` from the live VMs (call once they settled)."""
    made = [v for v in live if v.origin == mcis.policy_op]
    failed = [v for v in made if v.status == common.FAILED]
    if not failed or mcis.policy in (pb.POLICY_CONTINUE, pb.FAILURE_POLICY_UNSPECIFIED):
        return Verdict(Policy.CONTINUE, len(made), len(failed))
    rollback = mcis.policy == pb.POLICY_ROLLBACK
    drop = made if rollback else failed
    shrink: dict[str, int] = {}
    for vm in drop:
        shrink[vm.subgroup] = shrink.get(vm.subgroup, 0) + 1
    return Verdict(Policy.ROLLBACK if rollback else Policy.REFINE, len(made), len(failed), shrink,
                   delete_mcis=rollback and mcis.policy_op == 1, drop=tuple(sorted(v.name for v in drop)))


def apply_verdict(mcis: pb.Mcis, verdict: Verdict) -> None:
    """Write the verdict into the MCIS record (in place): the operation is closed either way; a
    rollback or refine shrinks sizes, sets the target action and a message, bumps the generation,
    and queues a forced refine intent per dropped VM in the same write: the next pass takes out
    exactly those VMs (membership, seeing the smaller sizes met, then takes out none other)."""
    mcis.policy_op = 0
    if verdict.policy is Policy.CONTINUE:
        return
    for sg in mcis.subgroups:
        sg.size -= verdict.shrink.get(sg.name, 0)
    mcis.target_action = pb.ACTION_REFINE if verdict.policy is Policy.REFINE else pb.ACTION_TERMINATE
    mcis.message = verdict.message
    mcis.generation += 1
    if verdict.delete_mcis:
        mcis.deleting = True  # the request that made the MCIS is undone whole
        return
    mcis.intents.extend(pb.McisIntent(id=mcis.generation, action=pb.ACTION_REFINE, vm=name, force=True)
                        for name in verdict.drop)


# --------------------------------------------------------------------- completion


def vm_done(vm: pb.McisVm) -> bool:
    """A live VM is where it was asked to be (or failed, unless it is still to be terminated), and
    asked of spider unless it never had to be."""
    failed = vm.status == common.FAILED and vm.target_status != common.TERMINATED
    return ((vm.requested or vm.status == common.TERMINATED) and vm.target_action != pb.ACTION_REBOOT
            and (vm.status == vm.target_status or failed))


def complete_from(mcis: pb.Mcis, tally: Tally) -> bool:
    """The reconciler has finished acting on the MCIS: nothing queued or being deleted, nothing on
    its way, exactly the subgroups' sizes in records and none leaving, and every VM done."""
    return (not mcis.deleting and not mcis.intents and status.settled(tally.counts) and tally.removing == 0
            and tally.counts.total == sum(sg.size for sg in mcis.subgroups) and tally.undone == 0)


def complete(mcis: pb.Mcis, vms: Sequence[pb.McisVm]) -> bool:
    """`complete_from` over a list of VM records (the tally made on the spot)."""
    return complete_from(mcis, Tally.of(vms, vm_done))


def summarize_from(mcis: pb.Mcis, tally: Tally, live: Callable[[], Sequence[pb.McisVm]]) -> pb.Mcis:
    """The MCIS record a pass should leave (a new message; write it when it differs): counts and
    summary; when complete, `observed_generation` = `generation`, `target_action` NONE, and the
    failure policy's verdict on a pending operation (judged over `live()`, asked for only then).
    `update_time` is the writer's."""
    new = pb.Mcis()
    new.CopyFrom(mcis)
    new.status_count.CopyFrom(tally.counts)
    new.status = status.summary(tally.counts)
    if complete_from(mcis, tally):
        new.observed_generation = new.generation
        new.target_action = pb.ACTION_NONE
        if new.policy_op:
            apply_verdict(new, judge(new, live()))
    return new


def summarize(mcis: pb.Mcis, vms: Sequence[pb.McisVm]) -> pb.Mcis:
    """`summarize_from` over a list of VM records."""
    return summarize_from(mcis, Tally.of(vms, vm_done), lambda: [v for v in vms if not v.removing])


# ------------------------------------------------------------ polling, spider's answers


def needs_poll(vm: pb.McisVm, full: bool) -> bool:
    """Whether the poller looks this VM up in its connection's listing (the caller skips VMs with
    a call in flight): asked of spider, not leaving, not failed; and on its way, not yet known to
    the cloud, or this is a full resync."""
    if not vm.requested or vm.removing or vm.status == common.FAILED:
        return False
    return full or vm.status in status.MOVING or not vm.iid.csp_id


def ask_again(vm: pb.McisVm) -> bool:
    """Asked of spider, but the listing has no such VM: send the create again (same request ID)
    when the cloud never gave it an ID and it is still Creating."""
    return not vm.iid.csp_id and vm.status == common.CREATING


def reached_target(vm: pb.McisVm) -> bool:
    """After an observed status: the VM's `target_action` is complete (a reboot is completed by
    the verb's answer, not by seeing Running)."""
    return vm.status == vm.target_status and vm.target_action != pb.ACTION_REBOOT


def after_refusal(vm: pb.McisVm) -> Retarget | None:
    """Spider refused a verb (FAILED_PRECONDITION: the cloud moved on its own, or a verb raced).
    A VM settled somewhere keeps that as its target; one on its way is left to polling (None)."""
    if vm.status in status.MOVING:
        return None
    return Retarget(vm.status, pb.ACTION_NONE)


def observe(vm: pb.McisVm, seen: spb.Vm) -> pb.McisVm:
    """The VM record (changed in place) once spider said what its cloud has. Spider knows the VM,
    so it was asked for: `requested` again, should a poll that found spider without it (before the
    create reached spider) have cleared it meanwhile. Left cleared, the VM would be neither polled
    nor asked again: Creating for good."""
    vm.requested = True
    vm.status = seen.status
    vm.iid.CopyFrom(common.IID(name=vm.iid.name or seen.iid.name, csp_name=seen.iid.csp_name,
                               csp_id=seen.iid.csp_id))
    vm.private_ip = seen.private_ip
    vm.public_ip = seen.public_ip
    vm.ssh_access_point = seen.ssh_access_point
    if reached_target(vm):
        vm.target_action = pb.ACTION_NONE
    if vm.status == vm.target_status and vm.status != common.FAILED and not vm.error.startswith(AGENT_NOTE):
        # It got where it was asked to be: whatever went wrong on the way is over (a refused verb,
        # a cloud that moved on its own). A VM's `error` tells what is wrong now, not what once was.
        vm.error = ""
    return vm
