"""Which VM and port an instance goes to.

Spread first over VMs (fewest of this app's instances), then over connections (clouds and
regions), then providers; the name breaks ties, so the same inputs always give the same answer.
`max_per_vm` counts instances of one revision: while an instance is replaced, its successor may
share its VM (started beside it, on the next port, before the old one drains).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from ladybug.decisions.model import Vm, Want


def choose_vm(vms: Sequence[Vm], wanted: Iterable[Want], revision: int, max_per_vm: int,
              prefer: str = "", avoid: frozenset[str] = frozenset()) -> Vm | None:
    """The VM for one more instance of `revision`, or None when no usable VM has room."""
    live = [w for w in wanted if not w.draining]
    same_rev = Counter(w.vm for w in live if w.revision == revision)
    on_vm = Counter(w.vm for w in live)
    by_name = {vm.name: vm for vm in vms}
    on_conn = Counter(by_name[w.vm].connection for w in live if w.vm in by_name)
    on_provider = Counter(by_name[w.vm].provider for w in live if w.vm in by_name)
    room = [vm for vm in vms if vm.usable and vm.name not in avoid and same_rev[vm.name] < max(max_per_vm, 1)]
    if not room:
        return None
    for vm in room:
        if vm.name == prefer:
            return vm
    return min(room, key=lambda vm: (on_vm[vm.name], on_conn[vm.connection], on_provider[vm.provider], vm.name))


def free_port(wanted: Iterable[Want], vm: str, base: int) -> int:
    """The lowest of base, base+1, … that no instance of this app (draining ones too) holds on `vm`."""
    taken = {w.port for w in wanted if w.vm == vm}
    port = base
    while port in taken:
        port += 1
    return port
