"""Helpers of the dragonfly tests: its client type, waiting for a condition, an agent that is healthy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc

from cbapi.dragonfly.v1 import dragonfly_pb2 as dpb
from cbapi.dragonfly.v1 import dragonfly_pb2_grpc

Stub = dragonfly_pb2_grpc.DragonflyStub


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Seconds until `check()` holds; fails after `timeout`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if await check():
            return time.monotonic() - t0
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout:g}s")


async def healthy_agent(df: Stub, ref: dpb.GetAgentRequest, boot_not: str = "") -> dpb.Agent:
    found: list[dpb.Agent] = []

    async def check() -> bool:
        try:
            agent = await df.GetAgent(ref)
        except grpc.aio.AioRpcError:
            return False
        found[:] = [agent]
        return agent.health == dpb.HEALTHY and agent.boot != boot_not

    await eventually(check, 30, f"a healthy agent (boot not {boot_not!r})")
    return found[0]
