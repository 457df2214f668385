"""The MCIS reconciler's decisions (tumblebug/mcis/decisions.py) as tables, and checked against
today's reconciler: every status × target × action × flags of a VM, and random MCIS for the
membership, intent, summary and failure-policy decisions, must come out as the reconciler acts."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as spb
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from tumblebug.mcis import decisions as d
from tumblebug.mcis.decisions import Pass, Policy, Step
from tumblebug.mcis.reconciler import Reconciler, _observe

S = common  # statuses read shorter in the tables
STATUSES = [v.number for v in common.VmStatus.DESCRIPTOR.values]
ACTIONS = [v.number for v in pb.Action.DESCRIPTOR.values]


def vm(status: int = S.RUNNING, target: int = S.RUNNING, action: int = pb.ACTION_NONE, *, requested: bool = True,
       removing: bool = False, **more: Any) -> pb.McisVm:
    return pb.McisVm(status=status, target_status=target, target_action=action, requested=requested,
                     removing=removing, **more)


# ------------------------------------------------------------------------------- vm_step: the table

VM_STEPS = [
    # (status, target, action, requested, removing) → step
    ("removing wins over all", (S.RUNNING, S.RUNNING, pb.ACTION_NONE, True, True), Step.REMOVE),
    ("removing, never asked", (S.CREATING, S.RUNNING, pb.ACTION_CREATE, False, True), Step.REMOVE),
    ("new record", (S.CREATING, S.RUNNING, pb.ACTION_CREATE, False, False), Step.CREATE),
    ("asked again after a lost create", (S.CREATING, S.RUNNING, pb.ACTION_CREATE, False, False), Step.CREATE),
    ("terminated before asked", (S.CREATING, S.TERMINATED, pb.ACTION_TERMINATE, False, False), Step.MARK_TERMINATED),
    ("never asked, already marked", (S.TERMINATED, S.TERMINATED, pb.ACTION_NONE, False, False), Step.NONE),
    ("never asked, target suspended", (S.CREATING, S.SUSPENDED, pb.ACTION_SUSPEND, False, False), Step.NONE),
    ("creating is polled", (S.CREATING, S.RUNNING, pb.ACTION_CREATE, True, False), Step.NONE),
    ("failed stays failed", (S.FAILED, S.RUNNING, pb.ACTION_NONE, True, False), Step.NONE),
    ("failed, even when terminated", (S.FAILED, S.TERMINATED, pb.ACTION_TERMINATE, True, False), Step.NONE),
    ("terminating is polled", (S.TERMINATING, S.TERMINATED, pb.ACTION_TERMINATE, True, False), Step.NONE),
    ("suspending is polled", (S.SUSPENDING, S.SUSPENDED, pb.ACTION_SUSPEND, True, False), Step.NONE),
    ("resuming is polled", (S.RESUMING, S.RUNNING, pb.ACTION_RESUME, True, False), Step.NONE),
    ("rebooting is polled", (S.REBOOTING, S.RUNNING, pb.ACTION_REBOOT, True, False), Step.NONE),
    ("terminate running", (S.RUNNING, S.TERMINATED, pb.ACTION_TERMINATE, True, False), Step.TERMINATE),
    ("terminate suspended", (S.SUSPENDED, S.TERMINATED, pb.ACTION_TERMINATE, True, False), Step.TERMINATE),
    ("terminate one the cloud lost", (S.NOT_EXIST, S.TERMINATED, pb.ACTION_TERMINATE, True, False), Step.TERMINATE),
    ("terminated already", (S.TERMINATED, S.TERMINATED, pb.ACTION_TERMINATE, True, False), Step.SETTLE),
    ("reboot running", (S.RUNNING, S.RUNNING, pb.ACTION_REBOOT, True, False), Step.REBOOT),
    ("reboot needs running", (S.SUSPENDED, S.RUNNING, pb.ACTION_REBOOT, True, False), Step.RESUME),
    ("suspend running", (S.RUNNING, S.SUSPENDED, pb.ACTION_SUSPEND, True, False), Step.SUSPEND),
    ("resume suspended", (S.SUSPENDED, S.RUNNING, pb.ACTION_RESUME, True, False), Step.RESUME),
    ("at target, action open", (S.RUNNING, S.RUNNING, pb.ACTION_CREATE, True, False), Step.SETTLE),
    ("suspended at target", (S.SUSPENDED, S.SUSPENDED, pb.ACTION_SUSPEND, True, False), Step.SETTLE),
    ("at target, done", (S.RUNNING, S.RUNNING, pb.ACTION_NONE, True, False), Step.NONE),
    ("suspended, target terminated by force", (S.SUSPENDED, S.TERMINATED, pb.ACTION_TERMINATE, True, False),
     Step.TERMINATE),
    ("terminated, target running: stays", (S.TERMINATED, S.RUNNING, pb.ACTION_NONE, True, False), Step.NONE),
    ("not-exist, target running: stuck", (S.NOT_EXIST, S.RUNNING, pb.ACTION_RESUME, True, False), Step.NONE),
]


@pytest.mark.parametrize(("case", "row", "step"), VM_STEPS, ids=[c for c, _, _ in VM_STEPS])
def test_vm_step_table(case: str, row: tuple[int, int, int, bool, bool], step: Step) -> None:
    status, target, action, requested, removing = row
    assert d.vm_step(vm(status, target, action, requested=requested, removing=removing)) is step


def test_only_reboot_and_terminate_end_the_action_with_their_answer() -> None:
    assert {s for s in Step if s.ends_action} == {Step.REBOOT, Step.TERMINATE}
    assert set(d.SPIDER_VERBS) == {Step.TERMINATE, Step.REBOOT, Step.SUSPEND, Step.RESUME}


# ------------------------------------------------- vm_step: every combination, against the reconciler

def reconciler() -> Reconciler:
    """A reconciler with no store, spider or loop: its `_drive` hands back the chosen operation."""
    rec = Reconciler.__new__(Reconciler)
    rec.inflight = set()
    rec.monitoring = SimpleNamespace(enabled=False)  # type: ignore[assignment]
    return rec


def drive_today(record: pb.McisVm) -> tuple[Step, pb.McisVm | None]:
    """What today's `Reconciler._drive` does with one VM: the step, and the record it writes."""
    rec = reconciler()
    spawned: list[Any] = []
    rec._run_op = lambda ns, name, key, connection, op: op  # type: ignore[method-assign,assignment,return-value]
    rec._spawn = spawned.append  # type: ignore[method-assign]
    rec._create = lambda *a: (Step.CREATE, None)  # type: ignore[method-assign,assignment,return-value]
    rec._remove = lambda *a: (Step.REMOVE, None)  # type: ignore[method-assign,assignment,return-value]
    verbs = {v: k for k, v in d.SPIDER_VERBS.items()}
    rec._verb = lambda key, v, verb, revoke=False: (verbs[verb], None)  # type: ignore[method-assign,assignment,return-value]

    def write(key: str, change: Any) -> tuple[None, pb.McisVm]:
        copy = pb.McisVm()
        copy.CopyFrom(record)
        return None, change(copy)

    rec._write_vm = write  # type: ignore[method-assign,assignment]
    rec._drive("ns", "m", pb.Mcis(), "k", record)
    if not spawned:
        return Step.NONE, None
    return spawned[0]()  # type: ignore[no-any-return]


