"""A group placement request: VM groups, an objective, constraints (plain data, proto-shaped)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from tumblebug.placement.candidates import Point
from tumblebug.placement.requirements import Requirements, WeighOptions


class Objective(StrEnum):
    """What the plan optimises."""

    COST = "cost"  # least price per hour
    PERFORMANCE = "performance"  # most total `options.metric`
    PERFORMANCE_PER_COST = "performance_per_cost"  # most total metric / total price (Dinkelbach)
    WEIGHTED = "weighted"  # most total weighted score (the recommendation's weighers and weights)


@dataclass(frozen=True)
class Group:
    """`count` VMs that each need a spec meeting `requirements` (filters by name; None: all)."""

    name: str
    count: int
    requirements: Requirements = field(default_factory=Requirements)
    filters: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Capacity:
    """How much more one connection can take: VMs and vCPUs (0 = no limit)."""

    connection: str
    vms: int = 0
    vcpus: int = 0


@dataclass(frozen=True)
class Constraints:
    """Constraints on the whole plan (0 / None = not asked).

    min_providers / min_regions: VMs spread over at least that many providers / sites (a site is
      `provider/region`). max_provider_share: at most this fraction of all VMs on one provider.
    max_rtt_ms: no two chosen sites farther apart than this RTT (measured, else estimated).
    near + max_distance_km: every VM's site within that distance of the point.
    """

    budget_per_hour: float = 0.0
    min_providers: int = 0
    min_regions: int = 0
    max_provider_share: float = 0.0
    capacities: tuple[Capacity, ...] = ()
    max_rtt_ms: float = 0.0
    near: Point | None = None
    max_distance_km: float = 0.0


@dataclass(frozen=True)
class Keep:
    """VMs already placed that a new plan must keep (failover re-plans around them)."""

    group: str
    spec_id: str
    count: int


@dataclass(frozen=True)
class PlanRequest:
    """Place every group's VMs. `exclude` lists spec IDs not to use (e.g. a connection answered
    "no capacity" for them); `keep` pins VMs that are already running."""

    groups: tuple[Group, ...]
    objective: Objective = Objective.COST
    constraints: Constraints = field(default_factory=Constraints)
    weights: Mapping[str, float] = field(default_factory=dict)
    options: WeighOptions = field(default_factory=WeighOptions)
    exclude: tuple[str, ...] = ()
    keep: tuple[Keep, ...] = ()
    time_limit_s: float = 10.0
    # Relative gap at which HiGHS may stop and call the plan optimal.
    mip_rel_gap: float = 1e-6
