"""Small helpers shared by tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import grpc

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from cbapi.spider.v1 import spider_pb2_grpc
from services.errors import bad_request_of


async def expect_error(code: grpc.StatusCode, call: Awaitable[Any], field: str = "") -> grpc.aio.AioRpcError:
    """Await `call`, require it to fail with `code` (and name `field` in a BadRequest)."""
    try:
        await call
    except grpc.aio.AioRpcError as err:
        assert err.code() == code, f"expected {code.name}, got {err.code().name}: {err.details()}"
        assert err.details(), "an error must say what is wrong"
        if field:
            fields = [v.field for v in bad_request_of(err)]
            assert field in fields, f"expected a violation of {field!r}, got {fields}"
        return err
    raise AssertionError(f"expected {code.name}, but the call succeeded")


async def wait_vm_status(stub: spider_pb2_grpc.SpiderStub, conn: str, name: str,
                         want: common.VmStatus, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = (await stub.GetVmStatus(pb.GetResourceRequest(connection=conn, name=name))).status
        if last == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"VM {name} stayed {common.VmStatus.Name(last or 0)}, wanted {common.VmStatus.Name(want)}")


async def until_ok(call: Any, timeout: float = 20.0) -> Any:
    """Repeat `call()` while the cloud still reports a dependency (e.g. a VM still terminating)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.FAILED_PRECONDITION or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def wait_disk_status(stub: spider_pb2_grpc.SpiderStub, conn: str, name: str, want: str,
                           timeout: float = 30.0) -> pb.Disk:
    deadline = time.monotonic() + timeout
    while True:
        disk = await stub.GetDisk(pb.GetResourceRequest(connection=conn, name=name))
        if disk.status == want:
            return disk
        if time.monotonic() > deadline:
            raise AssertionError(f"disk {name} stayed {disk.status!r}, wanted {want!r}")
        await asyncio.sleep(0.1)
