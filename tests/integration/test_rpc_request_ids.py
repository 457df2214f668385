"""services.rpc.client.channel passes the current request ID on as `x-request-id` metadata of
unary and server-streaming calls (RequestIdChannel), leaves a caller's own alone, and adds none
without one or with request_ids=False."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from services import logs, processes
from services.rpc import client
from services.rpc.tls import server_credentials


def _request_id(context: grpc.aio.ServicerContext) -> bytes:
    found = [v for k, v in context.invocation_metadata() or () if k == "x-request-id"]
    return ",".join(str(v) for v in found).encode()


@pytest.fixture
async def echo_ids() -> AsyncIterator[str]:
    """A server on loopback answering each call with the x-request-id values it got."""

    async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return _request_id(context)

    async def stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield _request_id(context)

    handler = grpc.method_handlers_generic_handler("t.Ids", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.unary_stream_rpc_method_handler(stream)})
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = processes.free_port()
    server.add_secure_port(f"127.0.0.1:{port}", server_credentials())
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def _ids(ch: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] | None = None) -> tuple[bytes, bytes]:
    unary = await ch.unary_unary("/t.Ids/Unary")(b"", metadata=metadata, timeout=10)
    streamed = [m async for m in ch.unary_stream("/t.Ids/Stream")(b"", metadata=metadata, timeout=10)]
    return unary, streamed[0]


async def test_request_id_goes_along(echo_ids: str) -> None:
    async with client.channel(echo_ids) as ch:
        assert isinstance(ch, client.RequestIdChannel)
        assert await _ids(ch) == (b"", b"")  # no current request ID: none sent
        token = logs.request_id.set("rid-42")
        try:
            assert await _ids(ch) == (b"rid-42", b"rid-42")
            assert await _ids(ch, (("other", "x"),)) == (b"rid-42", b"rid-42")
            # A caller's own ID is kept, not doubled.
            assert await _ids(ch, (("x-request-id", "mine"),)) == (b"mine", b"mine")
            assert await _ids(ch, grpc.aio.Metadata(("x-request-id", "meta"))) == (b"meta", b"meta")  # type: ignore[arg-type]
            await ch.channel_ready()
            assert ch.get_state() is grpc.ChannelConnectivity.READY
        finally:
            logs.request_id.reset(token)


async def test_without_request_ids(echo_ids: str) -> None:
    token = logs.request_id.set("rid-43")
    try:
        async with client.channel(echo_ids, request_ids=False) as ch:
            assert not isinstance(ch, client.RequestIdChannel)
            assert await _ids(ch) == (b"", b"")
    finally:
        logs.request_id.reset(token)
