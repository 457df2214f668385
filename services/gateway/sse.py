"""Server-streaming RPCs as Server-Sent Events.

Each message is one event whose `data:` is the message as JSON (`id:` counts from 1). The end of
the stream is `event: end`; an error after the stream began is `event: error` with the same
JSON status body as an error response. While nothing comes, a comment line every few seconds
keeps proxies from closing the connection. A client that goes away cancels the RPC.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.message import Message
from starlette.responses import StreamingResponse

from services.gateway.backends import Stream
from services.gateway.errors import GatewayError
from services.gateway.routes import Route
from services.gateway.transcode import dumps, response_value

MEDIA_TYPE = "text/event-stream"


def event(data: bytes, name: str = "", event_id: str = "") -> bytes:
    """One SSE event; JSON has no raw newlines, so `data` is a single line."""
    out = b""
    if name:
        out += b"event: " + name.encode() + b"\n"
    if event_id:
        out += b"id: " + event_id.encode() + b"\n"
    return out + b"data: " + data + b"\n\n"


async def first_message(stream: Stream) -> tuple[AsyncIterator[Message], Message]:
    """Wait for the first message, so an error before it is an ordinary HTTP error response.

    Every streaming RPC of the suite is a watch that sends the resource as it is now, then its
    changes, and ends when the resource is gone: a stream that ends before its first message
    watched nothing, which is a 404 (not a 200 with an immediate `end`)."""
    messages = stream.messages()
    try:
        first = await anext(messages)
    except StopAsyncIteration:
        raise GatewayError(grpc.StatusCode.NOT_FOUND, f"the resource to watch does not exist in "
                                                      f"{stream.backend.name}: check its name and namespace") from None
    except BaseException:
        stream.cancel()
        raise
    return messages, first


async def _events(route: Route, stream: Stream, messages: AsyncIterator[Message], first: Message,
                  keepalive: float) -> AsyncIterator[bytes]:
    count = 0
    pending: asyncio.Future[Any] | None = None
    try:
        count += 1
        yield event(dumps(response_value(route, first)), event_id=str(count))
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(messages))
            done, _ = await asyncio.wait({pending}, timeout=keepalive)
            if not done:
                yield b": keepalive\n\n"
                continue
            task, pending = pending, None
            try:
                message = task.result()
            except StopAsyncIteration:
                yield event(b"{}", "end")
                return
            except GatewayError as err:
                yield event(dumps(err.body()), "error")
                return
            count += 1
            yield event(dumps(response_value(route, message)), event_id=str(count))
    finally:
        # The client left (or the stream ended): stop the RPC and the read waiting on it.
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        stream.cancel()


def response(route: Route, stream: Stream, messages: AsyncIterator[Message], first: Message,
             keepalive: float) -> StreamingResponse:
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(_events(route, stream, messages, first, keepalive), media_type=MEDIA_TYPE,
                             headers=headers)
