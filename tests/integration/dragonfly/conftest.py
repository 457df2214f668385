"""What dragonfly's tests share beyond the session's servers: a client of the session's dragonfly,
and cb-agent processes. The session's NATS (`nats_process`) and dragonfly (`dragonfly_process`) are
fixtures of tests/conftest.py, so a test elsewhere that needs them gets the same instances."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from cbapi.dragonfly.v1 import dragonfly_pb2_grpc
from services import processes as procs
from services.rpc.client import channel
from tests import servers


@pytest_asyncio.fixture(loop_scope="session")
async def dragonfly_client(dragonfly_process: servers.Server) -> AsyncIterator[dragonfly_pb2_grpc.DragonflyStub]:
    async with channel(dragonfly_process.address) as ch:
        yield dragonfly_pb2_grpc.DragonflyStub(ch)


def start_agent(run_dir: Path, name: str, user_data: str) -> procs.Proc:
    """cb-agent as a real process, from its user-data file."""
    path = run_dir / "agents" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(user_data)
    return procs.Proc(f"agent-{name}", [sys.executable, "-m", "dragonfly.agent", "--user-data", str(path)],
                      run_dir / "logs" / f"agent-{name}.log", env={"CB_LOG_LEVEL": "WARNING"}).start()
