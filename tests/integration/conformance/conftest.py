"""The conformance suite runs every test against every driver target."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from cbapi.spider.v1 import spider_pb2_grpc
from tests import servers
from tests.integration.conformance.targets import Target, aws_target, mock_target

DRIVERS = ["mock", "aws"]


@pytest_asyncio.fixture(loop_scope="session", params=DRIVERS)
async def target(request: pytest.FixtureRequest, stub: spider_pb2_grpc.SpiderStub,
                 cloudtwin: servers.Server, moto: servers.Server) -> AsyncIterator[Target]:
    if request.param == "mock":
        yield await mock_target(stub, cloudtwin)
    elif request.param == "aws":
        yield await aws_target(stub, moto)


def need(target: Target, *capabilities: str) -> None:
    """Skip when the driver says it lacks a capability (never by driver name)."""
    missing = [c for c in capabilities if not getattr(target.capabilities, c)]
    if missing:
        pytest.skip(f"driver {target.driver} lacks {', '.join(missing)}")