def test_vm_step_matches_the_reconciler_for_every_status_target_action_and_flags() -> None:
    checked = 0
    for status, target, action, requested, removing in itertools.product(
            STATUSES, STATUSES, ACTIONS, (False, True), (False, True)):
        record = vm(status, target, action, requested=requested, removing=removing)
        step, written = drive_today(record)
        mine = d.vm_step(record)
        if written is not None:  # a record change: which one, exactly
            expected = pb.McisVm()
            expected.CopyFrom(record)
            if mine is Step.MARK_TERMINATED:
                expected.status = S.TERMINATED
            expected.target_action = pb.ACTION_NONE
            assert mine in (Step.MARK_TERMINATED, Step.SETTLE) and written == expected, record
        else:
            assert mine is step, record
        checked += 1
    assert checked == len(STATUSES) ** 2 * len(ACTIONS) * 4


# ---------------------------------------------------------------------------------- pass kinds

def test_pass_kind_table() -> None:
    intent = pb.McisIntent(id=2, action=pb.ACTION_SUSPEND)
    assert d.pass_kind(pb.Mcis(deleting=True, intents=[intent])) is Pass.DELETE
    assert d.pass_kind(pb.Mcis(intents=[intent])) is Pass.INTENTS
    assert d.pass_kind(pb.Mcis()) is Pass.MEMBERSHIP
    assert [d.drives_vms(k) for k in Pass] == [True, False, True]
    assert d.mcis_gone(pb.Mcis(deleting=True), {}) and not d.mcis_gone(pb.Mcis(deleting=True), {"k": vm()})
    assert not d.mcis_gone(pb.Mcis(), {})


