"""Alert rules: validation, and the condition each one tests (pure; no I/O)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

from cbapi.dragonfly.v1 import dragonfly_pb2 as pb
from dragonfly.protocol.metrics import FIELDS, GROUPS
from services import errors
from services.names import check_name

METRIC = "metric"
AGENT_UNHEALTHY = "agent.unhealthy"
KINDS = (METRIC, AGENT_UNHEALTHY)
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}
MAX_FOR_S = 7 * 86400.0


def validate(ns: str, rule: pb.AlertRule) -> pb.AlertRule:
    """The rule as stored (defaults filled in, namespace set); INVALID_ARGUMENT names the bad field."""
    check_name(ns, "ns")
    check_name(rule.name, "rule.name")
    out = pb.AlertRule()
    out.CopyFrom(rule)
    out.ns = ns
    out.kind = rule.kind or METRIC
    if out.mcis:
        check_name(out.mcis, "rule.mcis")
    if out.vm:
        if not out.mcis:
            raise errors.InvalidArgument.field("rule.vm", "a VM scope needs rule.mcis too")
        check_name(out.vm, "rule.vm")
    if out.kind not in KINDS:
        raise errors.InvalidArgument.field("rule.kind", f"{out.kind!r} is not one of {', '.join(KINDS)}")
    if not 0 <= out.for_s <= MAX_FOR_S:
        raise errors.InvalidArgument.field("rule.for_s", f"between 0 and {MAX_FOR_S:g} seconds")
    if out.kind == METRIC:
        group, _, field = out.metric.partition(".")
        if group not in GROUPS or not field:
            raise errors.InvalidArgument.field("rule.metric", f"{out.metric[:100]!r} is not group.field with a group "
                                               f"of {', '.join(GROUPS)} (e.g. cpu.utilization_percent)")
        if field not in FIELDS[group]:
            raise errors.InvalidArgument.field("rule.metric", f"{group} has no field {field[:100]!r}; it has "
                                               f"{', '.join(FIELDS[group])}")
        if out.operator not in OPERATORS:
            raise errors.InvalidArgument.field("rule.operator", f"{out.operator!r} is not one of "
                                               f"{' '.join(OPERATORS)}")
    else:
        out.metric, out.operator, out.threshold = "", "", 0.0
    if out.webhook_url:
        url = urlparse(out.webhook_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise errors.InvalidArgument.field("rule.webhook_url", "an http:// or https:// URL")
    if out.severity == pb.SEVERITY_UNSPECIFIED:
        out.severity = pb.WARNING
    return out


@dataclass(frozen=True)
class Compiled:
    """A stored rule, ready for the hot path."""

    key: str  # its etcd key
    rule: pb.AlertRule
    scope: str  # ns, ns.mcis or ns.mcis.vm
    group: str
    field: str
    holds: Callable[[float], bool]

    def covers(self, vm_key: str) -> bool:
        return vm_key == self.scope or vm_key.startswith(self.scope + ".")


def compile_rule(key: str, rule: pb.AlertRule) -> Compiled:
    scope = ".".join(p for p in (rule.ns, rule.mcis, rule.vm) if p)
    group, _, field = rule.metric.partition(".")
    test = OPERATORS.get(rule.operator, operator.gt)
    threshold = rule.threshold

    def holds(value: float) -> bool:
        return test(value, threshold)

    return Compiled(key, rule, scope, group, field, holds)


@dataclass
class Window:
    """Whether a condition has held long enough: `since` is when it started holding, in the
    time of the points (so a backlog sent late is judged by when it was sampled)."""

    since: float | None = None

    def see(self, holds: bool, t: float, for_s: float) -> bool | None:
        """True: it has held for `for_s` (fire); False: it does not hold (resolve); None: not yet."""
        if not holds:
            self.since = None
            return False
        if self.since is None or t < self.since:
            self.since = t
        return True if t - self.since >= for_s else None
