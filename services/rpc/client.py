"""Channels to other services (and to CloudTwin) with the request ID passed along."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services import errors
from services.rpc.interceptors import RequestIdClientInterceptor

T = TypeVar("T")

log = logging.getLogger("rpc.client")

OPTIONS = [
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    ("grpc.max_send_message_length", 32 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.enable_retries", 0),
]


def channel(address: str) -> grpc.aio.Channel:
    """An insecure channel to a loopback or cluster-internal service."""
    return grpc.aio.insecure_channel(address, options=OPTIONS, interceptors=[RequestIdClientInterceptor()])


async def is_serving(address: str, service: str = "", timeout: float = 1.0) -> bool:
    """True when the standard health check of `address` answers SERVING."""
    async with grpc.aio.insecure_channel(address) as ch:
        try:
            reply = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.aio.AioRpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def call(rpc: Callable[..., Awaitable[T]], request: Any, timeout: float, peer: str) -> T:
    """Call another service; its errors come back as domain errors (code, message, field
    violations and upstream code kept). `peer` names the service (never its address: messages
    reach clients); it is blamed only when it could not be reached, not when it answered
    UNAVAILABLE because something behind it was down."""
    try:
        return await rpc(request, timeout=timeout)
    except grpc.aio.AioRpcError as err:
        domain = errors.from_rpc_error(err)
        if isinstance(domain, errors.Unavailable) and not errors.answered_by_server(err):
            # The transport's words name addresses: they go to the log only.
            log.warning("peer unreachable", extra={"peer": peer, "error": (err.details() or "")[:300]})
            domain.message = f"{peer} is unavailable; retry shortly"
        raise domain from err
