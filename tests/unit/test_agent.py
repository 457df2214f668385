"""cb-agent's parts without NATS: user-data, backlog, commands, metric sources."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from dragonfly.agent.backlog import Backlog
from dragonfly.agent.commands import Runner
from dragonfly.agent.sources import FIELDS, GROUPS, HostSource, TwinSource
from dragonfly.protocol import config
from dragonfly.protocol.subjects import VmId
from services import natsauth


def creds_text() -> str:
    creds = natsauth.Authority.create().signer.issue("x", VmId("a", "b", "c").permissions())
    return natsauth.format_creds(creds.jwt, creds.seed)


def test_user_data_round_trip_and_errors() -> None:
    text = config.render(VmId("ns1", "web", "vm-1"), "nats://127.0.0.1:4222", creds_text(), 2.0)
    assert config.is_agent_user_data(text)
    cfg = config.parse(text)
    assert cfg.vm.key == "ns1.web.vm-1" and cfg.interval_s == 2.0
    assert not config.is_agent_user_data("#!/bin/sh\necho hi")
    with pytest.raises(ValueError, match="lacks nats_url, creds"):
        config.parse('{"cb_agent": {"ns": "a", "mcis": "b", "vm": "c"}}')
    with pytest.raises(ValueError, match="not a valid name"):
        config.parse(text.replace("vm-1", "Vm.1"))


def test_backlog_keeps_the_newest_and_counts_drops() -> None:
    backlog = Backlog(3)
    for i in range(5):
        backlog.push(bytes([i]))
    assert len(backlog) == 3 and backlog.dropped == 2 and backlog.peek() == b"\x02"
    backlog.pop()
    assert backlog.peek() == b"\x03"


async def test_commands_output_exit_timeout_and_limit(tmp_path: Path) -> None:
    runner = Runner(str(tmp_path), {"CB_VM_IP": "127.0.9.9"})
    ok = await runner.run("echo out; echo err >&2; pwd; echo $CB_VM_IP; exit 3", 5, 1000)
    assert (ok.exit_code, ok.stderr, ok.timed_out) == (3, "err\n", False)
    assert ok.stdout.split() == ["out", str(tmp_path), "127.0.9.9"]
    slow = await runner.run("sleep 30", 0.3, 1000)
    assert slow.timed_out and "timed out" in slow.error and slow.duration_s < 2
    big = await runner.run("head -c 100000 /dev/zero | tr '\\0' x", 5, 1000)
    assert len(big.stdout) == 1000 and big.stdout_truncated and big.exit_code == 0


async def test_a_background_server_does_not_hold_the_answer_and_stops_with_the_vm(tmp_path: Path) -> None:
    runner = Runner(str(tmp_path))
    t0 = time.monotonic()
    res = await runner.run("sleep 60 & echo started", 10, 1000)
    assert res.stdout == "started\n" and time.monotonic() - t0 < 2
    assert len(runner.pgids) == 1
    runner.stop_all()
    await asyncio.sleep(0.1)
    runner.forget_dead()
    assert runner.pgids == set()


def test_sources_give_every_group_with_units() -> None:
    spec = config.TwinSpec(ip="127.0.1.1", vcpu=2, memory_bytes=4 << 30, disk_bytes=50 << 30, sandbox="/tmp")
    now = [100.0]
    twin = TwinSource(spec, "ns.m.vm", lambda: [], clock=lambda: now[0])
    first = twin.sample()
    now[0] += 1.0
    second = twin.sample()
    for groups in (first, second, HostSource().sample()):
        assert set(groups) == set(GROUPS)
        # What alert rules may name (dragonfly refuses any other field).
        assert {g: tuple(v) for g, v in groups.items()} == FIELDS
        assert all(k.endswith(("_percent", "_bytes", "_per_second", "_mhz", "cores")) for g in groups.values() for k in g)
    assert second["memory"]["total_bytes"] == 4 << 30 and second["cpu"]["cores"] == 2
    assert 0 <= second["cpu"]["utilization_percent"] <= 100
    assert second["network"]["recv_bytes_per_second"] > 0 and first["network"]["recv_bytes_per_second"] == 0
