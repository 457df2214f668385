"""Session-wide real servers: one etcd, one CloudTwin, one spider, one NATS and one dragonfly.

Tests share them and stay apart by using fresh connection names and fresh
CloudTwin accounts. Tests that kill or restart a server start their own.

Mutual TLS is on as in the launcher: a session CA issues each server its
certificate (see `services.processes`), and this process calls them as
`admin`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services import tls
from services.rpc.client import channel
from tests import servers
from tests.deploy import docker, prefetch
from tests.integration.tumblebug.monitored import monitored_tumblebug
from tests.support.dragonfly import start_dragonfly
from tests.support.nats import Nats, start_nats

COMPOSE_TEST = "tests/deploy/test_compose_up.py"


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: only a test that runs is prepared for
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The compose test runs last, its images built meanwhile by a background process
    (tests/deploy/prefetch.py): minutes of a cold machine that the other tests overlap."""
    compose = [i for i in items if i.nodeid.startswith(COMPOSE_TEST)]
    if not compose or len(compose) == len(items) or config.option.collectonly:
        return
    items[:] = [i for i in items if i not in compose] + compose
    docker.CACHE.mkdir(parents=True, exist_ok=True)
    prefetch.start(docker.CACHE / "prefetch.log")


def pytest_unconfigure(config: pytest.Config) -> None:
    prefetch.stop()


@pytest.fixture(scope="session", autouse=True)
def session_ca(tmp_path_factory: pytest.TempPathFactory) -> tls.Authority:
    """The session's private CA; this process (and what it starts without other settings) is `admin`."""
    authority = tls.Authority.ensure(tmp_path_factory.mktemp("tls"))
    authority.identity("admin").install()
    return authority


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("run")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def etcd_process(run_dir: Path) -> AsyncIterator[servers.Server]:
    server = await servers.start_etcd(run_dir / "etcd-shared")
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def cloudtwin_process(run_dir: Path) -> AsyncIterator[servers.Server]:
    server = await servers.start_cloudtwin(run_dir / "twin-shared", CB_CLOUDTWIN_PROVIDERS="4",
                                           CB_CLOUDTWIN_BOOT_LATENCY="0.3", CB_CLOUDTWIN_ACTION_LATENCY="0.2")
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def moto_process(run_dir: Path) -> AsyncIterator[servers.Server]:
    server = await servers.start_moto(run_dir / "moto")
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def nats_process(run_dir: Path) -> AsyncIterator[Nats]:
    server = await start_nats(run_dir / "nats-shared")
    yield server
    server.proc.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dragonfly_process(run_dir: Path, etcd_process: servers.Server,
                            nats_process: Nats) -> AsyncIterator[servers.Server]:
    server = await start_dragonfly(run_dir / "dragonfly-shared", etcd_process, nats_process)
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def spider_process(run_dir: Path, etcd_process: servers.Server) -> AsyncIterator[servers.Server]:
    # Not tied to CloudTwin: a connection names its cloud, so the aws or libvirt conformance tests
    # alone start no CloudTwin.
    server = await servers.start_spider(run_dir / "spider-shared", etcd_process)
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def tumblebug_process(run_dir: Path, etcd_process: servers.Server,
                            spider_process: servers.Server) -> AsyncIterator[servers.Server]:
    server = await servers.start_tumblebug(run_dir / "tumblebug-shared", etcd_process, spider_process)
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def monitored_tumblebug_process(run_dir: Path, spider_process: servers.Server) -> AsyncIterator[servers.Server]:
    """A tumblebug that installs agents, with its own etcd, NATS and dragonfly (see `monitored_tumblebug`)."""
    async with monitored_tumblebug(run_dir / "monitored", spider_process) as tumblebug:
        yield tumblebug


@pytest_asyncio.fixture(loop_scope="session")
async def monitored_tumblebug_client(
        monitored_tumblebug_process: servers.Server) -> AsyncIterator[tumblebug_pb2_grpc.TumblebugStub]:
    """A client of the agent-installing tumblebug."""
    async with channel(monitored_tumblebug_process.address) as ch:
        yield tumblebug_pb2_grpc.TumblebugStub(ch)


@pytest_asyncio.fixture(loop_scope="session")
async def tumblebug_client(tumblebug_process: servers.Server) -> AsyncIterator[tumblebug_pb2_grpc.TumblebugStub]:
    async with channel(tumblebug_process.address) as ch:
        yield tumblebug_pb2_grpc.TumblebugStub(ch)


@pytest_asyncio.fixture(loop_scope="session")
async def spider_client(spider_process: servers.Server) -> AsyncIterator[spider_pb2_grpc.SpiderStub]:
    async with channel(spider_process.address) as ch:
        yield spider_pb2_grpc.SpiderStub(ch)
