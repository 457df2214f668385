"""The MCIS reconciler's decisions (tumblebug/mcis/decisions.py) as tables: a VM's step for every
status × target × action × flags, intents, membership, the failure policy, completion, polling;
and the incremental tally against counting the records afresh."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as spb
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from tumblebug.mcis import decisions as d
from tumblebug.mcis.decisions import Pass, Policy, Step
from tumblebug.mcis.tally import Tally

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
    # A forced suspend of a VM not yet sent to spider: made first, then suspended (it was stranded).
    ("never asked, target suspended", (S.CREATING, S.SUSPENDED, pb.ACTION_SUSPEND, False, False), Step.CREATE),
    ("creating is polled", (S.CREATING, S.RUNNING, pb.ACTION_CREATE, True, False), Step.NONE),
    ("failed stays failed", (S.FAILED, S.RUNNING, pb.ACTION_NONE, True, False), Step.NONE),
    # A failed VM may exist in its cloud: terminating it deletes it there (it was only marked before).
    ("terminate failed", (S.FAILED, S.TERMINATED, pb.ACTION_TERMINATE, True, False), Step.TERMINATE),
    ("failed, target suspended", (S.FAILED, S.SUSPENDED, pb.ACTION_NONE, True, False), Step.NONE),
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
    # The cloud lost it: recorded Failed (so a wait ends and refine can drop it), not left waiting.
    ("not-exist, target running", (S.NOT_EXIST, S.RUNNING, pb.ACTION_RESUME, True, False), Step.MARK_LOST),
    ("not-exist, target suspended", (S.NOT_EXIST, S.SUSPENDED, pb.ACTION_SUSPEND, True, False), Step.MARK_LOST),
    ("not-exist, nothing asked", (S.NOT_EXIST, S.RUNNING, pb.ACTION_NONE, True, False), Step.MARK_LOST),
    # Known and left as is: a forced reboot of a Suspended VM resumes it, then reboots it.
    ("forced reboot of a suspended VM resumes first", (S.SUSPENDED, S.RUNNING, pb.ACTION_REBOOT, True, False),
     Step.RESUME),
]


@pytest.mark.parametrize(("case", "row", "step"), VM_STEPS, ids=[c for c, _, _ in VM_STEPS])
def test_vm_step_table(case: str, row: tuple[int, int, int, bool, bool], step: Step) -> None:
    status, target, action, requested, removing = row
    assert d.vm_step(vm(status, target, action, requested=requested, removing=removing)) is step


def test_a_deleting_mcis_removes_every_vm_whatever_its_record_says() -> None:
    for status, target, action, requested, removing in itertools.product(
            STATUSES, STATUSES, ACTIONS, (False, True), (False, True)):
        record = vm(status, target, action, requested=requested, removing=removing)
        assert d.vm_step(record, True) is Step.REMOVE
        assert d.leaving(pb.Mcis(deleting=True), record) and d.leaving(pb.Mcis(), record) is removing


def test_every_vm_gets_a_step_and_only_moving_or_settled_ones_none() -> None:
    """Over every combination: NONE only for a VM on its way (polled), failed and not to end, at its
    target, or never asked and not to be made; nothing asked of spider is left stuck at NOT_EXIST."""
    for status, target, action, requested in itertools.product(STATUSES, STATUSES, ACTIONS, (False, True)):
        record = vm(status, target, action, requested=requested)
        step = d.vm_step(record)
        if step is Step.NONE and requested:
            assert (status in (S.CREATING, S.SUSPENDING, S.RESUMING, S.REBOOTING, S.TERMINATING)
                    or (status == S.FAILED and target != S.TERMINATED)
                    or (status == target and action == pb.ACTION_NONE)
                    or status != S.NOT_EXIST), record
        if requested and status == S.NOT_EXIST:
            assert step in (Step.TERMINATE, Step.MARK_LOST)


UNSENT_STEPS = [
    # A record born `requested` whose create this leader has not sent: treated as not yet asked for.
    ("born requested, create unsent", (S.CREATING, S.RUNNING, pb.ACTION_CREATE), Step.CREATE),
    ("born requested, forced suspend first", (S.CREATING, S.SUSPENDED, pb.ACTION_SUSPEND), Step.CREATE),
    ("born requested, terminated before sent", (S.CREATING, S.TERMINATED, pb.ACTION_TERMINATE),
     Step.MARK_TERMINATED),
]


@pytest.mark.parametrize(("case", "row", "step"), UNSENT_STEPS, ids=[c for c, _, _ in UNSENT_STEPS])
def test_a_record_born_requested_is_created_by_the_leader_that_wrote_it(
        case: str, row: tuple[int, int, int], step: Step) -> None:
    status, target, action = row
    record = vm(status, target, action, requested=True)
    assert d.unsent_create(record)
    assert d.vm_step(record, unsent=True) is step
    # Any other leader (or after the create was sent) sees a requested VM on its way: polled, not sent again.
    assert d.vm_step(record) is Step.NONE
    assert d.needs_poll(record, False)


def test_unsent_changes_nothing_once_the_cloud_named_the_vm_or_it_leaves() -> None:
    """`unsent` matters only for a requested, Creating record without a cloud ID; removal still wins."""
    for status, target, action in itertools.product(STATUSES, STATUSES, ACTIONS):
        for record in (vm(status, target, action, iid=common.IID(name="x", csp_id="i-1")),
                       vm(status, target, action, requested=False)):
            assert d.vm_step(record, unsent=True) is d.vm_step(record)
        made = vm(status, target, action)
        if status != S.CREATING:
            assert d.vm_step(made, unsent=True) is d.vm_step(made)
        assert d.vm_step(vm(status, target, action, removing=True), unsent=True) is Step.REMOVE


def test_only_reboot_and_terminate_end_the_action_with_their_answer() -> None:
    assert {s for s in Step if s.ends_action} == {Step.REBOOT, Step.TERMINATE}
    assert set(d.SPIDER_VERBS) == {Step.TERMINATE, Step.REBOOT, Step.SUSPEND, Step.RESUME}


# ---------------------------------------------------------------------------------- pass kinds

def test_pass_kind_table() -> None:
    intent = pb.McisIntent(id=2, action=pb.ACTION_SUSPEND)
    assert d.pass_kind(pb.Mcis(deleting=True, intents=[intent])) is Pass.DELETE
    assert d.pass_kind(pb.Mcis(intents=[intent])) is Pass.INTENTS
    assert d.pass_kind(pb.Mcis()) is Pass.MEMBERSHIP
    assert [d.drives_vms(k) for k in Pass] == [True, False, True]
    assert d.mcis_gone(pb.Mcis(deleting=True), {}) and not d.mcis_gone(pb.Mcis(deleting=True), {"k": vm()})
    assert not d.mcis_gone(pb.Mcis(), {})




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
    (pb.ACTION_REFINE, False, S.FAILED, None),  # refine of the MCIS only shrank sizes
    (pb.ACTION_REFINE, True, S.RUNNING, None),
]


def test_a_refine_naming_a_vm_takes_it_out_when_failed_or_forced() -> None:
    named = pb.McisIntent(id=3, action=pb.ACTION_REFINE, vm="g-1")
    assert d.intent_target(named, vm(S.FAILED, name="g-1")) == d.REMOVE_VM
    assert d.intent_target(named, vm(S.RUNNING, name="g-1")) is None
    forced = pb.McisIntent(id=3, action=pb.ACTION_REFINE, vm="g-1", force=True)
    assert d.intent_target(forced, vm(S.RUNNING, name="g-1")) == d.REMOVE_VM
    assert d.intent_target(forced, vm(S.RUNNING, name="g-2")) is None


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


MEMBERSHIP_DUE = [
    # (case, made for, records (removing?), sizes) → due
    ("never made", None, [False, False], (2,), True),
    ("made for an older generation", (2, False), [False, False], (2,), True),
    ("made and the counts add up", (3, False), [False, False, True], (1, 1), False),
    ("a record went meanwhile", (3, False), [False], (1, 1), True),
    ("a record came from elsewhere", (3, False), [False, False, False], (1, 1), True),
]


@pytest.mark.parametrize(("case", "made_for", "records", "sizes", "due"), MEMBERSHIP_DUE,
                         ids=[c[0] for c in MEMBERSHIP_DUE])
def test_membership_due_table(case: str, made_for: tuple[int, bool] | None, records: list[bool],
                              sizes: tuple[int, ...], due: bool) -> None:
    mcis = pb.Mcis(generation=3, subgroups=[sg(f"g{i}", n) for i, n in enumerate(sizes)])
    tally = Tally.of([vm(removing=r) for r in records], d.vm_done)
    assert d.membership_due(mcis, tally, made_for) is due


def settled_mcis(policy: int, op: int = 2, sizes: tuple[int, ...] = (3,)) -> pb.Mcis:
    return pb.Mcis(policy=policy, policy_op=op, generation=op, subgroups=[sg(f"g{i}", n) for i, n in enumerate(sizes)])


def made(status: int, group: str = "g0", origin: int = 2, name: str = "") -> pb.McisVm:
    return vm(status, S.RUNNING, pb.ACTION_NONE, subgroup=group, origin=origin, name=name)


POLICY_CASES = [
    # (policy, op, the live VMs) → verdict
    ("nothing failed", pb.POLICY_ROLLBACK, 2, [made(S.RUNNING), made(S.RUNNING)], d.Verdict(Policy.CONTINUE, 2, 0)),
    ("continue keeps failed", pb.POLICY_CONTINUE, 2, [made(S.FAILED), made(S.RUNNING)],
     d.Verdict(Policy.CONTINUE, 2, 1)),
    ("unspecified is continue", pb.FAILURE_POLICY_UNSPECIFIED, 2, [made(S.FAILED)], d.Verdict(Policy.CONTINUE, 1, 1)),
    ("refine drops the failed", pb.POLICY_REFINE, 2,
     [made(S.FAILED, name="a"), made(S.RUNNING, name="b"), made(S.FAILED, "g1", name="c")],
     d.Verdict(Policy.REFINE, 3, 2, {"g0": 1, "g1": 1}, drop=("a", "c"))),
    ("rollback of a scale-out drops what it made", pb.POLICY_ROLLBACK, 2,
     [made(S.FAILED, name="new-2"), made(S.RUNNING, name="new-1"), made(S.RUNNING, origin=1, name="old")],
     d.Verdict(Policy.ROLLBACK, 2, 1, {"g0": 2}, drop=("new-1", "new-2"))),
    ("rollback of the creation deletes the MCIS", pb.POLICY_ROLLBACK, 1,
     [made(S.FAILED, origin=1, name="a"), made(S.RUNNING, origin=1, name="b")],
     d.Verdict(Policy.ROLLBACK, 2, 1, {"g0": 2}, True, ("a", "b"))),
    ("older VMs are not judged", pb.POLICY_REFINE, 2, [made(S.FAILED, origin=1)], d.Verdict(Policy.CONTINUE, 0, 0)),
]


@pytest.mark.parametrize(("case", "policy", "op", "live", "verdict"), POLICY_CASES, ids=[c[0] for c in POLICY_CASES])
def test_failure_policy_table(case: str, policy: int, op: int, live: list[pb.McisVm], verdict: d.Verdict) -> None:
    mcis = settled_mcis(policy, op, (3, 2))
    assert d.judge(mcis, live) == verdict
    d.apply_verdict(mcis, verdict)
    assert mcis.policy_op == 0
    if verdict.policy is Policy.CONTINUE:
        assert mcis.generation == op and not mcis.intents
        return
    assert mcis.generation == op + 1 and [sg.size for sg in mcis.subgroups] == [
        3 - verdict.shrink.get("g0", 0), 2 - verdict.shrink.get("g1", 0)]
    if verdict.delete_mcis:
        assert mcis.deleting and not mcis.intents
    else:  # the dropped VMs are named, so exactly they go (not whichever membership would pick)
        assert [(i.action, i.vm, i.force, i.id) for i in mcis.intents] == [
            (pb.ACTION_REFINE, n, True, op + 1) for n in verdict.drop]


def test_a_rollback_of_a_scale_out_removes_what_it_made_not_an_older_failed_vm() -> None:
    """Bug: the rollback shrank sizes and membership then removed failed-first — an older failed VM
    instead of a new running one. Now the new VMs are named and removed by the next pass."""
    old_failed = vm(S.FAILED, subgroup="g0", index=1, origin=1, name="g0-1")
    old = vm(S.RUNNING, subgroup="g0", index=2, origin=1, name="g0-2")
    new_ok = vm(S.RUNNING, subgroup="g0", index=3, origin=2, name="g0-3")
    new_failed = vm(S.FAILED, subgroup="g0", index=4, origin=2, name="g0-4")
    records = {v.name: v for v in (old_failed, old, new_ok, new_failed)}
    mcis = pb.Mcis(policy=pb.POLICY_ROLLBACK, policy_op=2, generation=2, subgroups=[sg("g0", 4)])
    after = d.summarize(mcis, list(records.values()))
    assert after.subgroups[0].size == 2 and d.pass_kind(after) is Pass.INTENTS
    aims = d.retargets(after.intents, records)
    assert {k for k, a in aims.items() if a.remove} == {"g0-3", "g0-4"}
    for k in aims:
        records[k].removing = True
    assert d.membership(after, records) == d.Membership()  # nothing else goes, nothing is added


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
    ("failed, still to be terminated", [vm(), vm(S.FAILED, S.TERMINATED, pb.ACTION_TERMINATE)], 2, False),
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
        observed = d.observe(record, spb.Vm(status=status))
        record.status = status
        assert (observed.target_action == pb.ACTION_NONE) == (d.reached_target(record) or action == pb.ACTION_NONE)


def test_observe_clears_the_error_on_reaching_the_target_but_keeps_the_agent_note() -> None:
    record = vm(S.CREATING, S.RUNNING, pb.ACTION_CREATE, error="refused once")
    assert d.observe(record, spb.Vm(status=S.RUNNING)).error == ""
    noted = vm(S.CREATING, S.RUNNING, pb.ACTION_CREATE, error=d.AGENT_NOTE + "dragonfly away")
    assert d.observe(noted, spb.Vm(status=S.RUNNING)).error.startswith(d.AGENT_NOTE)
    short = vm(S.CREATING, S.SUSPENDED, pb.ACTION_SUSPEND, error="why")
    assert d.observe(short, spb.Vm(status=S.RUNNING)).error == "why"


# ------------------------------------------------------------------------ the incremental tally

def random_vm() -> st.SearchStrategy[pb.McisVm]:
    return st.builds(lambda s, t, a, req, rem: pb.McisVm(status=s, target_status=t, target_action=a, requested=req,
                                                         removing=rem),
                     st.sampled_from(STATUSES), st.sampled_from([S.RUNNING, S.SUSPENDED, S.TERMINATED]),
                     st.sampled_from(ACTIONS), st.booleans(), st.booleans())


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.none() | random_vm()), max_size=60), st.integers(0, 8))
def test_tally_kept_from_events_equals_a_fresh_count(events: list[tuple[int, pb.McisVm | None]], size: int) -> None:
    """Records written, rewritten (also twice with the same value) and deleted in any order: the
    tally's counts, leaving and undone numbers, and so completion and summary, are those of the
    records left, counted afresh."""
    tally = Tally(d.vm_done)
    records: dict[str, pb.McisVm] = {}
    for n, record in events:
        key = f"k{n}"
        if record is None:
            records.pop(key, None)
            tally.gone(key)
        else:
            records[key] = record
            tally.saw(key, record)
    fresh = Tally.of(records.values(), d.vm_done)
    assert (tally.counts, tally.removing, tally.undone) == (fresh.counts, fresh.removing, fresh.undone)
    mcis = pb.Mcis(subgroups=[sg("g", size)], generation=2)
    assert d.complete_from(mcis, tally) is d.complete(mcis, list(records.values()))
    live = [v for v in records.values() if not v.removing]
    assert d.summarize_from(mcis, tally, lambda: live) == d.summarize(mcis, list(records.values()))
    assert tally.take_dirty() <= set(records) and not tally.dirty


def test_observe_marks_a_vm_spider_knows_as_asked_for() -> None:
    # A poll that listed spider before the create reached it clears `requested` (ask again); the
    # create's answer, written after, must set it back, or the VM is never polled nor asked again.
    record = vm(S.CREATING, S.RUNNING, pb.ACTION_CREATE, requested=False)
    made = d.observe(record, spb.Vm(iid=common.IID(name="v", csp_id="i-1"), status=S.CREATING))
    assert made.requested and made.iid.csp_id == "i-1"
    assert d.needs_poll(made, full=False)
    assert not d.ask_again(made)