def test_removals_for_delete_skip_those_already_leaving() -> None:
    assert d.removals_for_delete({"a": vm(), "b": vm(removing=True), "c": vm(S.FAILED)}) == ["a", "c"]


# ------------------------------------------------------------------------------------ intents

VERB_CASES = [
    # (verb, force, VM status) → target set, or None
    (pb.ACTION_SUSPEND, False, S.RUNNING, (S.SUSPENDED, pb.ACTION_SUSPEND)),
    (pb.ACTION_SUSPEND, False, S.SUSPENDED, None),
    (pb.ACTION_SUSPEND, True, S.SUSPENDED, (S.SUSPENDED, pb.ACTION_SUSPEND)),
    (pb.ACTION_RESUME, False, S.SUSPENDED, (S.RUNNING, pb.ACTION_RESUME)),
    (pb.ACTION_RESUME, False, S.RUNNING, None),
    (pb.ACTION_REBOOT, False, S.RUNNING, (S.RUNNING, pb.ACTION_REBOOT)),
    (pb.ACTION_REBOOT, False, S.CREATING, None),
    (pb.ACTION_TERMINATE, False, S.FAILED, (S.TERMINATED, pb.ACTION_TERMINATE)),
    (pb.ACTION_TERMINATE, False, S.CREATING, (S.TERMINATED, pb.ACTION_TERMINATE)),
    (pb.ACTION_TERMINATE, False, S.TERMINATING, None),
    (pb.ACTION_TERMINATE, False, S.TERMINATED, None),
    (pb.ACTION_TERMINATE, True, S.TERMINATED, (S.TERMINATED, pb.ACTION_TERMINATE)),
    (pb.ACTION_REFINE, False, S.FAILED, None),  # refine only shrank sizes
    (pb.ACTION_REFINE, True, S.RUNNING, None),
]


@pytest.mark.parametrize(("verb", "force", "status", "aim"), VERB_CASES)
def test_intent_target_table(verb: int, force: bool, status: int, aim: tuple[int, int] | None) -> None:
    got = d.intent_target(pb.McisIntent(id=3, action=verb, force=force), vm(status))
    assert got == (d.Retarget(*aim) if aim else None)


def test_intent_scope_and_leaving_vms() -> None:
    one = pb.McisIntent(id=3, action=pb.ACTION_SUSPEND, subgroup="g", vm="g-1")
    assert d.intent_target(one, vm(subgroup="g", name="g-1")) is not None
    assert d.intent_target(one, vm(subgroup="g", name="g-2")) is None
    assert d.intent_target(one, vm(subgroup="h", name="g-1")) is None
    assert d.intent_target(pb.McisIntent(id=3, action=pb.ACTION_SUSPEND, subgroup="g"), vm(subgroup="g")) is not None
    assert d.intent_target(pb.McisIntent(id=3, action=pb.ACTION_SUSPEND, force=True), vm(removing=True)) is None


