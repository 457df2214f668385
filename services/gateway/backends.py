"""The services behind the gateway: one channel each, their APIs, and the routes built from them.

At start and every `refresh_seconds` each backend is asked for its descriptors by reflection.
A backend that answers contributes its own API; one that does not keeps the API it had, or
the installed generated code's, so its routes stay and answer 503. The route table is rebuilt
only when some backend's descriptor set changed, and swapped in one assignment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.api import annotations_pb2
from google.protobuf import message_factory
from google.protobuf.message import Message

from services.errors import answered_by_server
from services.gateway import descriptors
from services.gateway.descriptors import Schema
from services.gateway.errors import GatewayError, from_rpc_error
from services.gateway.routes import (
    Route,
    RouteTable,
    Rpc,
    RuleError,
    TemplateError,
    bindings_of,
    check_route,
    parse_template,
)
from services.rpc.client import channel, is_serving

log = logging.getLogger("gateway")

Metadata = Sequence[tuple[str, str]]


@dataclass
class Backend:
    """One service the gateway routes to."""

    name: str
    address: str
    channel: grpc.aio.Channel
    schema: Schema | None = None
    reachable: bool = False
    error: str = ""
    _calls: dict[str, Any] = field(default_factory=dict)

    def unary(self, rpc: Rpc) -> Any:
        call = self._calls.get(rpc.path)
        if call is None:
            call = self.channel.unary_unary(rpc.path, request_serializer=_serialize,
                                            response_deserializer=rpc.output_class.FromString)
            self._calls[rpc.path] = call
        return call

    def stream(self, rpc: Rpc) -> Any:
        key = f"stream:{rpc.path}"
        call = self._calls.get(key)
        if call is None:
            call = self.channel.unary_stream(rpc.path, request_serializer=_serialize,
                                             response_deserializer=rpc.output_class.FromString)
            self._calls[key] = call
        return call


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def routes_of(schema: Schema) -> list[Route]:
    """Every HTTP binding of every annotated RPC in `schema`; bad bindings are logged and skipped."""
    out: list[Route] = []
    for service in schema.services:
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue
            rpc = Rpc(schema.backend, method, message_factory.GetMessageClass(method.input_type),
                      message_factory.GetMessageClass(method.output_type))
            for http_method, template, body, response_body in bindings_of(options.Extensions[annotations_pb2.http]):
                try:
                    route = Route(http_method, parse_template(template), rpc, body, response_body)
                    check_route(route)
                except (TemplateError, RuleError) as exc:
                    log.warning("binding skipped", extra={"rpc": rpc.path, "template": template, "error": str(exc)})
                    continue
                out.append(route)
    return out


def build_table(schemas: Sequence[Schema]) -> RouteTable:
    """One table from all backends; the first backend listed wins a clash of method and path."""
    routes: list[Route] = []
    taken: dict[tuple[str, str], str] = {}
    for schema in schemas:
        for route in routes_of(schema):
            key = (route.http_method, route.template.openapi_path())
            if key in taken:
                log.warning("route clash", extra={"route": f"{key[0]} {key[1]}", "kept": taken[key],
                                                  "dropped": route.rpc.path})
                continue
            taken[key] = route.rpc.path
            routes.append(route)
    return RouteTable(routes)


class Backends:
    """The backends, their channels, and the current route table."""

    def __init__(self, addresses: Mapping[str, str], refresh_seconds: float = 30.0, timeout: float = 30.0,
                 reflection_timeout: float = 2.0) -> None:
        # Mutual TLS as the gateway's own identity; no interceptor: the request ID goes in each
        # call's metadata (cheaper than an aio interceptor).
        self.backends = {name: Backend(name, address, channel(address, request_ids=False))
                         for name, address in addresses.items()}
        self.refresh_seconds = refresh_seconds
        self.timeout = timeout
        self.reflection_timeout = reflection_timeout
        self.table = RouteTable([])
        # Bumped each time the table changes; the OpenAPI document is cached per version.
        self.version = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.refresh()
        if self.refresh_seconds > 0:
            self._task = asyncio.create_task(self._refresh_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for backend in self.backends.values():
            await backend.channel.close()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.refresh()
            except Exception:  # one bad refresh must not stop the next
                log.exception("refresh failed")

    async def refresh(self) -> bool:
        """Ask every backend for its API; rebuild the table if any changed. True when it changed."""
        changed = await asyncio.gather(*(self._load(b) for b in self.backends.values()))
        if any(changed) or self.version == 0:
            schemas = [b.schema for b in self.backends.values() if b.schema is not None]
            self.table = build_table(schemas)
            self.version += 1
            log.info("routes", extra={"routes": len(self.table), "backends": {
                b.name: (b.schema.source if b.schema else "none") for b in self.backends.values()}})
        return any(changed)

    async def _load(self, backend: Backend) -> bool:
        try:
            schema = await descriptors.from_reflection(backend.name, backend.channel, self.reflection_timeout)
        except (grpc.aio.AioRpcError, descriptors.ReflectionError, TimeoutError) as exc:
            if backend.reachable or not backend.error:
                log.warning("backend unavailable", extra={"backend": backend.name, "address": backend.address,
                                                          "error": _short(exc)})
            backend.reachable = False
            backend.error = _short(exc)
            if backend.schema is None:
                backend.schema = descriptors.from_installed(backend.name)
                return backend.schema is not None
            return False
        if not backend.reachable:
            log.info("backend reachable", extra={"backend": backend.name, "address": backend.address})
        backend.reachable, backend.error = True, ""
        if backend.schema is not None and backend.schema.digest == schema.digest:
            return False
        backend.schema = schema
        backend._calls.clear()
        return True

    async def health(self) -> dict[str, bool]:
        """Each backend's standard gRPC health check, asked now."""
        names = list(self.backends)
        answers = await asyncio.gather(*(is_serving(self.backends[n].address, timeout=0.5) for n in names))
        return dict(zip(names, answers, strict=True))

    async def call(self, route: Route, request: Message, metadata: Metadata, timeout: float = 0.0) -> Message:
        """Call a unary RPC (deadline `timeout`, else the default); a failure becomes a GatewayError
        with the backend's status."""
        backend = self.backends[route.rpc.backend]
        try:
            return await backend.unary(route.rpc)(request, timeout=timeout or self.timeout, metadata=metadata)
        except grpc.aio.AioRpcError as err:
            raise _error(backend, err) from None

    async def open_stream(self, route: Route, request: Message, metadata: Metadata) -> Stream:
        """Start a server-streaming RPC (no deadline: a watch lasts as long as its client)."""
        backend = self.backends[route.rpc.backend]
        return Stream(backend, backend.stream(route.rpc)(request, metadata=metadata))


class Stream:
    """A server-streaming call whose errors come out as GatewayError."""

    def __init__(self, backend: Backend, call: Any) -> None:
        self.backend = backend
        self.call = call

    async def messages(self) -> AsyncIterator[Message]:
        try:
            async for message in self.call:
                yield message
        except grpc.aio.AioRpcError as err:
            raise _error(self.backend, err) from None

    def cancel(self) -> None:
        self.call.cancel()


def _error(backend: Backend, err: grpc.aio.AioRpcError) -> GatewayError:
    out = from_rpc_error(err)
    if err.code() is grpc.StatusCode.UNAVAILABLE and not answered_by_server(err):
        # The backend itself could not be reached: say which one, but not where (the transport's
        # words name internal addresses; they go to the log). An UNAVAILABLE the backend answered
        # blames something behind it, in the backend's own words.
        log.warning("backend unreachable", extra={"backend": backend.name, "address": backend.address,
                                                  "error": (err.details() or "")[:300]})
        out.message = f"{backend.name} is unavailable; retry shortly"
    return out


def _short(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc) or type(exc).__name__
