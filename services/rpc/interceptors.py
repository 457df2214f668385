"""Server interceptors: request IDs, access logs, metrics, error mapping (the client side passes
request IDs on in services.rpc.client.RequestIdChannel)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter, Histogram

from services import errors, limits, logs
from services.rpc.decoding import Undecodable, refuse_undecodable, tolerant

log = logging.getLogger("rpc")

RPC_SECONDS = Histogram("cb_rpc_seconds", "Server-side RPC latency", ["method"])
RPC_TOTAL = Counter("cb_rpc_total", "RPCs handled", ["method", "code"])

_QUIET = ("/grpc.health.v1.Health/", "/grpc.reflection.")

# Labelled metric children, made once: `labels()` on every RPC takes a lock and builds a key.
# Bounded: only methods a handler exists for get here, and the codes are a fixed set.
_SECONDS: dict[str, Any] = {}
_TOTALS: dict[tuple[str, str], Any] = {}


def _count(method: str, code: str, elapsed: float) -> None:
    seconds = _SECONDS.get(method)
    if seconds is None:
        seconds = _SECONDS[method] = RPC_SECONDS.labels(method)
    total = _TOTALS.get((method, code))
    if total is None:
        total = _TOTALS[(method, code)] = RPC_TOTAL.labels(method, code)
    seconds.observe(elapsed)
    total.inc()


def _incoming_request_id(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id" and isinstance(value, str) and value:
            return value[:128]
    return uuid.uuid4().hex


async def _abort(context: grpc.aio.ServicerContext, exc: Exception, method: str) -> None:
    if isinstance(exc, errors.DomainError):
        err = exc
    else:
        log.exception("unexpected error", extra={"method": method})
        err = errors.Internal(f"internal error: {type(exc).__name__}")
    await context.abort(err.code, err.status_message(), trailing_metadata=err.trailing_metadata())


def _admit(request: Any) -> None:
    """Refuse, as INVALID_ARGUMENT, a request that did not decode or holds a value over its limit."""
    if isinstance(request, Undecodable):
        raise request.error()
    limits.check_request(request)


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Sets the request ID, maps domain errors to statuses, logs and counts every RPC."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method
        if handler is None:
            return handler
        if method.startswith(_QUIET):
            return refuse_undecodable(handler)
        deserialize = tolerant(handler.request_deserializer)

        def finish(context: grpc.aio.ServicerContext, start: float, code: str) -> None:
            elapsed = time.perf_counter() - start
            _count(method, code, elapsed)
            level = logging.INFO if code in ("OK", "NOT_FOUND", "ALREADY_EXISTS") else logging.WARNING
            if log.isEnabledFor(level):
                log.log(level, "rpc", extra={"method": method, "code": code, "ms": round(elapsed * 1e3, 2)})

        if handler.unary_unary:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                logs.request_id.set(_incoming_request_id(context))
                start = time.perf_counter()
                try:
                    _admit(request)
                    response = await inner_uu(request, context)
                except Exception as exc:
                    code = exc.code.name if isinstance(exc, errors.DomainError) else "INTERNAL"
                    finish(context, start, code)
                    await _abort(context, exc, method)
                    raise  # unreachable: abort raises
                finish(context, start, "OK")
                return response

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=deserialize,
                response_serializer=handler.response_serializer,
            )

        if handler.unary_stream:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                logs.request_id.set(_incoming_request_id(context))
                start = time.perf_counter()
                try:
                    _admit(request)
                    async for item in inner_us(request, context):
                        yield item
                except Exception as exc:
                    code = exc.code.name if isinstance(exc, errors.DomainError) else "INTERNAL"
                    finish(context, start, code)
                    await _abort(context, exc, method)
                    raise
                finish(context, start, "OK")

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=deserialize,
                response_serializer=handler.response_serializer,
            )
        return handler