def test_retargets_last_applicable_intent_wins_and_judges_the_status_as_found() -> None:
    vms = {"r": vm(S.RUNNING), "s": vm(S.SUSPENDED)}
    intents = [pb.McisIntent(id=2, action=pb.ACTION_SUSPEND), pb.McisIntent(id=3, action=pb.ACTION_RESUME),
               pb.McisIntent(id=4, action=pb.ACTION_TERMINATE, subgroup="other")]
    assert d.retargets(intents, vms) == {"r": d.Retarget(S.SUSPENDED, pb.ACTION_SUSPEND),
                                         "s": d.Retarget(S.RUNNING, pb.ACTION_RESUME)}
    assert d.applied_generation(pb.Mcis(observed_generation=3, intents=intents)) == 4
    assert d.applied_generation(pb.Mcis(observed_generation=9, intents=intents)) == 9


# ----------------------------------------------------------------------------------- membership

def sg(name: str, size: int) -> pb.Subgroup:
    return pb.Subgroup(name=name, connection="c", size=size)


def test_membership_grows_after_the_highest_index_ever_used() -> None:
    mcis = pb.Mcis(subgroups=[sg("g", 4)])
    vms = {"g-1": vm(subgroup="g", index=1), "g-5": vm(subgroup="g", index=5, removing=True)}
    assert d.membership(mcis, vms) == d.Membership(add=(d.NewVms("g", range(6, 9)),))
    assert d.membership(pb.Mcis(subgroups=[sg("n", 2)]), {}) == d.Membership(add=(d.NewVms("n", range(1, 3)),))


def test_membership_shrinks_failed_first_then_newest_and_drops_orphans() -> None:
    mcis = pb.Mcis(subgroups=[sg("g", 2)])
    vms = {"g-1": vm(S.RUNNING, subgroup="g", index=1), "g-2": vm(S.FAILED, subgroup="g", index=2),
           "g-3": vm(S.RUNNING, subgroup="g", index=3), "g-4": vm(S.RUNNING, subgroup="g", index=4),
           "g-9": vm(S.RUNNING, subgroup="g", index=9, removing=True),
           "old-1": vm(subgroup="old", index=1), "old-2": vm(subgroup="old", index=2, removing=True)}
    assert d.membership(mcis, vms) == d.Membership(remove=("old-1", "g-2", "g-4"))


def test_membership_at_size_does_nothing() -> None:
    assert d.membership(pb.Mcis(subgroups=[sg("g", 1)]), {"g-1": vm(S.FAILED, subgroup="g", index=1)}) == d.Membership()


def vm_records() -> st.SearchStrategy[dict[str, pb.McisVm]]:
    one = st.builds(lambda g, i, s, t, a, req, rem, origin: pb.McisVm(
        name=f"{g}-{i}", subgroup=g, index=i, status=s, target_status=t, target_action=a, requested=req,
        removing=rem, origin=origin),
        st.sampled_from(["g", "h", "gone"]), st.integers(1, 8), st.sampled_from(STATUSES),
        st.sampled_from([S.RUNNING, S.SUSPENDED, S.TERMINATED]), st.sampled_from(ACTIONS), st.booleans(),
        st.booleans(), st.integers(1, 3))
    return st.lists(one, max_size=12).map(lambda vs: {f"k{n}": v for n, v in enumerate(vs)})


