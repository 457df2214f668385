"""A tumblebug that installs agents: its own etcd, NATS with per-VM credentials, and dragonfly.

It has an etcd of its own: on the shared one it would be a second replica of the session's
tumblebug (which runs without monitoring), and only one of them leads."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from tests import servers
from tests.integration.dragonfly.conftest import start_dragonfly, start_nats


@contextlib.asynccontextmanager
async def monitored_tumblebug(run_dir: Path, spider: servers.Server) -> AsyncIterator[servers.Server]:
    own = await servers.start_etcd(run_dir / "etcd")
    nats = await start_nats(run_dir / "nats")
    dragonfly = await start_dragonfly(run_dir / "dragonfly", own, nats)
    tumblebug = await servers.start_tumblebug(run_dir / "tumblebug", own, spider,
                                              CB_TUMBLEBUG_DRAGONFLY_ADDR=dragonfly.address)
    try:
        yield tumblebug
    finally:
        for server in (tumblebug, dragonfly, own):
            server.stop()
        nats.proc.stop()
