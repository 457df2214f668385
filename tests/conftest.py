"""Session-wide real servers: one etcd, one CloudTwin, one spider.

Tests share them and stay apart by using fresh connection names and fresh
CloudTwin accounts. Tests that kill or restart a server start their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from tests import servers
from tests.integration.tumblebug.monitored import monitored_tumblebug


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("run")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def etcd(run_dir: Path) -> AsyncIterator[servers.Server]:
    server = await servers.start_etcd(run_dir / "etcd-shared")
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def cloudtwin(run_dir: Path) -> AsyncIterator[servers.Server]:
    server = await servers.start_cloudtwin(run_dir / "twin-shared", CB_CLOUDTWIN_PROVIDERS="4",
                                           CB_CLOUDTWIN_BOOT_LATENCY="0.3", CB_CLOUDTWIN_ACTION_LATENCY="0.2")
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def moto(run_dir: Path) -> AsyncIterator[servers.Server]:
    server = await servers.start_moto(run_dir / "moto")
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def spider(run_dir: Path, etcd: servers.Server, cloudtwin: servers.Server) -> AsyncIterator[servers.Server]:
    server = await servers.start_spider(run_dir / "spider-shared", etcd)
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def tumblebug(run_dir: Path, etcd: servers.Server, spider: servers.Server) -> AsyncIterator[servers.Server]:
    server = await servers.start_tumblebug(run_dir / "tumblebug-shared", etcd, spider)
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def monitored_server(run_dir: Path, spider: servers.Server) -> AsyncIterator[servers.Server]:
    """A tumblebug that installs agents, with its own etcd, NATS and dragonfly (see `monitored_tumblebug`)."""
    async with monitored_tumblebug(run_dir / "monitored", spider) as tumblebug:
        yield tumblebug


@pytest_asyncio.fixture(loop_scope="session")
async def monitored(monitored_server: servers.Server) -> AsyncIterator[tumblebug_pb2_grpc.TumblebugStub]:
    """A client of the agent-installing tumblebug."""
    async with grpc.aio.insecure_channel(monitored_server.address) as ch:
        yield tumblebug_pb2_grpc.TumblebugStub(ch)


@pytest_asyncio.fixture(loop_scope="session")
async def tb(tumblebug: servers.Server) -> AsyncIterator[tumblebug_pb2_grpc.TumblebugStub]:
    async with grpc.aio.insecure_channel(tumblebug.address) as ch:
        yield tumblebug_pb2_grpc.TumblebugStub(ch)


@pytest_asyncio.fixture(loop_scope="session")
async def stub(spider: servers.Server) -> AsyncIterator[spider_pb2_grpc.SpiderStub]:
    async with grpc.aio.insecure_channel(spider.address) as ch:
        yield spider_pb2_grpc.SpiderStub(ch)