def mcis_records() -> st.SearchStrategy[pb.Mcis]:
    return st.builds(lambda g, h, policy, op, gen, deleting, intents: pb.Mcis(
        name="m", subgroups=[sg("g", g)] + ([sg("h", h)] if h is not None else []), policy=policy, policy_op=op,
        generation=gen, observed_generation=gen - 1, deleting=deleting, target_action=pb.ACTION_CREATE,
        intents=intents),
        st.integers(0, 6), st.none() | st.integers(0, 6), st.sampled_from(list(pb.FailurePolicy.values())),
        st.integers(0, 3), st.integers(1, 5), st.booleans(),
        st.lists(st.builds(lambda a, sub, force, i: pb.McisIntent(id=i, action=a, subgroup=sub, force=force),
                           st.sampled_from([a for a in ACTIONS if a in (3, 4, 5, 6, 7)]),
                           st.sampled_from(["", "g", "h"]), st.booleans(), st.integers(2, 9)), max_size=3))


def run(coro: Any) -> Any:
    """Run a reconciler coroutine whose I/O is replaced by stand-ins that never wait."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise AssertionError("the coroutine waited on something the test did not replace")


@settings(max_examples=120, deadline=None)
@given(mcis_records(), vm_records())
def test_membership_matches_the_reconciler(mcis: pb.Mcis, vms: dict[str, pb.McisVm]) -> None:
    rec = reconciler()
    removed: list[str] = []
    added: list[d.NewVms] = []

    async def write(key: str, change: Any) -> None:
        removed.append(key)

    async def add(ns: str, name: str, m: pb.Mcis, group: pb.Subgroup, members: list[Any], count: int) -> None:
        start = max((v.index for _, v in members), default=0) + 1  # as `_add_vms` numbers them
        added.append(d.NewVms(group.name, range(start, start + count)))

    rec._write_vm = write  # type: ignore[method-assign,assignment]
    rec._add_vms = add  # type: ignore[method-assign,assignment]
    run(rec._membership("ns", "m", mcis, {k: (v, 1) for k, v in vms.items()}))
    assert d.membership(mcis, vms) == d.Membership(tuple(removed), tuple(added))


@settings(max_examples=120, deadline=None)
@given(mcis_records(), vm_records())
def test_intents_match_the_reconciler(mcis: pb.Mcis, vms: dict[str, pb.McisVm]) -> None:
    if not mcis.intents:
        return
    rec = reconciler()
    aimed: dict[str, d.Retarget] = {}
    wrote: list[pb.Mcis] = []

    async def write(key: str, change: Any) -> None:
        copy = pb.McisVm()
        copy.CopyFrom(vms[key])
        copy.error = "before"
        out = change(copy)
        assert out.error == ""
        aimed[key] = d.Retarget(out.target_status, out.target_action)

    async def update(key: str, value: pb.Mcis, rev: int) -> int:
        wrote.append(value)
        return rev + 1

    rec._write_vm = write  # type: ignore[method-assign,assignment]
    rec.store = SimpleNamespace(update=update)  # type: ignore[assignment]
    rec._wrote = lambda *a: None  # type: ignore[method-assign]
    expected_generation = d.applied_generation(mcis)
    expected = d.retargets(mcis.intents, vms)
    run(rec._apply_intents("ns", "m", mcis, 1, {k: (v, 1) for k, v in vms.items()}))
    assert aimed == expected
    assert wrote[0].observed_generation == expected_generation and not wrote[0].intents


# ------------------------------------------------------------------------- summary and the policy

def settled_vms(mcis: pb.Mcis) -> st.SearchStrategy[dict[str, pb.McisVm]]:
    """Exactly the subgroups' sizes in VM records, each where it was asked to be or failed."""
    one = st.builds(lambda s, origin: (s, origin), st.sampled_from([S.RUNNING, S.FAILED]), st.integers(1, 3))
    total = sum(g.size for g in mcis.subgroups)
    groups = [g.name for g in mcis.subgroups for _ in range(g.size)]
    return st.lists(one, min_size=total, max_size=total).map(lambda picks: {
        f"k{n}": pb.McisVm(name=f"{g}-{n}", subgroup=g, index=n, status=s, target_status=S.RUNNING,
                           target_action=pb.ACTION_NONE, requested=True, origin=origin)
        for n, (g, (s, origin)) in enumerate(zip(groups, picks, strict=True))})


