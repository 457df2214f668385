"""Spider as tumblebug calls it: the stub, with spider's errors passed on as domain errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cbapi.spider.v1 import spider_pb2 as spb
from cbapi.spider.v1 import spider_pb2_grpc
from services.rpc.client import call as rpc_call
from services.rpc.client import channel

T = TypeVar("T")


class Spider:
    """A channel to spider; every call raises domain errors, never raw gRPC ones."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel = channel(address)
        self.stub = spider_pb2_grpc.SpiderStub(self._channel)

    async def call(self, rpc: Callable[..., Awaitable[T]], request: Any, timeout: float = 120.0) -> T:
        return await rpc_call(rpc, request, timeout, "spider")

    async def connection(self, name: str) -> spb.Connection:
        return await self.call(self.stub.GetConnection, spb.GetConnectionRequest(name=name))

    async def close(self) -> None:
        await self._channel.close()
