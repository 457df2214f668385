"""The states resources move through, and which verbs may move them.

A resource holds its `state` and, while it is moving, `next_state` and the
time it gets there. Nothing ticks: whoever reads a resource first brings it up
to date from the clock (see `store.Store.advance`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# VM states.
CREATING, RUNNING, STOPPING, STOPPED = "creating", "running", "stopping", "stopped"
STARTING, REBOOTING, TERMINATING, TERMINATED = "starting", "rebooting", "terminating", "terminated"
# States of the other kinds.
PENDING, AVAILABLE, IN_USE, DELETING = "pending", "available", "in-use", "deleting"
# Not a state anyone sees: reaching it removes the record.
DELETED = "deleted"


class Pace(Enum):
    """Which knob sets how long a move takes."""

    BOOT = "boot"
    ACTION = "action"


@dataclass(frozen=True)
class Move:
    """A verb: allowed from some states, it goes `via` at once and reaches `to` later."""

    allowed_from: frozenset[str]
    via: str
    to: str
    pace: Pace


VM_ACTIONS: dict[str, Move] = {
    "stop": Move(frozenset({RUNNING}), STOPPING, STOPPED, Pace.ACTION),
    "start": Move(frozenset({STOPPED}), STARTING, RUNNING, Pace.BOOT),
    "reboot": Move(frozenset({RUNNING}), REBOOTING, RUNNING, Pace.BOOT),
}

# Deleting a VM that is already going or gone is not an error (as with EC2),
# it just returns the VM as it is.
VM_DELETE = Move(frozenset({CREATING, RUNNING, STOPPING, STOPPED, STARTING, REBOOTING}),
                 TERMINATING, TERMINATED, Pace.ACTION)

# States in which a VM still holds its network interface, disks and quota.
VM_GONE = frozenset({TERMINATED})
VM_RELEASED = frozenset({TERMINATING, TERMINATED})

# A disk may be attached only to a VM in one of these.
VM_ATTACHABLE = frozenset({RUNNING, STOPPED})