@settings(max_examples=200, deadline=None)
@given(mcis_records(), st.data())
def test_summarize_matches_the_reconciler(mcis: pb.Mcis, data: st.DataObject) -> None:
    settled = data.draw(st.booleans())
    vms = data.draw(settled_vms(mcis) if settled else vm_records())
    rec = reconciler()
    wrote: list[pb.Mcis] = []

    async def update(key: str, value: pb.Mcis, rev: int) -> int:
        wrote.append(value)
        return rev + 1

    rec.store = SimpleNamespace(update=update)  # type: ignore[assignment]
    rec._wrote = lambda *a: None  # type: ignore[method-assign]
    mine = d.summarize(mcis, list(vms.values()))
    run(rec._summarize("ns", "m", mcis, 1, {k: (v, 1) for k, v in vms.items()}))
    theirs = wrote[0] if wrote else mcis
    theirs.ClearField("update_time")
    assert mine == theirs
    if settled and not mcis.deleting and not mcis.intents:
        assert d.complete(mcis, list(vms.values()))
        assert mine.observed_generation >= mcis.generation and mine.policy_op == 0


def settled_mcis(policy: int, op: int = 2, sizes: tuple[int, ...] = (3,)) -> pb.Mcis:
    return pb.Mcis(policy=policy, policy_op=op, generation=op, subgroups=[sg(f"g{i}", n) for i, n in enumerate(sizes)])


def made(status: int, group: str = "g0", origin: int = 2) -> pb.McisVm:
    return vm(status, S.RUNNING, pb.ACTION_NONE, subgroup=group, origin=origin)


POLICY_CASES = [
    # (policy, op, the live VMs) → verdict
    ("nothing failed", pb.POLICY_ROLLBACK, 2, [made(S.RUNNING), made(S.RUNNING)], d.Verdict(Policy.CONTINUE, 2, 0)),
    ("continue keeps failed", pb.POLICY_CONTINUE, 2, [made(S.FAILED), made(S.RUNNING)],
     d.Verdict(Policy.CONTINUE, 2, 1)),
    ("unspecified is continue", pb.FAILURE_POLICY_UNSPECIFIED, 2, [made(S.FAILED)], d.Verdict(Policy.CONTINUE, 1, 1)),
    ("refine drops the failed", pb.POLICY_REFINE, 2, [made(S.FAILED), made(S.RUNNING), made(S.FAILED, "g1")],
     d.Verdict(Policy.REFINE, 3, 2, {"g0": 1, "g1": 1})),
    ("rollback of a scale-out drops what it made", pb.POLICY_ROLLBACK, 2,
     [made(S.FAILED), made(S.RUNNING), made(S.RUNNING, origin=1)], d.Verdict(Policy.ROLLBACK, 2, 1, {"g0": 2})),
    ("rollback of the creation deletes the MCIS", pb.POLICY_ROLLBACK, 1,
     [made(S.FAILED, origin=1), made(S.RUNNING, origin=1)], d.Verdict(Policy.ROLLBACK, 2, 1, {"g0": 2}, True)),
    ("older VMs are not judged", pb.POLICY_REFINE, 2, [made(S.FAILED, origin=1)], d.Verdict(Policy.CONTINUE, 0, 0)),
]


@pytest.mark.parametrize(("case", "policy", "op", "live", "verdict"), POLICY_CASES, ids=[c[0] for c in POLICY_CASES])
def test_failure_policy_table(case: str, policy: int, op: int, live: list[pb.McisVm], verdict: d.Verdict) -> None:
    mcis = settled_mcis(policy, op, (3, 2))
    assert d.judge(mcis, live) == verdict
    mine, theirs = pb.Mcis(), pb.Mcis()
    mine.CopyFrom(mcis)
    theirs.CopyFrom(mcis)
    d.apply_verdict(mine, verdict)
    Reconciler._judge(theirs, live)
    assert mine == theirs and mine.policy_op == 0


