"""What a client hears when a VM's agent cannot be asked: NOT_FOUND for a VM dragonfly knows
nothing of, FAILED_PRECONDITION naming the agent's state for one that exists but is not
connected; never UNAVAILABLE (dragonfly is up) and never an internal address."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from cbapi.dragonfly.v1 import dragonfly_pb2 as pb
from tests.integration.dragonfly.conftest import start_agent
from tests.support.dragonfly import Stub, eventually

NS = "ns-errs"


def calls(df: Stub, mcis: str, vm: str) -> list[Callable[[], Awaitable[object]]]:
    """`:benchmark`, `:command` and `metrics:live` of one VM."""
    return [lambda: df.RunBenchmark(pb.RunBenchmarkRequest(ns=NS, mcis=mcis, vm=vm, benchmarks=["cpu_single"],
                                                           budget_s=0.1)),
            lambda: df.RunCommand(pb.RunCommandRequest(ns=NS, mcis=mcis, vm=vm, command="true")),
            lambda: df.ReadVmMetrics(pb.ReadVmMetricsRequest(ns=NS, mcis=mcis, vm=vm))]


async def refusal(call: Callable[[], Awaitable[object]]) -> grpc.aio.AioRpcError:
    try:
        await call()
    except grpc.aio.AioRpcError as err:
        assert "127.0.0.1" not in (err.details() or ""), err.details()
        return err
    raise AssertionError("the call was answered")


async def test_a_vm_without_agent_is_not_found(dragonfly_client: Stub) -> None:
    for call in calls(dragonfly_client, f"m-{uuid.uuid4().hex[:6]}", "ghost"):
        err = await refusal(call)
        assert err.code() == grpc.StatusCode.NOT_FOUND and "has no agent" in (err.details() or ""), err.details()


async def test_an_agent_not_connected_is_a_failed_precondition_naming_its_state(dragonfly_client: Stub,
                                                                                run_dir: Path) -> None:
    mcis = f"m-{uuid.uuid4().hex[:6]}"
    cred = await dragonfly_client.IssueAgentCredential(pb.IssueAgentCredentialRequest(ns=NS, mcis=mcis, vm="vm-1"))
    for call in calls(dragonfly_client, mcis, "vm-1"):  # issued, not booted yet
        err = await refusal(call)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "not registered yet" in (err.details() or "")
    agent = start_agent(run_dir, f"errs-{mcis}", cred.user_data)
    ref = pb.GetAgentRequest(ns=NS, mcis=mcis, vm="vm-1")
    try:
        async def healthy() -> bool:
            try:
                return (await dragonfly_client.GetAgent(ref)).health == pb.HEALTHY
            except grpc.aio.AioRpcError:
                return False

        await eventually(healthy, 30, "a healthy agent")
    finally:
        agent.kill()

    async def refused_as_gone() -> bool:
        err = await refusal(calls(dragonfly_client, mcis, "vm-1")[1])
        return err.code() == grpc.StatusCode.FAILED_PRECONDITION and "not connected" in (err.details() or "")

    await eventually(refused_as_gone, 10, "the stopped agent refused as not connected")
    for call in calls(dragonfly_client, mcis, "vm-1"):
        err = await refusal(call)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "state " in (err.details() or ""), err.details()
