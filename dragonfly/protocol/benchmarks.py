"""Benchmarks on request, as both sides see them: what may be asked and what is answered.

A request names benchmarks and a time budget that they share evenly. Both dragonfly and the
agent check requests with `build_request`, so a bad one is refused before it travels, naming
the field. Running them is the agent's (`dragonfly.agent.benchmarks`).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

# Benchmark → the result field holding its value (the unit is in the name).
FIELDS: dict[str, str] = {
    "cpu_single": "cpu_single_ops_per_s",
    "cpu_multi": "cpu_multi_ops_per_s",
    "memory_read": "memory_read_bytes_per_s",
    "memory_write": "memory_write_bytes_per_s",
    "disk_read": "disk_read_bytes_per_s",
    "disk_write": "disk_write_bytes_per_s",
}
RTT = "rtt"
NAMES: tuple[str, ...] = (*FIELDS, RTT)

# Seconds each benchmark gets when the request gives no budget.
DEFAULT_SLICE_S = 0.5
# The budget of one request (all its benchmarks together).
MIN_BUDGET_S = 0.1
MAX_BUDGET_S = 30.0
MAX_TARGETS = 64


class FieldError(ValueError):
    """A request that cannot run, and the request field that is wrong."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


@dataclass(frozen=True)
class Target:
    """A TCP endpoint whose connect time is measured."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_target(text: str) -> Target:
    """`host:port`, `1.2.3.4:port` or `[v6]:port`; ValueError says what is wrong."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as err:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from err
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, [addr]:port")
    if not host or len(host) > 253 or any(c.isspace() or c in "/@?#" for c in host):
        raise ValueError(f"{text!r} has no valid host")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: the port must be 1-65535")
    return Target(host, int(port_text))


@dataclass(frozen=True)
class BenchRequest:
    """Which benchmarks to run, the RTT targets, and the seconds they share."""

    benchmarks: tuple[str, ...]
    rtt_targets: tuple[Target, ...]
    budget_s: float

    @property
    def slice_s(self) -> float:
        """Each benchmark's share of the budget."""
        return self.budget_s / len(self.benchmarks)

    def to_wire(self) -> dict[str, Any]:
        return {"benchmarks": list(self.benchmarks), "rtt_targets": [str(t) for t in self.rtt_targets],
                "budget_s": self.budget_s}

    @classmethod
    def from_wire(cls, body: Any, max_budget_s: float = MAX_BUDGET_S) -> BenchRequest:
        """A request as dragonfly sends it, resolved: every benchmark named and the budget given.
        The defaults of `build_request` are for people, not for the wire, so a body that leaves
        anything out (an acknowledgement or any other stray message) runs nothing."""
        if not isinstance(body, dict):
            raise FieldError("body", "a benchmark request is a JSON object")
        names, targets, budget = body.get("benchmarks"), body.get("rtt_targets", []), body.get("budget_s")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise FieldError("benchmarks", "name at least one benchmark")
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise FieldError("rtt_targets", "a list of host:port")
        if isinstance(budget, bool) or not isinstance(budget, int | float) or not budget > 0:
            raise FieldError("budget_s", "a number of seconds above 0")
        return build_request(names, targets, float(budget), max_budget_s)


def build_request(benchmarks: Sequence[str], rtt_targets: Sequence[str], budget_s: float,
                  max_budget_s: float = MAX_BUDGET_S) -> BenchRequest:
    """A checked request. No benchmarks means all (rtt when targets are given); no budget means
    `DEFAULT_SLICE_S` each, within `max_budget_s`. FieldError names the first wrong field."""
    names: list[str] = []
    for i, name in enumerate(benchmarks):
        if name not in NAMES:
            raise FieldError(f"benchmarks[{i}]", f"unknown benchmark {name!r}; one of {', '.join(NAMES)}")
        if name not in names:
            names.append(name)
    if len(rtt_targets) > MAX_TARGETS:
        raise FieldError("rtt_targets", f"at most {MAX_TARGETS} targets")
    targets: list[Target] = []
    for i, text in enumerate(rtt_targets):
        try:
            targets.append(parse_target(str(text)))
        except ValueError as err:
            raise FieldError(f"rtt_targets[{i}]", str(err)) from err
    if not names:
        names = [*FIELDS, RTT] if targets else list(FIELDS)
    if RTT in names and not targets:
        raise FieldError("rtt_targets", "rtt needs at least one host:port target")
    if targets and RTT not in names:
        raise FieldError("rtt_targets", "targets are given but rtt is not among the benchmarks")
    if math.isnan(budget_s) or budget_s < 0 or (budget_s and not MIN_BUDGET_S <= budget_s <= max_budget_s):
        raise FieldError("budget_s", f"between {MIN_BUDGET_S:g} and {max_budget_s:g} seconds (0 = "
                                     f"{DEFAULT_SLICE_S:g} s per benchmark)")
    budget = budget_s or min(max_budget_s, DEFAULT_SLICE_S * len(names))
    return BenchRequest(tuple(names), tuple(targets), budget)


@dataclass
class RttResult:
    """The TCP connect time to one target: the lowest of `samples`, or why there is none."""

    target: str
    rtt_ms: float = 0.0
    samples: int = 0
    error: str = ""


@dataclass
class BenchReport:
    """What a benchmark request measured; 0 where a benchmark did not run or failed (see `errors`)."""

    # The field only a report carries (a refusal has `error`): see `replies.decode`.
    MARK: ClassVar[str] = "kind"
    kind: str
    cpu_count: int
    cpu_single_ops_per_s: float = 0.0
    cpu_multi_ops_per_s: float = 0.0
    memory_read_bytes_per_s: float = 0.0
    memory_write_bytes_per_s: float = 0.0
    disk_read_bytes_per_s: float = 0.0
    disk_write_bytes_per_s: float = 0.0
    rtt: list[RttResult] = field(default_factory=list)
    # Benchmark → why it has no value.
    errors: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    time: float = 0.0

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> BenchReport:
        known = {k: v for k, v in body.items() if k in cls.__dataclass_fields__}
        known["rtt"] = [RttResult(**r) for r in known.get("rtt", [])]
        return cls(**known)
