"""The endpoint's pure parts: slot plans, config rendering, `show stat` parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from ladybug.endpoint.config import Files, HealthCheck, check_app_name, render
from ladybug.endpoint.runtime import parse_stat
from ladybug.endpoint.settings import EndpointSettings
from ladybug.endpoint.slots import Backend, Slot, TooFewSlots, plan, strays

A = Backend("a", "127.0.0.2", 8080)
B = Backend("b", "127.0.0.3", 8080)
C = Backend("c", "127.0.0.4", 8080)


def test_new_instances_take_free_slots_and_start_down() -> None:
    p = plan({}, [A, B], 4)
    assert {i: s.index for i, s in p.assignment.items()} == {"a": 1, "b": 2} and p.fresh == [1, 2]
    assert p.commands[:4] == ["set server app/s1 state maint", "set server app/s1 addr 127.0.0.2 port 8080",
                              "set server app/s1 weight 100",
                              "set server app/s1 state ready; set server app/s1 health down"]


def test_unchanged_set_needs_no_command_and_weight_or_drain_one_each() -> None:
    before = plan({}, [A, B], 4).assignment
    assert plan(before, [A, B], 4).commands == []
    p = plan(before, [Backend("a", A.ip, A.port, weight=7), Backend("b", B.ip, B.port, drain=True)], 4)
    assert p.commands == ["set server app/s1 weight 7", "set server app/s2 state drain"] and p.fresh == []


def test_removals_come_last_and_freed_slots_are_reused_only_when_needed() -> None:
    before = plan({}, [A, B], 3).assignment
    p = plan(before, [A, C], 3)  # b leaves, c takes the never-used slot 3
    assert p.assignment["c"].index == 3 and p.commands[-1] == "set server app/s2 state maint"
    p = plan(before, [A, C], 2)  # no spare slot: c takes b's
    assert p.assignment["c"].index == 2 and p.commands[0] == "set server app/s2 state maint"


def test_a_moved_instance_is_placed_again_and_too_many_need_a_reload() -> None:
    before = {"a": Slot(1, A)}
    p = plan(before, [Backend("a", "127.0.0.9", 9000)], 2)
    assert p.fresh == [1] and "set server app/s1 addr 127.0.0.9 port 9000" in p.commands
    with pytest.raises(TooFewSlots) as e:
        plan(before, [A, B, C], 2)
    assert e.value.needed == 3


@pytest.mark.parametrize("bad, words", [
    ([Backend("a", "host.example", 80)], "not an IP address"),
    ([Backend("a", "127.0.0.2", 0)], "port 0"),
    ([Backend("a", "127.0.0.2", 80, weight=300)], "weight 300"),
    ([A, A], "listed twice"),
    ([Backend("a b", "127.0.0.2", 80)], "without spaces"),
])
def test_bad_backends_are_refused_with_a_reason(bad: list[Backend], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        plan({}, bad, 8)


def test_strays_are_taken_out() -> None:
    assert strays([1], [1, 3]) == ["set server app/s3 state maint"]


def test_config_has_checks_retries_and_slots(tmp_path: Path) -> None:
    text = render("web", "127.0.0.1", 8080, 3, HealthCheck("/health"), Files(tmp_path), EndpointSettings(),
                  {2: ("127.0.0.5", 9000, 10)})
    assert "bind 127.0.0.1:8080" in text and "option httpchk GET /health" in text
    assert "option redispatch 1" in text and "retries 3" in text and "mode 600 level admin" in text
    assert "server s1 0.0.0.0:0 disabled" in text and "server s2 127.0.0.5:9000 weight 10" in text
    assert "httpchk" not in render("web", "127.0.0.1", 8080, 1, HealthCheck(), Files(tmp_path), EndpointSettings())
    with pytest.raises(ValueError, match="start with '/'"):
        render("web", "127.0.0.1", 8080, 1, HealthCheck("health"), Files(tmp_path), EndpointSettings())
    with pytest.raises(ValueError, match="DNS label"):
        check_app_name("Web_1")


def test_show_stat_is_parsed_per_server() -> None:
    text = ("# pxname,svname,scur,stot,econ,eresp,wretr,wredis,status,weight,hrsp_1xx,hrsp_2xx,hrsp_3xx,"
            "hrsp_4xx,hrsp_5xx,hrsp_other,rtime,addr\n"
            "web,FRONTEND,0,9,,,,,OPEN,,0,9,0,0,0,0,,\n"
            "app,s1,2,10,1,0,3,1,UP,100,0,7,0,1,2,0,4,127.0.0.2:80\n"
            "app,BACKEND,2,10,1,0,3,1,UP,100,0,7,0,1,2,0,4,\n")
    s = parse_stat(text, "app")["s1"]
    assert (s.requests, s.responses_5xx, s.current_sessions, s.retries, s.avg_response_ms, s.addr) == \
        (10, 2, 2, 3, 4, "127.0.0.2:80")
