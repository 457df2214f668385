"""Session servers for dragonfly's tests: NATS in operator mode (JWT auth) with its credentials,
a dragonfly replica, and cb-agent processes."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest_asyncio

from cbapi.dragonfly.v1 import dragonfly_pb2_grpc
from services import natsauth
from services import processes as procs
from services.rpc.client import channel
from tests import servers


@dataclass
class Nats:
    """A NATS server that admits only JWT users of its authority."""

    proc: procs.Proc
    port: int
    files: natsauth.AuthFiles

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def dragonfly_creds(self) -> natsauth.Creds:
        """Dragonfly's own user (least privilege)."""
        return natsauth.Creds.parse(self.files.dragonfly_creds.read_text())

    @property
    def harness_creds(self) -> natsauth.Creds:
        """An unrestricted user of the CB account, for tests that watch or drive the bus
        (the suite itself has none)."""
        return self.signer.issue("test-harness", natsauth.Permissions(unrestricted=True))

    @property
    def signer(self) -> natsauth.Signer:
        return natsauth.Signer.load(self.files.signer.read_text())

    async def restart(self) -> None:
        self.proc.popen = None
        await procs.start_tcp(self.proc, self.port)


async def start_nats(run_dir: Path) -> Nats:
    files = natsauth.write_suite_auth(run_dir / "auth")
    port = procs.free_port()
    proc = procs.nats(run_dir, port, files.server_config)
    await procs.start_tcp(proc, port)
    return Nats(proc, port, files)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def nats_process(run_dir: Path) -> AsyncIterator[Nats]:
    server = await start_nats(run_dir / "nats-shared")
    yield server
    server.proc.stop()


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


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dragonfly_process(run_dir: Path, etcd_process: servers.Server,
                            nats_process: Nats) -> AsyncIterator[servers.Server]:
    server = await start_dragonfly(run_dir / "dragonfly-shared", etcd_process, nats_process)
    yield server
    server.stop()


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
