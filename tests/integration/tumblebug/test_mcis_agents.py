"""An MCIS with agents: every VM boots its own cb-agent (CloudTwin guests), tumblebug shows
their health, runs commands through them, and asks dragonfly for their metrics; a VM that
goes takes its agent's credential with it."""

from __future__ import annotations

import asyncio
import time

import grpc
import nats as nats_py
from nats.aio.client import Client

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as tw_grpc
from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from dragonfly.protocol import config
from services.rpc.client import channel
from tests import servers
from tests.helpers import expect_error
from tests.integration.tumblebug.helpers import connections, namespace
from tests.integration.tumblebug.monitored import mcis_with_healthy_agents


async def test_agents_commands_and_metrics(monitored_tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                           spider_client: spider_pb2_grpc.SpiderStub,
                                           cloudtwin_process: servers.Server) -> None:
    tb = monitored_tumblebug_client
    ns = await namespace(tb)
    vms = await mcis_with_healthy_agents(tb, spider_client, cloudtwin_process, ns, "mon", 2)

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


async def agent_configs(twin: servers.Server, conn: servers.TwinConnection) -> dict[str, config.AgentConfig]:
    """VM name → the agent configuration in its user-data, as the cloud holds it (what anyone who
    can read the VM's user-data has)."""
    async with channel(twin.address) as ch:
        page = await tw_grpc.CloudTwinStub(ch).ListResources(tw.ListResourcesRequest(
            provider=conn.provider, region=conn.region, kind=tw.VM, page_size=1000),
            metadata=(("x-twin-access-key", conn.access_key), ("x-twin-secret-key", conn.secret_key)))
    found = [config.parse(r.vm.user_data) for r in page.resources if r.vm.user_data]
    return {c.vm.vm: c for c in found}


async def connect_as(agent: config.AgentConfig, closed: asyncio.Event | None = None) -> Client:
    async def on_closed() -> None:
        if closed is not None:
            closed.set()

    return await nats_py.connect(agent.nats_url, allow_reconnect=False, closed_cb=on_closed,
                                 inbox_prefix=agent.vm.inbox_prefix, **agent.creds.client_options())


async def refused(agent: config.AgentConfig) -> bool:
    try:
        nc = await connect_as(agent)
    except Exception as err:  # nats-py raises its base Error with the server's words
        assert "authorization" in str(err).lower(), err
        return True
    await nc.close()
    return False


async def refused_within(agent: config.AgentConfig, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not await refused(agent):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def test_a_removed_vm_loses_its_agent_credential(monitored_tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                                       spider_client: spider_pb2_grpc.SpiderStub,
                                                       cloudtwin_process: servers.Server) -> None:
    tb = monitored_tumblebug_client
    ns = await namespace(tb)
    conn = (await connections(spider_client, cloudtwin_process, 1))[0]
    await mcis_with_healthy_agents(tb, spider_client, cloudtwin_process, ns, "rev", 2, conn)
    agents = await agent_configs(cloudtwin_process, conn)
    assert sorted(agents) == ["g-1", "g-2"]
    # Someone holding g-2's user-data speaks as g-2 beside its agent, until the VM goes.
    closed = asyncio.Event()
    await connect_as(agents["g-2"], closed)

    await tb.ScaleSubgroup(pb.ScaleSubgroupRequest(namespace=ns, mcis="rev", subgroup="g", size=1, wait=True))
    await asyncio.wait_for(closed.wait(), 15)
    assert await refused(agents["g-2"])
    assert not await refused(agents["g-1"])

    await tb.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name="rev", terminate=True, wait=True))
    assert await refused_within(agents["g-1"], 15)
