"""The agent's supervisor with real short-lived processes in a temp directory: env and files,
backoff and crash loops, health thresholds, restarts after a kill, replacing a set, stopping
with SIGTERM then SIGKILL, persistence across an agent restart, bounded logs, and refused specs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dragonfly.agent.probes import Verdict
from dragonfly.agent.supervisor import LogRing, Supervisor
from dragonfly.protocol.workspec import HealthSpec, RestartSpec, SpecError, WorkloadSpec, parse_set, set_body
from services.processes import free_port
from tests.support.workloads import SERVER

PY = sys.executable
FAST = RestartSpec(initial_backoff_s=0.05, max_backoff_s=0.2, crash_loop_restarts=4, crash_loop_window_s=60)
PROBE = HealthSpec(kind="http", http_path="/healthz", interval_s=0.05, timeout_s=1, healthy_threshold=2,
                   unhealthy_threshold=2)


async def until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        await asyncio.sleep(0.02)


def server(wid: str, port: int, revision: int = 1, ok: bool = True, **kw: object) -> WorkloadSpec:
    files = {"server.py": SERVER.encode()}
    if ok:
        files["ok"] = b""
    return WorkloadSpec(id=wid, app="web", revision=revision, command=f"{PY} server.py", files=files,
                        ports=(port,), health=PROBE, restart=FAST, **kw)  # type: ignore[arg-type]


def status(sup: Supervisor, wid: str) -> dict[str, object]:
    return sup.running[wid].status()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie until its parent (this test's loop) reaps it: count it as gone.
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


async def test_env_files_and_logs(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, "127.0.0.1", {"PATH": os.environ["PATH"]})
    spec = WorkloadSpec(id="echo-1", app="demo", revision=7, command="echo $PORT $HOST $CB_APP $CB_REVISION "
                        "$CB_INSTANCE $GREETING; cat conf/a.txt; echo oops >&2; sleep 30",
                        env={"GREETING": "hello"}, files={"conf/a.txt": b"content"}, ports=(8123, 8124))
    await sup.set("demo", [spec])
    await until(lambda: "oops" in (sup.logs("echo-1", 10) or ("", ""))[1], "stderr")
    out, err = sup.logs("echo-1", 10) or ("", "")
    assert out == "8123 127.0.0.1 demo 7 echo-1 hello\ncontent\n" and err == "oops\n"
    assert status(sup, "echo-1")["state"] == "RUNNING" and status(sup, "echo-1")["healthy"] is True
    assert (tmp_path / "run" / "echo-1" / "conf" / "a.txt").read_bytes() == b"content"
    await sup.stop_all()


async def test_backoff_doubles_then_crash_loop(tmp_path: Path) -> None:
    messages: list[str] = []
    sup = Supervisor(tmp_path, "127.0.0.1")
    sup.on_change = lambda: messages.append(str(sup.running["bad"].message)) if "bad" in sup.running else None
    await sup.set("web", [WorkloadSpec(id="bad", app="web", revision=1, command="exit 3", restart=FAST)])
    await until(lambda: status(sup, "bad")["state"] == "CRASH_LOOP", "crash loop")
    got = status(sup, "bad")
    assert got["restarts"] == 3 and got["last_exit_code"] == 3 and got["healthy"] is False
    delays = [m.split("restarting in ")[1] for m in dict.fromkeys(messages) if "restarting in" in m]
    assert delays == ["0.05s", "0.1s", "0.2s"]  # doubling, capped at max_backoff_s
    assert "4 times within 60s" in str(got["message"])
    await sup.stop_all()


async def test_health_thresholds_and_restart_after_kill(tmp_path: Path) -> None:
    port = free_port()
    sup = Supervisor(tmp_path, "127.0.0.1")
    [first] = await sup.set("web", [server("web-1", port)])
    assert first["state"] == "STARTING" and first["healthy"] is False
    await until(lambda: status(sup, "web-1")["healthy"] is True, "healthy")
    assert status(sup, "web-1")["state"] == "RUNNING" and float(str(status(sup, "web-1")["healthy_time"])) > 0
    # Failing probes: unhealthy after two in a row, the process keeps running.
    (tmp_path / "run" / "web-1" / "ok").unlink()
    await until(lambda: status(sup, "web-1")["healthy"] is False, "unhealthy")
    assert status(sup, "web-1")["state"] == "RUNNING" and status(sup, "web-1")["restarts"] == 0
    (tmp_path / "run" / "web-1" / "ok").write_bytes(b"")
    await until(lambda: status(sup, "web-1")["healthy"] is True, "healthy again")
    # Killed: restarted (a new process), healthy again.
    pid = int(str(status(sup, "web-1")["pid"]))
    os.killpg(pid, signal.SIGKILL)
    await until(lambda: status(sup, "web-1")["restarts"] == 1 and status(sup, "web-1")["healthy"] is True,
                "restarted and healthy")
    assert status(sup, "web-1")["pid"] not in (0, pid) and status(sup, "web-1")["last_exit_code"] == -9
    await sup.stop_all()


async def test_replacing_a_set_stops_the_old_and_starts_the_new(tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    sup = Supervisor(tmp_path, "127.0.0.1")
    await sup.set("web", [server("web-a", port_a)])
    # Another app's workloads are left alone by web's sets.
    await sup.set("other", [WorkloadSpec(id="other-1", app="other", revision=1, command="sleep 30")])
    await until(lambda: status(sup, "web-a")["healthy"] is True, "a healthy")
    old_pid = int(str(status(sup, "web-a")["pid"]))
    statuses = await sup.set("web", [server("web-b", port_b, revision=2)])
    assert [s["id"] for s in statuses] == ["web-b"] and "web-a" not in sup.running
    assert not alive(old_pid) and not (tmp_path / "run" / "web-a").exists()
    await until(lambda: status(sup, "web-b")["healthy"] is True, "b healthy")
    assert status(sup, "other-1")["state"] == "RUNNING"
    # The same ID with a changed spec is restarted with it; an unchanged one is left running.
    pid_b = status(sup, "web-b")["pid"]
    await sup.set("web", [server("web-b", port_b, revision=2)])
    assert status(sup, "web-b")["pid"] == pid_b
    await sup.set("web", [server("web-b", port_b, revision=3)])
    assert status(sup, "web-b")["revision"] == 3 and status(sup, "web-b")["pid"] != pid_b
    # IDs are unique per VM, across apps.
    with pytest.raises(SpecError, match="already used by app 'web'"):
        await sup.set("other", [WorkloadSpec(id="web-b", app="other", revision=1, command="sleep 1")])
    await sup.set("web", [])
    assert "web-b" not in sup.running and sup.statuses()[0]["id"] == "other-1"
    await sup.stop_all()


async def test_stop_kills_a_process_that_ignores_sigterm_after_the_grace(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, "127.0.0.1")
    stubborn = WorkloadSpec(id="stubborn", app="web", revision=1, stop_grace_s=0.3,
                            command=f"{PY} -c \"import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                    f"print('up', flush=True); time.sleep(60)\"")
    await sup.set("web", [stubborn])
    await until(lambda: "up" in (sup.logs("stubborn", 5) or ("", ""))[0], "started")
    pid = int(str(status(sup, "stubborn")["pid"]))
    await sup.set("web", [])
    assert not alive(pid)


async def test_an_agent_restart_starts_the_persisted_sets_and_kills_leftovers(tmp_path: Path) -> None:
    port = free_port()
    sup = Supervisor(tmp_path, "127.0.0.1")
    await sup.set("web", [server("web-1", port)])
    await until(lambda: status(sup, "web-1")["healthy"] is True, "healthy")
    await sup.stop_all()
    # An agent that died left a process group running in a workload's directory: its successor
    # kills it before starting the persisted sets (it would hold the port).
    leftover = subprocess.Popen(["sleep", "60"], cwd=tmp_path / "run" / "web-1", start_new_session=True)
    (tmp_path / "run" / "web-1" / "pgid").write_text(str(leftover.pid))
    again = Supervisor(tmp_path, "127.0.0.1")
    await again.start()
    assert leftover.wait(5) == -signal.SIGKILL
    await until(lambda: status(again, "web-1")["healthy"] is True, "healthy after the restart")
    await again.set("web", [])
    assert not (tmp_path / "apps" / "web.json").exists()
    await again.stop_all()


def test_verdict_thresholds() -> None:
    v = Verdict(healthy_threshold=2, unhealthy_threshold=3)
    seen = [(v.observe(p), v.healthy) for p in (True, False, True, True, False, False, True, False, False, False)]
    assert seen == [(False, False), (False, False), (False, False), (True, True), (False, True), (False, True),
                    (False, True), (False, True), (False, True), (True, False)]


def test_log_ring_is_bounded_in_lines_and_bytes() -> None:
    ring = LogRing(max_lines=3, max_bytes=1000)
    ring.feed(b"a\nb\nc\nd\npartial")
    assert ring.tail(10) == "b\nc\nd\npartial\n"
    ring.flush()
    assert ring.tail(2) == "d\npartial\n"
    small = LogRing(max_lines=100, max_bytes=10)
    small.feed(b"12345\n67890\nabcde\n")
    assert small.tail(10) == "67890\nabcde\n" and small.bytes == 10
    huge = LogRing()
    huge.feed(b"x" * 100_000)
    assert len(huge.lines) == 1 and len(huge.lines[0]) == 8192


@pytest.mark.parametrize(("change", "error"), [
    (lambda b: b["workloads"][0].update(files={"../x": b["workloads"][0]["files"]["a"]}), "must be relative"),
    (lambda b: b["workloads"][0].update(env={"PORT": "1"}), "set by the agent"),
    (lambda b: b["workloads"][0].update(command=" "), "command is required"),
    (lambda b: b["workloads"][0].update(ports=[70000]), "ports"),
    (lambda b: b["workloads"][0].update(id="Bad_ID"), "id must be"),
    (lambda b: b["workloads"][0]["health"].update(kind="http", http_path="x"), "http_path"),
    (lambda b: b["workloads"][0]["restart"].update(initial_backoff_s=-1), "initial_backoff_s"),
    (lambda b: b["blobs"].update({next(iter(b["blobs"])): "aGVsbG8="}), "SHA-256"),
    (lambda b: b["workloads"].append(dict(b["workloads"][0])), "unique"),
    (lambda b: b.update(app="Web"), "app must be"),
])
def test_bad_specs_are_refused_whole(change: Callable[[dict], object], error: str) -> None:
    body = set_body("web", [WorkloadSpec(id="w-1", app="web", revision=1, command="true", files={"a": b"x"},
                                         ports=(8080,))])
    assert parse_set(body)[1][0].files == {"a": b"x"}
    change(body)
    with pytest.raises(SpecError, match=error):
        parse_set(body)


def test_files_are_capped_at_one_mib_per_workload() -> None:
    big = WorkloadSpec(id="w-1", app="web", revision=1, command="true",
                       files={"a": b"x" * (1 << 19), "b": b"y" * ((1 << 19) + 1)})
    with pytest.raises(SpecError, match="over the cap"):
        parse_set(set_body("web", [big]))
