"""Session servers for dragonfly's tests: NATS in operator mode (JWT auth), and its credentials."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest_asyncio

from services import natsauth
from services.launcher import processes as procs


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
    def service_creds(self) -> natsauth.Creds:
        return natsauth.Creds.parse(self.files.service_creds.read_text())

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
async def nats(run_dir: Path) -> AsyncIterator[Nats]:
    server = await start_nats(run_dir / "nats-shared")
    yield server
    server.proc.stop()
