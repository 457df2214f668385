"""What an agent answers to dragonfly's requests (`cb.agent.{vm}.{verb}`), as both sides see it.

Every answer is one JSON object: the verb's reply, or a refusal (`error`, and a `reason` code
when the caller should act on it: `invalid`, `busy`, `not_found`). The agent builds these and
sends `to_wire()`; dragonfly reads them with `decode`, which tells a refusal from a reply by the
field only the reply carries, and raises `MalformedReply` for anything else.
The benchmark report is `benchmarks.BenchReport`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, TypeVar

from dragonfly.protocol import wire
from dragonfly.protocol.benchmarks import BenchReport

INVALID = "invalid"
BUSY = "busy"
NOT_FOUND = "not_found"


class MalformedReply(ValueError):
    """An answer that is neither the verb's reply nor a refusal."""


@dataclass(frozen=True)
class Refusal:
    """The agent would not (or could not) do what was asked, and why."""

    error: str
    reason: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"error": self.error, "reason": self.reason} if self.reason else {"error": self.error}


@dataclass(frozen=True)
class LiveMetrics:
    """The agent's metrics read now: group → field → value (`metrics`)."""

    MARK: ClassVar[str] = "groups"
    vm: str
    time: float
    groups: dict[str, dict[str, float]]

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> LiveMetrics:
        groups = {str(g): {str(k): float(v) for k, v in dict(values).items()}
                  for g, values in dict(body.get("groups", {})).items()}
        return cls(str(body.get("vm", "")), float(body["time"]), groups)


@dataclass(frozen=True)
class CommandResult:
    """What a command did (`cmd`); a timeout is in the result (`timed_out`, `error`), not a refusal."""

    MARK: ClassVar[str] = "exit_code"
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    stdout_truncated: bool
    stderr_truncated: bool
    duration_s: float
    error: str = ""

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> CommandResult:
        return cls(int(body["exit_code"]), str(body["stdout"]), str(body["stderr"]), bool(body["timed_out"]),
                   bool(body["stdout_truncated"]), bool(body["stderr_truncated"]), float(body["duration_s"]),
                   str(body.get("error", "")))


@dataclass(frozen=True)
class WorkloadsSet:
    """The statuses of an app's workloads after a set (`workloads`), at the agent's clock.
    Statuses stay in their wire form here: dragonfly checks each (`dragonfly.workloads.to_status`)."""

    MARK: ClassVar[str] = "statuses"
    time: float
    statuses: list[dict[str, Any]] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        return {"time": self.time, "statuses": self.statuses}

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> WorkloadsSet:
        statuses = body["statuses"]
        if not isinstance(statuses, list):
            raise TypeError("statuses must be a list")
        return cls(float(body.get("time") or 0.0), statuses)


@dataclass(frozen=True)
class WorkloadLogs:
    """The last lines of a workload's output (`logs`)."""

    MARK: ClassVar[str] = "stdout"
    stdout: str
    stderr: str = ""

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> WorkloadLogs:
        return cls(str(body["stdout"]), str(body.get("stderr", "")))


# Every reply `decode` reads: each names the field only it carries (MARK).
T = TypeVar("T", LiveMetrics, CommandResult, WorkloadsSet, WorkloadLogs, BenchReport)


def decode(data: bytes, kind: type[T]) -> T | Refusal:
    """`kind`'s reply, or the agent's Refusal; MalformedReply if `data` is neither."""
    try:
        body = wire.loads(data)
    except wire.DecodeError as err:
        raise MalformedReply(f"not JSON: {err}") from err
    if not isinstance(body, dict):
        raise MalformedReply("an answer is a JSON object")
    if kind.MARK not in body:
        return Refusal(str(body.get("error", body)), str(body.get("reason", "")))
    try:
        return kind.from_wire(body)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise MalformedReply(f"{kind.__name__}: {err!r}") from err
