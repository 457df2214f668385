"""The conformance suite runs every test against every driver target."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from cbapi.spider.v1 import spider_pb2_grpc
from tests import servers
from tests.integration.conformance.target_libvirt import Libvirtd, libvirt_target, libvirtd_missing, start_libvirtd
from tests.integration.conformance.targets import Target, aws_target, forget, mock_target

DRIVERS = ["mock", "aws", "libvirt"]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def libvirtd_process(run_dir: Path) -> AsyncIterator[Libvirtd | None]:
    if libvirtd_missing():
        yield None
        return
    daemon = await start_libvirtd(run_dir / "libvirtd")
    yield daemon
    daemon.stop()


@pytest_asyncio.fixture(loop_scope="session", params=DRIVERS)
async def target(request: pytest.FixtureRequest, spider_client: spider_pb2_grpc.SpiderStub,
                 cloudtwin_process: servers.Server,
                 moto_process: servers.Server, libvirtd_process: Libvirtd | None, tmp_path: Path) -> AsyncIterator[Target]:
    if request.param == "mock":
        made: Target = await mock_target(spider_client, cloudtwin_process)
    elif request.param == "aws":
        made = await aws_target(spider_client, moto_process)
    else:
        if libvirtd_process is None:
            pytest.skip(libvirtd_missing())
        made = await libvirt_target(spider_client, libvirtd_process, tmp_path)
    yield made
    await forget(spider_client, made)


def need(target: Target, *capabilities: str) -> None:
    """Skip when the driver says it lacks a capability (never by driver name)."""
    missing = [c for c in capabilities if not getattr(target.capabilities, c)]
    if missing:
        pytest.skip(f"driver {target.driver} lacks {', '.join(missing)}")
