"""Failover's record rules: which subgroup belongs to which group, what is pinned, the move's MCIS
change and the bounded event list."""

from __future__ import annotations

from cbapi.common.v1 import common_pb2 as common
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from tumblebug.mcis.events import MAX_EVENTS, add_event
from tumblebug.mcis.failovers import apply_move, group_of, new_subgroup_name, pinned, tried_specs
from tumblebug.placement import Candidate, CandidateTable
from tumblebug.placement.request import Keep


def test_group_of_reads_the_placement_names() -> None:
    groups = ["web", "web-db", "db"]
    assert group_of("web", groups) == "web"
    assert group_of("web-3", groups) == "web"
    assert group_of("web-db", groups) == "web-db"
    assert group_of("web-db-2", groups) == "web-db"  # the longest group name that fits
    assert group_of("cache", groups) is None  # added by hand: not failover's
    assert group_of("web-x", groups) is None


def test_tried_and_names() -> None:
    vm = pb.McisVm(failovers=["a+s -> b+s (region): no capacity", "b+s -> c+s (cloud): quota"])
    assert tried_specs(vm) == ["a+s", "b+s"]
    assert new_subgroup_name("web", ["web", "web-2", "web-4"]) == "web-3"


def _table() -> CandidateTable:
    return CandidateTable.build([Candidate(c, "p", c, "s", 2, 4.0, 0.1, "x86_64", 0.0, 0.0) for c in ("a", "b")])


def test_pinned_counts_the_vms_in_place() -> None:
    mcis = pb.Mcis(placement=pb.PlacementRequest(groups=[pb.PlacementGroup(name="web", count=5)]), subgroups=[
        pb.Subgroup(name="web-1", connection="a", csp_spec="s"), pb.Subgroup(name="web-2", connection="b", csp_spec="s"),
        pb.Subgroup(name="mine", connection="b", csp_spec="s")])
    vms = {"k1": pb.McisVm(subgroup="web-1", status=common.CREATING),  # the refused VM itself
           "k2": pb.McisVm(subgroup="web-1", status=common.RUNNING),  # on the refused spec: out
           "k3": pb.McisVm(subgroup="web-2", status=common.RUNNING),
           "k4": pb.McisVm(subgroup="web-2", status=common.FAILED),
           "k5": pb.McisVm(subgroup="web-2", status=common.CREATING, removing=True),
           "k6": pb.McisVm(subgroup="mine", status=common.RUNNING)}  # a hand-made subgroup
    assert pinned(mcis, vms, "k1", "a+s", _table()) == [Keep("web", "b+s", 1)]


def test_a_move_shrinks_one_subgroup_and_grows_another() -> None:
    mcis = pb.Mcis(generation=4, subgroups=[pb.Subgroup(name="web", connection="a", csp_spec="s", size=3)])
    vm = pb.McisVm(name="web-2", subgroup="web")
    new = apply_move(mcis, vm, pb.Subgroup(name="web-2", connection="b", csp_spec="s", size=7), "a+s -> b+s")
    assert [(sg.name, sg.size) for sg in mcis.subgroups] == [("web", 2), ("web-2", 1)] and new.size == 1
    apply_move(mcis, pb.McisVm(name="web-3", subgroup="web"), new, "a+s -> b+s")
    assert [(sg.name, sg.size) for sg in mcis.subgroups] == [("web", 1), ("web-2", 2)]
    assert mcis.generation == 6 and [e.vm for e in mcis.events] == ["web-2", "web-3"]
    assert all(e.kind == "failover" for e in mcis.events)


def test_events_are_bounded() -> None:
    mcis = pb.Mcis()
    for i in range(MAX_EVENTS + 7):
        add_event(mcis, "failover", f"v{i}", "m")
    assert len(mcis.events) == MAX_EVENTS and mcis.events[0].vm == "v7" and mcis.events[-1].vm == f"v{MAX_EVENTS + 6}"
