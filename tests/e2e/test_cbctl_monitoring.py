"""`cbctl exec` and `cbctl top` as a user runs them: real cbctl processes through a real gateway in
front of a tumblebug that installs agents (its own etcd, NATS and dragonfly), on CloudTwin VMs
whose cb-agents run the commands and send the metrics."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services.rpc.client import channel
from tests import servers
from tests.integration.tumblebug.helpers import namespace
from tests.integration.tumblebug.monitored import mcis_with_healthy_agents
from tests.support.cbctl import Cbctl, one_line_error
from tests.support.gateway import KEY, start_gateway

# The gateway's own deadline is short here, so a command longer than it passes only when cbctl
# asks for a longer one (Grpc-Timeout).
GATEWAY_DEADLINE_S = 2


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fleet(tmp_path_factory: pytest.TempPathFactory, spider_process: servers.Server,
                monitored_tumblebug_process: servers.Server,
                cloudtwin_process: servers.Server) -> AsyncIterator[tuple[str, dict[str, str], str]]:
    """(namespace, VM → private IP, gateway URL) of a 2-VM MCIS `mon` whose agents are healthy."""
    run_dir = tmp_path_factory.mktemp("cbctl-monitoring")
    async with channel(monitored_tumblebug_process.address) as ch, \
            channel(spider_process.address) as spider_ch:
        gw = await start_gateway(run_dir / "gateway", {"tumblebug": monitored_tumblebug_process.address},
                                 CB_GATEWAY_TIMEOUT_SECONDS=str(GATEWAY_DEADLINE_S))
        try:
            tb, stub = tumblebug_pb2_grpc.TumblebugStub(ch), spider_pb2_grpc.SpiderStub(spider_ch)
            ns = await namespace(tb)
            vms = await mcis_with_healthy_agents(tb, stub, cloudtwin_process, ns, "mon", 2)
            yield ns, {v.name: v.private_ip for v in vms}, gw.url
            await tb.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name="mon", terminate=True, wait=True))
        finally:
            gw.proc.stop()


@pytest.fixture
def cbctl(fleet: tuple[str, dict[str, str], str], tmp_path: Path) -> Cbctl:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CB_", "CBCTL_", "XDG_"))}
    env.update(HOME=str(home), CB_RUN_DIR=str(tmp_path / "run"), CB_GATEWAY_URL=fleet[2], CB_API_KEY=KEY,
               CB_NAMESPACE=fleet[0], COLUMNS="200")
    return Cbctl(env, home)


async def test_exec_prints_each_vms_output(cbctl: Cbctl, fleet: tuple[str, dict[str, str], str]) -> None:
    _, ips, _ = fleet
    ran = await cbctl.ok("exec", "mon", "--", 'echo "hello from $CB_VM_IP"; hostname')
    for vm, ip in ips.items():
        assert f"== {vm}: exit 0" in ran.out and f"hello from {ip}" in ran.out, ran.out
    assert ran.out.index("== g-1") < ran.out.index("== g-2")

    # Words are joined as ssh joins them, and the JSON view is the API's response.
    raw = json.loads((await cbctl.ok("exec", "mon", "--vm", "g-2", "-o", "json", "--", "echo", "a", "b")).out)
    assert [(r["vm"], r["result"]["stdout"]) for r in raw["results"]] == [("g-2", "a b\n")]


async def test_exec_says_which_vms_failed_and_exits_1(cbctl: Cbctl) -> None:
    failed = await cbctl("exec", "mon", "--", 'echo out; echo oops >&2; [ "$CB_VM_NAME" = g-1 ] || exit 3')
    assert failed.code == 1, failed
    assert "== g-1: exit 0" in failed.out and "== g-2: exit 3" in failed.out and "oops" in failed.out
    assert failed.err.startswith("1 of 2 VMs did not succeed: g-2: exit 3 ("), failed.err

    slow = await cbctl("exec", "mon", "--vm", "g-1", "--timeout", "0.5", "--", "sleep 5")
    assert slow.code == 1 and "g-1: timed out" in slow.out, slow


async def test_exec_longer_than_the_gateways_deadline_asks_for_more(cbctl: Cbctl) -> None:
    ran = await cbctl.ok("exec", "mon", "--vm", "g-1", "--timeout", "20", "--",
                         f"sleep {GATEWAY_DEADLINE_S + 1}; echo late")
    assert "late" in ran.out


async def test_exec_errors_are_one_line(cbctl: Cbctl) -> None:
    one_line_error(await cbctl("exec", "nosuch", "--", "hostname"), "nosuch", "NOT_FOUND")
    one_line_error(await cbctl("exec", "mon", "--subgroup", "zz", "--", "hostname"), "zz", "NOT_FOUND")
    one_line_error(await cbctl("exec", "mon", "--", "  "), "give the command")


async def test_top_shows_every_vms_last_metrics(cbctl: Cbctl) -> None:
    deadline = time.monotonic() + 30
    while True:  # the second agent's first point may still be on its way
        rows = json.loads((await cbctl.ok("top", "mon", "--once", "-o", "json")).out)
        if all(r["cpu_percent"] is not None and r["net_recv_bytes_per_second"] is not None for r in rows) \
                or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert sorted(r["vm"] for r in rows) == ["g-1", "g-2"]
    for row in rows:
        assert row["agent"] == "Healthy" and row["status"] == "Running", row
        assert 0 <= row["cpu_percent"] <= 100 and 0 < row["memory_percent"] <= 100 and row["memory_used_bytes"] > 0
    # Busiest first: a loaded VM moves to the top.
    assert [r["cpu_percent"] for r in rows] == sorted((r["cpu_percent"] for r in rows), reverse=True)

    shown = await cbctl.ok("top", "mon", "--count", "2", "--interval", "0.5", "--sort", "name")
    assert shown.out.count("mcis/mon: 2 VMs") == 2, shown.out
    lines = [line for line in shown.out.splitlines() if line.startswith("g-")]
    assert [line.split()[0] for line in lines] == ["g-1", "g-2", "g-1", "g-2"]
    assert "CPU%" in shown.out and "RX/s" in shown.out

    one_line_error(await cbctl("top", "nosuch", "--once"), "nosuch", "NOT_FOUND")
