"""An MCIS with agents: every VM boots its own cb-agent (CloudTwin guests), tumblebug shows
their health, runs commands through them, and asks dragonfly for their metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest_asyncio

from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from tests import servers
from tests.helpers import expect_error
from tests.integration.tumblebug.helpers import namespace
from tests.integration.tumblebug.monitored import mcis_with_healthy_agents


@pytest_asyncio.fixture(loop_scope="session")
async def monitored(monitored_server: servers.Server) -> AsyncIterator[tumblebug_pb2_grpc.TumblebugStub]:
    async with grpc.aio.insecure_channel(monitored_server.address) as ch:
        yield tumblebug_pb2_grpc.TumblebugStub(ch)


async def test_agents_commands_and_metrics(monitored: tumblebug_pb2_grpc.TumblebugStub,
                                           stub: spider_pb2_grpc.SpiderStub, cloudtwin: servers.Server) -> None:
    tb = monitored
    ns = await namespace(tb)
    vms = await mcis_with_healthy_agents(tb, stub, cloudtwin, ns, "mon", 2)

    ran = await tb.RunMcisCommand(pb.McisCommandRequest(namespace=ns, name="mon",
                                                         command='echo "hello from $CB_VM_IP"; hostname'))
    assert [r.vm for r in ran.results] == ["g-1", "g-2"]
    ips = {v.name: v.private_ip for v in vms}
    for r in ran.results:
        assert not r.error and r.result.exit_code == 0
        assert f"hello from {ips[r.vm]}" in r.result.stdout  # each ran inside its own VM

    slow = await tb.RunMcisCommand(pb.McisCommandRequest(namespace=ns, name="mon", vm="g-1", command="sleep 5",
                                                          timeout_s=0.5))
    assert len(slow.results) == 1 and slow.results[0].result.timed_out
    assert "timed out" in slow.results[0].result.error
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, tb.RunMcisCommand(pb.McisCommandRequest(
        namespace=ns, name="mon", command="  ")), "command")

    deadline = time.monotonic() + 10
    while True:
        got = await tb.GetMcisMetrics(pb.McisMetricsRequest(namespace=ns, name="mon", group="cpu", duration="5m"))
        # Series are named by the VM's full identity, `{ns}.{mcis}.{vm}`.
        if {s.vm for s in got.series if s.points} == {"g-1", "g-2"} or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert {s.vm for s in got.series if s.points} == {"g-1", "g-2"}
    assert all("utilization_percent" in s.points[-1].values for s in got.series)

    suspended = await tb.SuspendMcis(pb.McisActionRequest(namespace=ns, name="mon", vm="g-2", wait=True))
    assert suspended.status_count.suspended == 1
    partial = await tb.RunMcisCommand(pb.McisCommandRequest(namespace=ns, name="mon", command="true"))
    by_vm = {r.vm: r for r in partial.results}
    assert by_vm["g-1"].result.exit_code == 0 and by_vm["g-2"].error == "VM is Suspended"
    await tb.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name="mon", terminate=True, wait=True))
