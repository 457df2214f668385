"""Helpers of the dragonfly tests: a dragonfly replica, its client type, waiting for a condition, an agent
that is healthy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from cbapi.dragonfly.v1 import dragonfly_pb2 as dpb
from cbapi.dragonfly.v1 import dragonfly_pb2_grpc
from services import processes as procs
from tests import servers
from tests.support.nats import Nats

Stub = dragonfly_pb2_grpc.DragonflyStub


async def start_dragonfly(run_dir: Path, etcd: servers.Server, nats: Nats, **env: str) -> servers.Server:
    """A dragonfly replica with the suite's service credential and the agent signing key."""
    port = procs.free_port()
    full = {
        "CB_DRAGONFLY_PORT": str(port), "CB_DRAGONFLY_HOST": "127.0.0.1", "CB_ETCD_ENDPOINTS": etcd.address,
        "CB_NATS_URL": nats.url, "CB_NATS_CREDS_FILE": str(nats.files.dragonfly_creds),
        "CB_DRAGONFLY_METRICS_PORT": str(procs.free_port()),
        "CB_DRAGONFLY_AGENT_SIGNER_FILE": str(nats.files.signer),
        "CB_DRAGONFLY_ACCOUNT_ADMIN_FILE": str(nats.files.account_admin), "CB_GRACE_SECONDS": "1",
        "CB_DRAGONFLY_DEFAULT_INTERVAL_S": "1", **env,
    }
    proc = procs.python_service(f"dragonfly-{port}", "dragonfly.server", run_dir, full)
    await procs.start_grpc(proc, port)
    return servers.Server(proc, port, full)


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
