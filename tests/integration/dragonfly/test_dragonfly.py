"""Dragonfly with real cb-agent processes over NATS with JWT auth: metrics within two
intervals, live reads, commands, per-MCIS interval, health, and what survives faults."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import grpc
import nats as nats_py
import pytest

from cbapi.dragonfly.v1 import dragonfly_pb2 as pb
from services import processes as procs
from services.rpc.client import channel
from tests import servers
from tests.integration.dragonfly.conftest import start_agent
from tests.support.dragonfly import Stub, eventually, start_dragonfly
from tests.support.nats import Nats, start_nats


async def new_agent(df: Stub, run_dir: Path, mcis: str = "", vm: str = "vm-1") -> tuple[pb.GetAgentRequest, procs.Proc]:
    ns, mcis = "ns-df", mcis or f"m-{uuid.uuid4().hex[:6]}"
    cred = await df.IssueAgentCredential(pb.IssueAgentCredentialRequest(ns=ns, mcis=mcis, vm=vm))
    return pb.GetAgentRequest(ns=ns, mcis=mcis, vm=vm), start_agent(run_dir, f"{mcis}-{vm}", cred.user_data)


async def cpu_points(df: Stub, ref: pb.GetAgentRequest, duration: str = "10m") -> list[pb.Point]:
    got = await df.QueryVmMetrics(pb.QueryVmMetricsRequest(ns=ref.ns, mcis=ref.mcis, vm=ref.vm, group="cpu",
                                                           duration=duration))
    return list(got.series[0].points) if got.series else []


async def agent_status(nats: Nats, ref: pb.GetAgentRequest) -> dict[str, int]:
    nc = await nats_py.connect(nats.url, **nats.harness_creds.client_options())
    try:
        reply = await nc.request(f"cb.agent.{ref.ns}.{ref.mcis}.{ref.vm}.status", b"{}", timeout=3)
    finally:
        await nc.close()
    status: dict[str, int] = json.loads(reply.data)
    return status


async def test_metrics_of_a_new_agent_are_queryable_within_two_intervals(dragonfly_client: Stub, run_dir: Path) -> None:
    ref, agent = await new_agent(dragonfly_client, run_dir)
    try:
        t0 = time.monotonic()

        async def stored() -> bool:
            return len(await cpu_points(dragonfly_client, ref)) > 0

        await eventually(stored, 30, "the first point")
        # From the first point on, a point per interval (1 s): two more within two intervals.
        first = len(await cpu_points(dragonfly_client, ref))
        await asyncio.sleep(2.2)
        assert len(await cpu_points(dragonfly_client, ref)) >= first + 2, time.monotonic() - t0
        record = await dragonfly_client.GetAgent(ref)
        assert record.health == pb.HEALTHY and record.kind == "host" and record.interval_s == 1
        listed = await dragonfly_client.ListAgents(pb.ListAgentsRequest(ns=ref.ns, mcis=ref.mcis))
        assert [a.vm for a in listed.agents] == [ref.vm]
        point = (await cpu_points(dragonfly_client, ref))[-1]
        assert 0 <= point.values["utilization_percent"] <= 100 and "iowait_percent" in point.values
        for group in ("memory", "disk", "diskio", "network", "cpufreq"):
            got = await dragonfly_client.QueryVmMetrics(pb.QueryVmMetricsRequest(ns=ref.ns, mcis=ref.mcis, vm=ref.vm,
                                                                                 group=group,
                                                                   period="m", aggregate="max", duration="5m"))
            assert got.series[0].points, group
        mem = (await dragonfly_client.QueryMcisMetrics(pb.QueryMcisMetricsRequest(ns=ref.ns, mcis=ref.mcis, group="memory",
                                                                    period="m", aggregate="last"))).series
        # A VM is named by its name, as in the agents list and the per-VM routes.
        assert [s.vm for s in mem] == [ref.vm] and mem[0].points[0].values["total_bytes"] > 0
        live = await dragonfly_client.ReadVmMetrics(pb.ReadVmMetricsRequest(ns=ref.ns, mcis=ref.mcis, vm=ref.vm))
        assert live.groups["network"].values["recv_bytes_per_second"] >= 0
    finally:
        agent.stop()


async def test_commands_run_through_the_agent(dragonfly_client: Stub, run_dir: Path) -> None:
    ref, agent = await new_agent(dragonfly_client, run_dir)
    try:
        async def registered() -> bool:
            try:
                await dragonfly_client.GetAgent(ref)
            except grpc.aio.AioRpcError:
                return False
            return True

        await eventually(registered, 30, "registration")

        def cmd(command: str, **kw: float) -> pb.RunCommandRequest:
            return pb.RunCommandRequest(ns=ref.ns, mcis=ref.mcis, vm=ref.vm, command=command, **kw)

        res = await dragonfly_client.RunCommand(cmd("hostname; echo hello; echo oops >&2; exit 4"))
        assert res.stdout.split()[1] == "hello" and res.stderr == "oops\n" and res.exit_code == 4
        slow = await dragonfly_client.RunCommand(cmd("sleep 20", timeout_s=0.5))
        assert slow.timed_out and slow.error == "timed out after 0.5s"
        big = await dragonfly_client.RunCommand(cmd("seq 100000", output_limit_bytes=100))
        assert len(big.stdout) == 100 and big.stdout_truncated
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await dragonfly_client.RunCommand(pb.RunCommandRequest(ns=ref.ns, mcis=ref.mcis, vm="nobody", command="true"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and "has no agent" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await dragonfly_client.RunCommand(cmd(" "))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        agent.stop()


async def test_interval_per_mcis_and_an_agent_killed_turns_unhealthy(dragonfly_client: Stub, run_dir: Path) -> None:
    ref, agent = await new_agent(dragonfly_client, run_dir)
    try:
        async def healthy() -> bool:
            try:
                return (await dragonfly_client.GetAgent(ref)).health == pb.HEALTHY
            except grpc.aio.AioRpcError:
                return False

        await eventually(healthy, 30, "a healthy agent")
        await dragonfly_client.UpdateMonitoringConfig(pb.UpdateMonitoringConfigRequest(
            ns=ref.ns, mcis=ref.mcis, config=pb.MonitoringConfig(interval_s=0.5)))

        async def faster() -> bool:
            return (await dragonfly_client.GetAgent(ref)).interval_s == 0.5

        await eventually(faster, 15, "the new interval")  # heartbeats carry it; generous on a loaded machine
        agent.kill()
        took = await eventually(lambda: _unhealthy(dragonfly_client, ref), 5, "unhealthy")
        assert took <= 3 * 0.5 + 0.2, took
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await dragonfly_client.UpdateMonitoringConfig(pb.UpdateMonitoringConfigRequest(
                ns=ref.ns, mcis=ref.mcis, config=pb.MonitoringConfig(interval_s=0)))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        agent.stop()


async def _unhealthy(df: Stub, ref: pb.GetAgentRequest) -> bool:
    return (await df.GetAgent(ref)).health == pb.UNHEALTHY


async def test_a_killed_collector_replica_leaves_the_stream_to_the_other(run_dir: Path,
                                                                         etcd_process: servers.Server) -> None:
    # A NATS of its own, so these two replicas are the whole queue group.
    own = await start_nats(run_dir / "replicas")
    first = await start_dragonfly(run_dir / "replica-a", etcd_process, own)
    second = await start_dragonfly(run_dir / "replica-b", etcd_process, own)
    agent: procs.Proc | None = None
    try:
        async with channel(first.address) as ch_a, channel(second.address) as ch_b:
            a, b = Stub(ch_a), Stub(ch_b)
            ref, agent = await new_agent(a, run_dir)
            await eventually(lambda: _has_points(a, ref), 30, "points at replica a")
            await eventually(lambda: _has_points(b, ref), 30, "points at replica b")
            before = await agent_status(own, ref)
            t_kill = time.time()
            first.proc.kill()
            await asyncio.sleep(5.0)
            after = await agent_status(own, ref)
            late = [p for p in await cpu_points(b, ref) if p.time.ToNanoseconds() / 1e9 > t_kill]
            # Every batch sampled after the kill is stored by the survivor (unacknowledged ones were resent).
            expected = after["seq"] - before["seq"] - after["backlog"]
            assert after["dropped"] == 0 and expected >= 4
            assert len(late) >= expected - 1, (len(late), before, after)
    finally:
        if agent is not None:
            agent.stop()
        second.stop()
        first.stop()
        own.proc.stop()


async def _has_points(stub: Stub, ref: pb.GetAgentRequest) -> bool:
    return len(await cpu_points(stub, ref)) > 0


# The outage the issue names: 20 s, well inside the agent's backlog bound.
NATS_AWAY_S = 20.0


async def test_nats_away_for_a_while_loses_no_point(dragonfly_client: Stub, run_dir: Path, nats_process: Nats) -> None:
    ref, agent = await new_agent(dragonfly_client, run_dir)
    try:
        await eventually(lambda: _has_points(dragonfly_client, ref), 30, "the first point")
        nats_process.proc.stop()
        t_down = time.time()
        await asyncio.sleep(NATS_AWAY_S)
        t_up = time.time()
        await nats_process.restart()

        async def drained() -> bool:
            try:
                status = await agent_status(nats_process, ref)
            except Exception:
                return False
            return status["backlog"] == 0 and status["sent"] > 0

        await eventually(drained, 20, "the backlog sent")
        status = await agent_status(nats_process, ref)
        points = await cpu_points(dragonfly_client, ref)
        during = [p for p in points if t_down + 0.5 < p.time.ToNanoseconds() / 1e9 < t_up - 0.5]
        assert status["dropped"] == 0
        assert len(during) >= NATS_AWAY_S - 2, len(during)  # sampled while NATS was away, delivered after
        # Every batch the agent sampled is stored once: no loss, no duplicate.
        assert status["seq"] - 1 <= len(points) <= status["seq"] + 1, (len(points), status)
        seqs_times = [p.time.ToNanoseconds() for p in points]
        assert len(set(seqs_times)) == len(seqs_times)
    finally:
        agent.stop()
