"""Which server slot holds which instance, and the runtime commands that move to a new set.

Pure functions: the endpoint runs the commands and records the assignment.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ladybug.endpoint.config import BACKEND, slot_name

MAX_WEIGHT = 256  # HAProxy's limit


@dataclass(frozen=True)
class Backend:
    """One instance of the application as the endpoint should see it.

    `weight` is relative to the other instances (0-256, 0 = no new requests); `drain` keeps its
    current connections but sends it nothing new (before a rollout stops it)."""

    instance_id: str
    ip: str
    port: int
    weight: int = 100
    drain: bool = False


@dataclass(frozen=True)
class Slot:
    """An instance placed in slot `index` (1-based) of the backend's server-template."""

    index: int
    backend: Backend


@dataclass
class Plan:
    """The commands that turn `before` into the desired set, in order, and the result."""

    commands: list[str] = field(default_factory=list)
    assignment: dict[str, Slot] = field(default_factory=dict)
    # Slot indexes that now hold a new instance (their counters restart from here).
    fresh: list[int] = field(default_factory=list)


class TooFewSlots(Exception):
    """The desired set needs more slots than the backend has (a reload adds them)."""

    def __init__(self, needed: int) -> None:
        super().__init__(f"{needed} slots needed")
        self.needed = needed


def check_backends(backends: Sequence[Backend]) -> None:
    """Refuse what HAProxy would refuse, with a message a person can act on."""
    seen: set[str] = set()
    for b in backends:
        if not b.instance_id or any(c.isspace() for c in b.instance_id):
            raise ValueError(f"instance id {b.instance_id!r} must be non-empty without spaces")
        if b.instance_id in seen:
            raise ValueError(f"instance {b.instance_id!r} is listed twice")
        seen.add(b.instance_id)
        try:
            ipaddress.ip_address(b.ip)
        except ValueError:
            raise ValueError(f"instance {b.instance_id!r}: {b.ip!r} is not an IP address") from None
        if not 0 < b.port < 65536:
            raise ValueError(f"instance {b.instance_id!r}: port {b.port} is not in 1-65535")
        if not 0 <= b.weight <= MAX_WEIGHT:
            raise ValueError(f"instance {b.instance_id!r}: weight {b.weight} is not in 0-{MAX_WEIGHT}")


def _server(index: int) -> str:
    return f"{BACKEND}/{slot_name(index)}"


def _state(b: Backend) -> str:
    return "drain" if b.drain else "ready"


def place(b: Backend, index: int) -> list[str]:
    """Put a new instance into a slot. It must start DOWN, so it gets no request before `rise`
    health checks passed: leaving maintenance counts a server UP at once, whatever its health
    was, so it is marked down in the same batch (one CLI request: nothing runs in between)."""
    s = _server(index)
    return [f"set server {s} state maint", f"set server {s} addr {b.ip} port {b.port}",
            f"set server {s} weight {b.weight}",
            f"set server {s} state {_state(b)}; set server {s} health down"]


def free(index: int) -> list[str]:
    """Take a slot out of service; connections still open on it finish."""
    return [f"set server {_server(index)} state maint"]


def plan(before: Mapping[str, Slot], desired: Sequence[Backend], slots: int) -> Plan:
    """Commands from `before` to `desired` over `slots` slots. New and moved instances come
    first, removals last, so capacity never dips during a change."""
    check_backends(desired)
    if len(desired) > slots:
        raise TooFewSlots(len(desired))
    wanted = {b.instance_id: b for b in desired}
    out = Plan()
    gone = [s.index for i, s in before.items() if i not in wanted]
    used = {s.index for i, s in before.items() if i in wanted}
    # Never-used slots first, so a freed slot's connections can finish before it is reused.
    spare = iter([i for i in range(1, slots + 1) if i not in used and i not in gone] + sorted(gone))
    reused: set[int] = set()
    for b in desired:
        old = before.get(b.instance_id)
        if old is not None and (old.backend.ip, old.backend.port) == (b.ip, b.port):
            if old.backend.weight != b.weight:
                out.commands.append(f"set server {_server(old.index)} weight {b.weight}")
            if old.backend.drain != b.drain:
                out.commands.append(f"set server {_server(old.index)} state {_state(b)}")
            out.assignment[b.instance_id] = Slot(old.index, b)
            continue
        index = old.index if old is not None else next(spare)
        reused.add(index)
        out.commands += place(b, index)
        out.assignment[b.instance_id] = Slot(index, b)
        out.fresh.append(index)
    for index in gone:
        if index not in reused:
            out.commands += free(index)
    return out


def strays(assigned: Iterable[int], in_service: Iterable[int]) -> list[str]:
    """Commands that take out of service the slots HAProxy serves but nobody assigned."""
    known = set(assigned)
    return [c for i in sorted(set(in_service) - known) for c in free(i)]
