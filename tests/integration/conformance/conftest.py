"""The conformance suite runs every test against every driver target."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from cbapi.spider.v1 import spider_pb2_grpc
from tests import servers
from tests.integration.conformance.target_libvirt import Libvirtd, libvirt_target, libvirtd_missing, start_libvirtd
from tests.integration.conformance.targets import Target, aws_target, forget, mock_target

DRIVERS = ["mock", "aws", "libvirt"]
# The server each driver's target lives on. Only the selected driver's is asked for (`cloud`), so
# `-k mock` starts neither moto nor libvirtd, and `-k aws` no libvirtd.
CLOUD_OF = {"mock": "cloudtwin_process", "aws": "moto_process", "libvirt": "libvirtd_process"}


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def libvirtd_process(run_dir: Path) -> AsyncIterator[Libvirtd | None]:
    if libvirtd_missing():
        yield None
        return
    daemon = await start_libvirtd(run_dir / "libvirtd")
    yield daemon
    daemon.stop()


@dataclass
class Cloud:
    """The selected driver and the server its target lives on."""

    driver: str
    server: servers.Server | Libvirtd


@pytest.fixture(params=DRIVERS)
def cloud(request: pytest.FixtureRequest) -> Cloud:
    # Synchronous: the server fixture is asked for by name here, outside the event loop, which an
    # async fixture could not do (its loop is already running).
    if request.param == "libvirt" and (why := libvirtd_missing()):
        pytest.skip(why)
    return Cloud(request.param, request.getfixturevalue(CLOUD_OF[request.param]))


@pytest_asyncio.fixture(loop_scope="session")
async def target(cloud: Cloud, spider_client: spider_pb2_grpc.SpiderStub, tmp_path: Path) -> AsyncIterator[Target]:
    if isinstance(cloud.server, Libvirtd):
        made: Target = await libvirt_target(spider_client, cloud.server, tmp_path)
    elif cloud.driver == "aws":
        made = await aws_target(spider_client, cloud.server)
    else:
        made = await mock_target(spider_client, cloud.server)
    yield made
    await forget(spider_client, made)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A conformance test must reach its cloud through `target`: one that names a driver's server
    itself would start that server whatever driver is selected."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            named = sorted(set(getattr(item, "fixturenames", ())) & set(CLOUD_OF.values()))
            if named:
                raise pytest.UsageError(f"{item.nodeid} asks for {', '.join(named)} itself; use the `target` "
                                        f"fixture, which starts only the selected driver's server")


def need(target: Target, *capabilities: str) -> None:
    """Skip when the driver says it lacks a capability (never by driver name)."""
    missing = [c for c in capabilities if not getattr(target.capabilities, c)]
    if missing:
        pytest.skip(f"driver {target.driver} lacks {', '.join(missing)}")
