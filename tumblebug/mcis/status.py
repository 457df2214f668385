"""Statuses of VMs and MCIS: Tumblebug's words, counts, summary, and allowed verbs."""

from __future__ import annotations

from collections.abc import Iterable

from cbapi.common.v1 import common_pb2 as common
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb

WORDS = {
    common.CREATING: "Creating", common.RUNNING: "Running", common.SUSPENDING: "Suspending",
    common.SUSPENDED: "Suspended", common.RESUMING: "Resuming", common.REBOOTING: "Rebooting",
    common.TERMINATING: "Terminating", common.TERMINATED: "Terminated", common.FAILED: "Failed",
    common.NOT_EXIST: "Undefined", common.VM_STATUS_UNSPECIFIED: "Undefined",
}
# On the way somewhere: a VM in one of these is watched closely.
MOVING = {common.CREATING, common.SUSPENDING, common.RESUMING, common.REBOOTING, common.TERMINATING}
# The status each verb needs, and the target it sets.
VERBS: dict[pb.Action, tuple[set[common.VmStatus], common.VmStatus]] = {
    pb.ACTION_SUSPEND: ({common.RUNNING}, common.SUSPENDED),
    pb.ACTION_RESUME: ({common.SUSPENDED}, common.RUNNING),
    pb.ACTION_REBOOT: ({common.RUNNING}, common.RUNNING),
    pb.ACTION_TERMINATE: ({common.CREATING, common.RUNNING, common.SUSPENDING, common.SUSPENDED, common.RESUMING,
                           common.REBOOTING, common.FAILED}, common.TERMINATED),
    pb.ACTION_REFINE: ({common.FAILED}, common.TERMINATED),
}
_FIELD = {
    common.CREATING: "creating", common.RUNNING: "running", common.SUSPENDING: "suspending",
    common.SUSPENDED: "suspended", common.RESUMING: "resuming", common.REBOOTING: "rebooting",
    common.TERMINATING: "terminating", common.TERMINATED: "terminated", common.FAILED: "failed",
}


def word(status: common.VmStatus) -> str:
    return WORDS.get(status, "Undefined")


def count(vms: Iterable[pb.McisVm]) -> pb.StatusCount:
    out = pb.StatusCount()
    for vm in vms:
        out.total += 1
        field = _FIELD.get(vm.status, "undefined")
        setattr(out, field, getattr(out, field) + 1)
    return out


def summary(c: pb.StatusCount) -> str:
    """Tumblebug's summary: `Running:5 (R:5/5)`, or `Partial-Running:3 (R:3/5)` when mixed."""
    if c.total == 0:
        return "Empty:0 (R:0/0)"
    ranked = sorted(((getattr(c, f), WORDS[s]) for s, f in _FIELD.items()), key=lambda x: -x[0])
    most, name = ranked[0]
    if c.undefined > most:
        most, name = c.undefined, "Undefined"
    prefix = "" if most == c.total else "Partial-"
    return f"{prefix}{name}:{most} (R:{c.running}/{c.total})"


def settled(c: pb.StatusCount) -> bool:
    return c.creating + c.suspending + c.resuming + c.rebooting + c.terminating == 0


def bump(c: pb.StatusCount, status: common.VmStatus, delta: int) -> None:
    """Add `delta` VMs in `status` to the counts (a VM that changes status: -1 old, +1 new)."""
    c.total += delta
    field = _FIELD.get(status, "undefined")
    setattr(c, field, getattr(c, field) + delta)
