"""An MCIS's counts kept as its VM records change, so its summary never needs a scan of its VMs.

The reconciler tells a tally each VM record it sees (from the informer, or its own write) and each
one that goes; the tally keeps what it counted for every VM, so telling it twice changes nothing,
and its counts are always those of the records it was last told of. It also remembers which VMs
changed since the reconciler last drove them (`dirty`): a pass drives only those.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cbapi.common.v1 import common_pb2 as common
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from tumblebug.mcis import status

# What a tally counted for one VM: (status, removing, undone), undone meaning live (not removing)
# and not where it was asked to be. A plain tuple of plain values, which the garbage collector stops
# tracking (a class instance, named tuples too, it would scan in every full collection: 10,000 of
# them in a 10,000-VM MCIS).
Mark = tuple[common.VmStatus, bool, bool]


@dataclass
class Tally:
    """Counts by status, VMs leaving and live VMs not yet done, for one MCIS; and its dirty VMs."""

    done: Callable[[pb.McisVm], bool]
    counts: pb.StatusCount = field(default_factory=pb.StatusCount)
    removing: int = 0
    undone: int = 0
    marks: dict[str, Mark] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    # The MCIS spec the last full pass acted on: (generation, deleting); a change means a full pass.
    spec: tuple[int, bool] | None = None
    # The spec whose membership (records per subgroup) was last made: a resync's full pass makes it
    # again only when the counts say it is off (`decisions.membership_due`).
    members_of: tuple[int, bool] | None = None

    @classmethod
    def of(cls, vms: Iterable[pb.McisVm], done: Callable[[pb.McisVm], bool]) -> Tally:
        """A tally of a list of records (keys made up): the reference the incremental one must equal."""
        tally = cls(done)
        for i, vm in enumerate(vms):
            tally.saw(str(i), vm)
        tally.dirty.clear()
        return tally

    def saw(self, key: str, vm: pb.McisVm) -> None:
        """VM record `key` is now `vm` (new or changed); it becomes dirty."""
        mark: Mark = (vm.status, vm.removing, not vm.removing and not self.done(vm))
        self._count(self.marks.get(key), -1)
        self._count(mark, +1)
        self.marks[key] = mark
        self.dirty.add(key)

    def gone(self, key: str) -> None:
        """VM record `key` was deleted."""
        self._count(self.marks.pop(key, None), -1)
        self.dirty.discard(key)

    def _count(self, mark: Mark | None, delta: int) -> None:
        if mark is None:
            return
        vm_status, removing, undone = mark
        status.bump(self.counts, vm_status, delta)
        self.removing += delta if removing else 0
        self.undone += delta if undone else 0

    def take_dirty(self) -> set[str]:
        """The VMs changed since the last call (and forget them)."""
        out, self.dirty = self.dirty, set()
        return out
