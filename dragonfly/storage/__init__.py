"""Metric storage: the interface every backend implements, and how to pick one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

AGGREGATES = ("min", "max", "avg", "last")
PERIODS = {"m": 60.0, "h": 3600.0, "d": 86400.0}


class Sample(NamedTuple):
    """One group of one VM at one time. A named tuple, not a frozen dataclass: the collector makes
    one per group of every batch, and a frozen dataclass's `__init__` sets each field through
    `object.__setattr__` (a sixth of the collector's own time at 1,000 batches a second)."""

    vm: str  # ns.mcis.vm
    group: str
    time: float  # seconds since the epoch
    values: dict[str, float]


@dataclass(frozen=True)
class Query:
    """Series whose VM key starts with `vm_prefix` (a whole key, or `ns.mcis.`), one group,
    between `start` and `end`, in buckets of `step_s` (0 = as stored), aggregated."""

    vm_prefix: str
    group: str
    start: float
    end: float
    step_s: float = 0.0
    aggregate: str = "avg"


@dataclass
class Result:
    vm: str
    group: str
    points: list[tuple[float, dict[str, float]]] = field(default_factory=list)


class Backend(Protocol):
    """Where collectors write and queries read."""

    async def write(self, samples: Sequence[Sample]) -> None: ...

    async def query(self, q: Query) -> list[Result]: ...

    async def close(self) -> None: ...
