"""Ladybug's decisions as tables: placement, rollout steps, canary analysis, scaling."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cbapi.dragonfly.v1 import workloads_pb2 as wpb
from ladybug.decisions import analysis, scaling
from ladybug.decisions.model import Observed, Strategy, Verdict, Vm, Want
from ladybug.decisions.placement import choose_vm, free_port
from ladybug.decisions.rollout import Situation, canaries_ready, step
from ladybug.ids import instance_id

VMS = [Vm("a-1", "a", "aws-1", "aws"), Vm("a-2", "a", "aws-1", "aws"),
       Vm("g-1", "g", "gcp-1", "gcp"), Vm("g-2", "g", "gcp-1", "gcp")]
HEALTHY = Observed(wpb.WORKLOAD_RUNNING, True, healthy_since=0.0)
NOW = 100.0


def want(rev: int, slot: int, vm: str, port: int = 8080, **kw: object) -> Want:
    return Want(instance_id("web", rev, slot), rev, slot, vm, port, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------ placement

@pytest.mark.parametrize(("wanted", "max_per_vm", "prefer", "avoid", "expect"), [
    ([], 1, "", frozenset(), "a-1"),  # empty: by name
    ([want(1, 0, "a-1")], 1, "", frozenset(), "g-1"),  # another cloud before the same cloud's other VM
    ([want(1, 0, "a-1"), want(1, 1, "g-1")], 1, "", frozenset(), "a-2"),
    ([want(1, i, v) for i, v in enumerate(["a-1", "a-2", "g-1", "g-2"])], 1, "", frozenset(), None),  # full
    ([want(1, i, v) for i, v in enumerate(["a-1", "a-2", "g-1", "g-2"])], 2, "", frozenset(), "a-1"),
    ([want(1, 0, "a-1")], 1, "g-2", frozenset(), "g-2"),  # preferred (the old instance's VM)
    ([], 1, "", frozenset({"a-1"}), "a-2"),  # avoid the VM it crashed on
    ([want(1, 0, "a-1", drain_at=1.0)], 1, "", frozenset(), "a-1"),  # draining ones do not count
])
def test_choose_vm(wanted: list[Want], max_per_vm: int, prefer: str, avoid: frozenset[str], expect: str | None) -> None:
    got = choose_vm(VMS, wanted, 1, max_per_vm, prefer, avoid)
    assert (got.name if got else None) == expect


def test_unusable_vms_are_never_chosen_and_ports_step_up() -> None:
    vms = [replace(VMS[0], usable=False), VMS[1]]
    assert choose_vm(vms, [], 1, 1) == VMS[1]
    assert free_port([want(1, 0, "a-1", 8080), want(2, 0, "a-1", 8081)], "a-1", 8080) == 8082
    assert free_port([want(1, 0, "a-2", 8080)], "a-1", 8080) == 8080


def test_instance_ids_are_deterministic_and_bounded() -> None:
    assert instance_id("web", 3, 1) == "web-r3-1"
    long = "a" * 63
    assert instance_id(long, 12, 99) == instance_id(long, 12, 99)
    assert len(instance_id(long, 12, 99)) <= 63 and instance_id(long, 12, 99) != instance_id(long, 12, 98)


# ------------------------------------------------------------------- rollouts

def situation(wanted: list[Want], observed: dict[str, Observed] | None = None, **kw: object) -> Situation:
    base = dict(app="web", revision=2, stable=1, count=4, strategy=Strategy(type="ROLLING", max_parallel=1,
                min_healthy_time=5.0, healthy_deadline=10.0), max_per_vm=1, base_port=8080, vms=VMS,
                wanted=wanted, observed=observed or {}, now=NOW, rollout_start=NOW - 1)
    base.update(kw)
    return Situation(**base)  # type: ignore[arg-type]


V1 = [want(1, i, v) for i, v in enumerate(["a-1", "g-1", "a-2", "g-2"])]
V1_OK = {w.id: HEALTHY for w in V1}


def new_ids(wanted: list[Want], rev: int = 2) -> list[str]:
    return sorted(w.id for w in wanted if w.revision == rev and not w.draining)


def test_first_deploy_all_at_once_places_every_slot_spread() -> None:
    s = situation([], revision=1, stable=0, strategy=Strategy())
    out = step(s)
    assert sorted(w.vm for w in out.wanted) == ["a-1", "a-2", "g-1", "g-2"]
    assert out.phase == "PROGRESSING" and len(out.events) == 4 and not out.complete


@pytest.mark.parametrize(("strategy", "started"), [
    (Strategy(type="ALL_AT_ONCE"), 4),
    (Strategy(type="ROLLING", max_parallel=1), 1),
    (Strategy(type="ROLLING", max_parallel=3), 3),
    (Strategy(type="CANARY", canaries=2, max_parallel=1), 2),
])
def test_first_step_of_an_update_starts_as_many_as_the_strategy_allows(strategy: Strategy, started: int) -> None:
    out = step(situation(V1, V1_OK, strategy=strategy))
    new = [w for w in out.wanted if w.revision == 2]
    assert len(new) == started
    # Surge: every replacement starts beside its old instance, on the same VM, on the next port.
    for w in new:
        old = next(o for o in V1 if o.slot == w.slot)
        assert (w.vm, w.port) == (old.vm, 8081)
    assert not any(w.draining for w in out.wanted)  # nothing drains before its successor is ready


def test_rolling_drains_the_old_only_after_min_healthy_time_then_moves_on() -> None:
    new0 = want(2, 0, "a-1", 8081, placed_at=NOW - 3)
    wanted = [*V1, new0]
    young = {**V1_OK, new0.id: Observed(wpb.WORKLOAD_RUNNING, True, healthy_since=NOW - 2)}
    out = step(situation(wanted, young))
    assert not any(w.draining for w in out.wanted) and new_ids(out.wanted) == [new0.id]
    ready = {**V1_OK, new0.id: Observed(wpb.WORKLOAD_RUNNING, True, healthy_since=NOW - 6)}
    out = step(situation(wanted, ready))
    assert [w.id for w in out.wanted if w.draining] == [V1[0].id]
    assert new_ids(out.wanted) == sorted([new0.id, instance_id("web", 2, 1)])


def test_drained_instances_stop_after_drain_time_and_a_finished_rollout_is_complete() -> None:
    new = [want(2, i, w.vm, 8081, placed_at=0.0) for i, w in enumerate(V1)]
    old = [replace(w, drain_at=NOW - 3) for w in V1]
    obs = {w.id: HEALTHY for w in new}
    out = step(situation(old + new, obs, drain_s=2.0))
    assert [w.id for w in out.wanted] == [w.id for w in new]
    assert out.complete and out.phase == "AVAILABLE"
    assert sum(e.type == "Stop" for e in out.events) == 4


@pytest.mark.parametrize(("drained_for", "stopped"), [(3.0, 3), (29.0, 3), (31.0, 4)])
def test_a_drained_instance_with_requests_in_flight_waits_up_to_drain_max(drained_for: float, stopped: int) -> None:
    new = [want(2, i, w.vm, 8081, placed_at=0.0) for i, w in enumerate(V1)]
    old = [replace(w, drain_at=NOW - drained_for) for w in V1]
    out = step(situation(old + new, {w.id: HEALTHY for w in new}, drain_s=2.0, in_flight=frozenset({V1[0].id})))
    assert sum(e.type == "Stop" for e in out.events) == stopped


@pytest.mark.parametrize(("observed", "placed_at", "why"), [
    (Observed(wpb.WORKLOAD_CRASH_LOOP, False, restarts=5), NOW - 1, "failed on"),
    (Observed(wpb.WORKLOAD_FAILED, False, message="cannot start"), NOW - 1, "cannot start"),
    (Observed(wpb.WORKLOAD_RUNNING, False), NOW - 11, "not healthy within 10"),
])
def test_a_failing_new_instance_fails_the_rollout(observed: Observed, placed_at: float, why: str) -> None:
    new0 = want(2, 0, "a-1", 8081, placed_at=placed_at)
    out = step(situation([*V1, new0], {**V1_OK, new0.id: observed}))
    assert out.phase == "ROLLOUT_FAILED" and why in out.failed
    assert not any(w.draining for w in out.wanted)  # the old ones keep serving


def test_progress_deadline_and_failed_analysis_fail_the_rollout() -> None:
    st = Strategy(type="ROLLING", progress_deadline=30.0)
    assert "progress deadline" in step(situation(V1, V1_OK, strategy=st, rollout_start=NOW - 31)).failed
    assert "analysis" in step(situation(V1, V1_OK, analysis=Verdict.FAIL, analysis_note="x")).failed


def test_canary_waits_for_promotion_then_rolls_on() -> None:
    st = Strategy(type="CANARY", canaries=1, max_parallel=2, min_healthy_time=1.0)
    canary = want(2, 0, "a-1", 8081, canary=True, placed_at=NOW - 5)
    obs = {**V1_OK, canary.id: Observed(wpb.WORKLOAD_RUNNING, True, healthy_since=NOW - 2)}
    s = situation([*V1, canary], obs, strategy=st)
    assert canaries_ready(s)
    out = step(s)
    assert out.phase == "PAUSED" and not any(w.draining for w in out.wanted) and new_ids(out.wanted) == [canary.id]
    assert step(replace(s, analysis=Verdict.WAIT, analysis_note="analysing")).phase == "PROGRESSING"
    auto = step(replace(s, strategy=replace(st, auto_promote=True)))
    assert auto.promote and any(e.type == "Promote" for e in auto.events)
    promoted = step(replace(s, promoted=True))
    assert [w.id for w in promoted.wanted if w.draining] == [V1[0].id]
    assert len(new_ids(promoted.wanted)) == 3  # the canary and max_parallel=2 more


def test_quality_loop_moves_crash_loops_and_instances_of_bad_vms_keeping_their_ids() -> None:
    stable = [want(1, i, w.vm) for i, w in enumerate(V1)]
    obs = {w.id: HEALTHY for w in stable}
    obs[stable[0].id] = Observed(wpb.WORKLOAD_CRASH_LOOP, False, restarts=6)
    vms = [VMS[0], VMS[1], replace(VMS[2], usable=False), VMS[3], Vm("g-3", "g", "gcp-1", "gcp")]
    out = step(situation(stable, obs, revision=1, stable=1, vms=vms))
    moved = {w.id: w.vm for w in out.wanted}
    assert moved[stable[0].id] not in ("a-1",) and moved[stable[1].id] not in ("g-1",)
    assert sorted(moved) == sorted(w.id for w in stable)  # none lost, none doubled
    assert {e.type for e in out.events} >= {"Move", "Failed"}


def test_scale_in_drains_slots_beyond_the_count_and_no_room_is_counted() -> None:
    stable = [want(1, i, w.vm) for i, w in enumerate(V1)]
    obs = {w.id: HEALTHY for w in stable}
    out = step(situation(stable, obs, revision=1, stable=1, count=2))
    assert sorted(w.slot for w in out.wanted if w.draining) == [2, 3]
    out = step(situation(stable, obs, revision=1, stable=1, count=6))
    assert out.no_room == 2 and out.phase == "DEGRADED"


def test_a_failed_first_revision_holds_still() -> None:
    new = [want(1, 0, "a-1")]
    out = step(situation(new, {new[0].id: Observed(wpb.WORKLOAD_CRASH_LOOP)}, revision=1, stable=0, hold=True))
    assert out.phase == "ROLLOUT_FAILED" and out.wanted == new and not out.events


# ------------------------------------------------------------------- analysis

RULE = analysis.Rule("error_rate", 0.05, window_s=30, min_requests=20)


@pytest.mark.parametrize(("rule", "after", "elapsed", "verdict"), [
    (analysis.Rule(), analysis.Traffic(100, 50), 40, Verdict.NONE),
    (RULE, analysis.Traffic(10, 0), 5, Verdict.WAIT),
    (RULE, analysis.Traffic(100, 20), 5, Verdict.FAIL),  # 20 % 5xx: fails before the window ends
    (RULE, analysis.Traffic(100, 2), 31, Verdict.PASS),
    (RULE, analysis.Traffic(10, 5), 31, Verdict.INCONCLUSIVE),
    (analysis.Rule("latency_ms", 200, 30, 20), analysis.Traffic(50, 0, 350.0), 10, Verdict.FAIL),
])
def test_analysis(rule: analysis.Rule, after: analysis.Traffic, elapsed: float, verdict: Verdict) -> None:
    assert analysis.judge(rule, analysis.Traffic(), after, elapsed)[0] is verdict


# -------------------------------------------------------------------- scaling

R = scaling.ScaleRule(min_instances=2, max_instances=6, metric=True, scale_out_above=70, scale_in_below=20,
                      cooldown_s=60)


@pytest.mark.parametrize(("rule", "current", "metric", "last", "expect"), [
    (R, 1, None, 0, 2),  # below the minimum
    (R, 8, None, 0, 6),  # above the maximum
    (R, 3, 90.0, 0, 4),  # out
    (R, 6, 90.0, 0, 6),  # at the maximum
    (R, 3, 10.0, 0, 2),  # in
    (R, 2, 10.0, 0, 2),  # at the minimum
    (R, 3, 90.0, NOW - 10, 3),  # cooling down
    (R, 3, 50.0, 0, 3),  # between the thresholds
    (replace(R, metric=False), 3, 90.0, 0, 3),  # bounds only
])
def test_scaling_verdict(rule: scaling.ScaleRule, current: int, metric: float | None, last: float,
                         expect: int) -> None:
    assert scaling.verdict(rule, current, metric, NOW, last)[0] == expect


def test_a_failure_is_replaced_only_once_it_has_lasted() -> None:
    since: dict[str, float] = {}
    a, b = Vm("a", "g", failed=True), Vm("b", "g")
    assert scaling.lasting_failures([a, b], since, NOW, 30) == {}  # just seen failed: wait
    assert scaling.lasting_failures([a, b], since, NOW + 29, 30) == {}
    assert scaling.lasting_failures([a, b], since, NOW + 30, 30) == {"a": "g"}
    well = Vm("a", "g")
    assert scaling.lasting_failures([well, b], since, NOW + 31, 30) == {} and since == {}  # a blip forgotten
    assert scaling.lasting_failures([a, b], since, NOW + 40, 30) == {}  # failed again: the wait starts afresh
    assert scaling.lasting_failures([a], since, NOW + 40, 0) == {"a": "g"}


@pytest.mark.parametrize(("no_room", "subgroup", "last", "coming", "expect"), [
    (2, "g", 0, 0, 5), (0, "g", 0, 0, None), (2, "", 0, 0, None), (2, "g", NOW - 5, 0, None),
    (2, "g", 0, 1, None),  # a VM still on its way brings room: no growth while the MCIS builds
])
def test_grow(no_room: int, subgroup: str, last: float, coming: int, expect: int | None) -> None:
    assert scaling.grow(no_room, subgroup, 3, NOW, last, 60, coming) == expect
    assert scaling.desired_count(0, 4) == 4 and scaling.desired_count(3, 4) == 3


@pytest.mark.parametrize(("failed", "expect"), [
    ({}, {}),
    ({"a1": "a"}, {"a": 3}),
    ({"a1": "a", "a2": "a", "b1": "b"}, {"a": 4, "b": 3}),
    ({"x1": "gone"}, {}),  # a subgroup the MCIS no longer has
])
def test_replacements(failed: dict[str, str], expect: dict[str, int]) -> None:
    assert scaling.replacements(failed, {"a": 2, "b": 2}) == expect
