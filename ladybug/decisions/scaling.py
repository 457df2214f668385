"""How many instances, by count and by a metric rule; and when to ask tumblebug for room."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ladybug.decisions.model import Vm


@dataclass(frozen=True)
class ScaleRule:
    min_instances: int = 0
    max_instances: int = 0  # 0: no bounds
    metric: bool = False  # a metric rule is set (group/field)
    scale_out_above: float = 0.0
    scale_in_below: float = 0.0
    cooldown_s: float = 60.0


def desired_count(instances: int, usable_vms: int) -> int:
    """The spec's count; 0 means one per usable VM."""
    return instances if instances > 0 else usable_vms


def verdict(rule: ScaleRule, current: int, metric: float | None, now: float, last_scale: float
            ) -> tuple[int, str]:
    """The instance count the rule wants now and why ("" when it keeps `current`)."""
    lo = rule.min_instances
    hi = rule.max_instances if rule.max_instances > 0 else max(current, lo)
    if current < lo:
        return lo, f"below the minimum of {lo}"
    if current > hi:
        return hi, f"above the maximum of {hi}"
    if not rule.metric or metric is None or now - last_scale < rule.cooldown_s:
        return current, ""
    if metric > rule.scale_out_above and current < hi:
        return current + 1, f"metric {metric:.3g} above {rule.scale_out_above:g}"
    if metric < rule.scale_in_below and current > lo:
        return current - 1, f"metric {metric:.3g} below {rule.scale_in_below:g}"
    return current, ""


def grow(no_room: int, subgroup: str, size: int, now: float, last_grow: float, cooldown_s: float,
         coming: int = 0) -> int | None:
    """The size to ask of `subgroup` when instances found no room (None: do not ask now).

    `coming`: VMs of the MCIS on their way (being made, or booting with no healthy agent yet). They
    bring room of their own: growing meanwhile would add a VM for every sync of an MCIS that is
    still being built."""
    if no_room <= 0 or not subgroup or coming > 0 or now - last_grow < cooldown_s:
        return None
    return size + no_room


def lasting_failures(vms: Sequence[Vm], since: dict[str, float], now: float, grace_s: float) -> dict[str, str]:
    """{vm: subgroup} of the VMs failed for at least `grace_s`. `since` (VM → when it was first seen
    failed) is brought up to date in place: a VM seen well again leaves it. A blip of monitoring
    (a collector replica or a NATS node going away) makes agents look silent for seconds; a
    replacement is a new VM for good, so it waits until the failure has lasted."""
    for vm in vms:
        if vm.failed:
            since.setdefault(vm.name, now)
        else:
            since.pop(vm.name, None)
    return {vm.name: vm.subgroup for vm in vms if vm.failed and now - since[vm.name] >= grace_s}


def replacements(failed: dict[str, str], sizes: dict[str, int]) -> dict[str, int]:
    """Subgroup → the size to ask for so each failed VM ({vm: subgroup}) gets one replacement."""
    out: dict[str, int] = {}
    for subgroup in failed.values():
        if subgroup in sizes:
            out[subgroup] = out.get(subgroup, sizes[subgroup]) + 1
    return out
