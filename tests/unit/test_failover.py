"""Failover decisions: the failed VM goes to the best candidate that keeps the request's constraints."""

from __future__ import annotations

from services import errors
from tumblebug.failover import Move, Stay, decide, is_capacity_error
from tumblebug.placement import Candidate, CandidateTable
from tumblebug.placement.request import Constraints, Group, Keep, PlanRequest


def table() -> CandidateTable:
    def c(conn: str, provider: str, region: str, price: float) -> Candidate:
        return Candidate(conn, provider, region, "s", 2, 4.0, price, "x86_64", 37.0, 127.0)

    return CandidateTable.build([c("a1", "p1", "r1", 0.1), c("a2", "p1", "r2", 0.2), c("b1", "p2", "r3", 0.3)])


def request(**cons: float) -> PlanRequest:
    return PlanRequest(groups=(Group("web", 2),), constraints=Constraints(**cons))  # type: ignore[arg-type]


def test_moves_within_the_provider_when_region() -> None:
    got = decide(table(), request(min_providers=2), "region", "web", "a1+s", "no capacity",
                 placed=[Keep("web", "b1+s", 1)])
    assert got == Move("a1+s", "a2+s", "region", "no capacity")
    assert got.note() == "a1+s -> a2+s (region): no capacity"


def test_leaves_the_provider_only_when_cloud() -> None:
    t = table()
    # A spec this VM failed on before stays out, even where another VM of the request runs.
    again = decide(t, request(), "region", "web", "a2+s", "quota", placed=[Keep("web", "a1+s", 1)], tried=["a1+s"])
    assert isinstance(again, Stay)
    no_p1 = decide(t, request(), "region", "web", "a2+s", "quota", placed=[Keep("web", "b1+s", 1)], tried=["a1+s"])
    assert isinstance(no_p1, Stay) and "p1" in no_p1.reason
    cloud = decide(t, request(), "cloud", "web", "a2+s", "quota", placed=[Keep("web", "b1+s", 1)], tried=["a1+s"])
    assert cloud == Move("a2+s", "b1+s", "cloud", "quota")


def test_keeps_the_constraints_or_stays() -> None:
    # Budget 0.45/h with b1 (0.3) pinned: a2 (0.2) would break it, so no move keeps the request.
    got = decide(table(), request(budget_per_hour=0.45), "cloud", "web", "a1+s", "no capacity",
                 placed=[Keep("web", "b1+s", 1)])
    assert isinstance(got, Stay) and "infeasible" in got.reason


def test_bounded_and_off() -> None:
    t = table()
    assert decide(t, request(), "none", "web", "a1+s", "x", placed=[]) == Stay("failover is none")
    used = decide(t, request(), "cloud", "web", "a1+s", "x", placed=[], tried=["a2+s", "b1+s"], max_moves=2)
    assert isinstance(used, Stay) and "at most 2" in used.reason


def test_capacity_errors_are_the_clouds_own() -> None:
    assert is_capacity_error(errors.Unavailable("no capacity", "InsufficientInstanceCapacity"))
    assert is_capacity_error(errors.ResourceExhausted("quota", "VcpuLimitExceeded"))
    assert not is_capacity_error(errors.ResourceExhausted("slow down", "RequestLimitExceeded"))
    assert not is_capacity_error(errors.Unavailable("spider is down"))
