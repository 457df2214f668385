"""Dragonfly's side of workloads: reported statuses are checked before they are stored, and a set
request is checked as the agent will check it."""

from __future__ import annotations

import pytest

from cbapi.dragonfly.v1 import workloads_pb2 as wpb
from dragonfly.workloads import set_body, to_status
from services import errors

GOOD = {"id": "web-1", "app": "web", "revision": 2, "state": "RUNNING", "healthy": True, "restarts": 1,
        "last_exit_code": 0, "pid": 42, "started_time": 1.5, "healthy_time": 0, "update_time": 2.0,
        "message": "", "ip": "127.0.0.9", "ports": [8080]}


def test_a_reported_status_becomes_the_contract_message() -> None:
    s = to_status(GOOD)
    assert s.state == wpb.WORKLOAD_RUNNING and s.pid == 42 and s.started_time.ToNanoseconds() == 1_500_000_000
    assert not s.HasField("healthy_time") and list(s.ports) == [8080]


@pytest.mark.parametrize("bad", [{**GOOD, "state": "DANCING"}, {**GOOD, "pid": "42"}, {**GOOD, "restarts": True},
                                 {k: v for k, v in GOOD.items() if k != "id"}, {**GOOD, "ports": ["x"]}, []])
def test_malformed_statuses_are_refused(bad: object) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        to_status(bad)  # type: ignore[arg-type]


def test_a_set_is_checked_before_it_is_sent() -> None:
    ok = wpb.SetWorkloadsRequest(app="web", workloads=[wpb.Workload(id="w-1", command="true", files={"a": b"x"},
                                                                    ports=[80])])
    body = set_body(ok)
    assert body["workloads"][0]["app"] == "web" and list(body["blobs"].values()) == ["eA=="]
    with pytest.raises(errors.InvalidArgument, match="http probe needs a port"):
        set_body(wpb.SetWorkloadsRequest(app="web", workloads=[wpb.Workload(
            id="w-1", command="true", health=wpb.WorkloadHealthCheck(http_path="/"))]))
