"""Alert rules: validation with field names, scopes, and the for-duration window."""

from __future__ import annotations

import pytest

from cbapi.dragonfly.v1 import dragonfly_pb2 as pb
from dragonfly.alerts.rules import Window, compile_rule, validate
from services import errors


def test_validate_fills_defaults_and_names_the_bad_field() -> None:
    rule = validate("ns", pb.AlertRule(name="hot", metric="cpu.utilization_percent", operator=">=", threshold=80))
    assert rule.kind == "metric" and rule.severity == pb.WARNING and rule.ns == "ns"
    health = validate("ns", pb.AlertRule(name="down", kind="agent.unhealthy", metric="x", operator="?"))
    assert health.metric == "" and health.operator == ""
    with pytest.raises(errors.InvalidArgument) as err:
        validate("ns", pb.AlertRule(name="hot", metric="cpu.utilization_percent", operator="="))
    assert "operator" in err.value.message or "operator" in str(err.value.__dict__)


def test_compiled_scope_and_condition() -> None:
    rule = compile_rule("k", pb.AlertRule(name="r", ns="ns", mcis="web", metric="cpu.utilization_percent",
                                          operator="<", threshold=10))
    assert rule.covers("ns.web.vm-1") and not rule.covers("ns.webx.vm-1") and not rule.covers("ns.db.vm-1")
    assert rule.holds(5) and not rule.holds(10) and (rule.group, rule.field) == ("cpu", "utilization_percent")


def test_window_fires_after_for_s_and_resets() -> None:
    w = Window()
    assert w.see(True, 100.0, 2.0) is None
    assert w.see(True, 101.0, 2.0) is None
    assert w.see(True, 102.0, 2.0) is True
    assert w.see(False, 103.0, 2.0) is False and w.since is None
    assert Window().see(True, 5.0, 0.0) is True