def test_a_rollback_verdict_in_words() -> None:
    mcis = settled_mcis(pb.POLICY_ROLLBACK, 1)
    verdict = d.judge(mcis, [made(S.FAILED, origin=1), made(S.RUNNING, origin=1)])
    d.apply_verdict(mcis, verdict)
    assert mcis.message == "1 of 2 new VMs failed; rolled back"
    assert mcis.deleting and mcis.target_action == pb.ACTION_TERMINATE and mcis.generation == 2
    assert mcis.subgroups[0].size == 1


COMPLETE_CASES = [
    ("all running", [vm(), vm()], 2, True),
    ("one creating", [vm(), vm(S.CREATING, requested=True)], 2, False),
    ("failed counts as done", [vm(), vm(S.FAILED)], 2, True),
    ("fewer records than the size", [vm()], 2, False),
    ("one leaving", [vm(), vm(), vm(removing=True)], 2, False),
    ("reboot still open", [vm(), vm(action=pb.ACTION_REBOOT)], 2, False),
    ("never asked", [vm(), vm(requested=False)], 2, False),
    ("terminated without asking", [vm(), vm(S.TERMINATED, S.TERMINATED, requested=False)], 2, True),
    ("suspended short of its target", [vm(), vm(S.SUSPENDED)], 2, False),
]


@pytest.mark.parametrize(("case", "vms", "size", "done"), COMPLETE_CASES, ids=[c[0] for c in COMPLETE_CASES])
def test_complete_table(case: str, vms: list[pb.McisVm], size: int, done: bool) -> None:
    assert d.complete(pb.Mcis(subgroups=[sg("g", size)]), vms) is done
    assert not d.complete(pb.Mcis(subgroups=[sg("g", size)], deleting=True), vms)
    assert not d.complete(pb.Mcis(subgroups=[sg("g", size)], intents=[pb.McisIntent(id=1)]), vms)


# -------------------------------------------------------------------------- polling and answers

POLL_CASES = [
    ("creating", vm(S.CREATING), False, True),
    ("running with a cloud ID", vm(S.RUNNING, iid=common.IID(csp_id="i-1")), False, False),
    ("running with a cloud ID, full resync", vm(S.RUNNING, iid=common.IID(csp_id="i-1")), True, True),
    ("running without a cloud ID", vm(S.RUNNING), False, True),
    ("failed, even at a resync", vm(S.FAILED), True, False),
    ("not asked", vm(S.CREATING, requested=False), True, False),
    ("leaving", vm(S.TERMINATING, removing=True), True, False),
]


@pytest.mark.parametrize(("case", "record", "full", "poll"), POLL_CASES, ids=[c[0] for c in POLL_CASES])
def test_needs_poll_table(case: str, record: pb.McisVm, full: bool, poll: bool) -> None:
    assert d.needs_poll(record, full) is poll


def test_ask_again_only_a_create_the_cloud_never_acknowledged() -> None:
    assert d.ask_again(vm(S.CREATING))
    assert not d.ask_again(vm(S.CREATING, iid=common.IID(csp_id="i-1")))
    assert not d.ask_again(vm(S.RUNNING))


def test_after_refusal_keeps_a_settled_vm_where_it_is_and_leaves_a_moving_one_to_polling() -> None:
    for status in STATUSES:
        got = d.after_refusal(vm(status, S.SUSPENDED, pb.ACTION_SUSPEND))
        if status in (S.CREATING, S.SUSPENDING, S.RESUMING, S.REBOOTING, S.TERMINATING):
            assert got is None
        else:
            assert got == d.Retarget(status, pb.ACTION_NONE)


def test_reached_target_matches_what_an_observation_records() -> None:
    for status, target, action in itertools.product(STATUSES, STATUSES, ACTIONS):
        record = vm(S.CREATING, target, action)
        observed = _observe(record, spb.Vm(status=status))
        record.status = status
        assert (observed.target_action == pb.ACTION_NONE) == (d.reached_target(record) or action == pb.ACTION_NONE)
