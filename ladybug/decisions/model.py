"""Plain values the decisions work on (the controller converts records to and from them)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from cbapi.dragonfly.v1 import workloads_pb2 as wpb


@dataclass(frozen=True)
class Vm:
    """A VM of the MCIS as the app may use it."""

    name: str
    subgroup: str = ""
    connection: str = ""
    provider: str = ""
    region: str = ""
    ip: str = ""
    # Running, with a healthy agent: instances may run there.
    usable: bool = True
    # Was serving and broke (its agent went silent, the cloud stopped or lost it): not merely
    # still booting. A failed VM gets a replacement asked of tumblebug once.
    failed: bool = False


@dataclass(frozen=True)
class Want:
    """One instance the controller wants (a record of its intent)."""

    id: str
    revision: int
    slot: int
    vm: str
    port: int
    canary: bool = False
    placed_at: float = 0.0
    # Draining since (no new requests at the endpoint); stopped drain_s later.
    drain_at: float | None = None

    @property
    def draining(self) -> bool:
        return self.drain_at is not None

    def drained(self, now: float) -> Want:
        return self if self.drain_at is not None else replace(self, drain_at=now)


@dataclass(frozen=True)
class Observed:
    """A workload's status as its agent last reported it."""

    state: int = wpb.WORKLOAD_STATE_UNSPECIFIED
    healthy: bool = False
    # Since when it is healthy (None while unhealthy).
    healthy_since: float | None = None
    restarts: int = 0
    message: str = ""

    @property
    def given_up(self) -> bool:
        """The agent stopped trying (crash loop) or could not start it at all."""
        return self.state in (wpb.WORKLOAD_CRASH_LOOP, wpb.WORKLOAD_FAILED)


@dataclass(frozen=True)
class Strategy:
    """An update strategy with its defaults filled in."""

    type: str = "ALL_AT_ONCE"  # ALL_AT_ONCE | ROLLING | CANARY
    max_parallel: int = 1
    min_healthy_time: float = 5.0
    healthy_deadline: float = 10.0
    progress_deadline: float = 300.0
    canaries: int = 0
    auto_promote: bool = False
    auto_revert: bool = True


class Verdict(Enum):
    """What a canary analysis says so far."""

    NONE = "none"  # no rule
    WAIT = "wait"  # the window is not over
    PASS = "pass"
    INCONCLUSIVE = "inconclusive"  # too few requests: decides nothing, the rollout goes on
    FAIL = "fail"


@dataclass(frozen=True)
class Event:
    """Something the controller did or saw, with its reason."""

    type: str
    reason: str
    message: str
    instance: str = ""
