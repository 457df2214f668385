"""The Starlette app: public routes (health, readiness, OpenAPI, docs) and the transcoded API.

Every API request goes: request ID → authentication → rate limit per client → route → request
message → gRPC call → JSON (or Server-Sent Events). Whatever fails on the way answers with the
`google.rpc.Status` body; nothing a client sends can make it a 500.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import grpc
from prometheus_client import Counter, Histogram
from starlette.applications import Starlette
from starlette.datastructures import URL
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services import logs
from services.gateway import dashboard, docs, keyservice, openapi, sse
from services.gateway import routes as api_routes
from services.gateway.accesslog import AccessLog
from services.gateway.apikeys import ApiKeyRegistry
from services.gateway.auth import Authenticator
from services.gateway.backends import Backends
from services.gateway.deadline import deadline
from services.gateway.descriptors import Comments
from services.gateway.errors import GatewayError, bad_request
from services.gateway.keyservice import KeyService
from services.gateway.ratelimit import RateLimiter, retry_after
from services.gateway.routes import NoRoute, RouteTable
from services.gateway.settings import GatewaySettings
from services.gateway.transcode import BadInput, build_request, dumps, response_value

log = logging.getLogger("gateway")

# Labelled by method and status only: paths carry resource names (unbounded cardinality).
HTTP_SECONDS = Histogram("cb_gateway_request_seconds", "Gateway request latency", ["method"])
HTTP_TOTAL = Counter("cb_gateway_requests_total", "Gateway requests answered", ["method", "status"])
MAX_BODY = 4 * 1024 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass
class Gateway:
    """What the app serves with: the backends and their routes, keys, limits and settings."""

    settings: GatewaySettings
    backends: Backends
    authenticator: Authenticator
    limiter: RateLimiter
    comments: Comments = field(default_factory=Comments)
    # The gateway's own API (API keys); None: not served.
    keys: KeyService | None = None
    registry: ApiKeyRegistry | None = None
    _openapi: tuple[int, bytes] = (-1, b"")

    def openapi_json(self) -> bytes:
        """The document for the current route table (rebuilt only when the table changed)."""
        version = self.backends.version
        if self._openapi[0] != version:
            own = self.keys.table.routes if self.keys is not None else []
            table = RouteTable([*self.backends.table.routes, *own])
            doc = openapi.document(table, self.comments, extra_paths=_PUBLIC_PATHS)
            self._openapi = (version, dumps(doc))
        return self._openapi[1]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(data), status_code=status, media_type="application/json", headers=headers)


def error_response(err: GatewayError) -> Response:
    headers = dict(err.headers)
    return json_response(err.body(), err.http_status, headers)


# ---------------------------------------------------------------- middleware


class RequestContext:
    """Request IDs (`X-Request-Id` in and out, and in the logs) and one JSON access-log line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Labelled metric children by method: `labels()` on every request costs a lock and a lookup.
        self._seconds: dict[str, Any] = {}
        self._totals: dict[tuple[str, int], Any] = {}
        self._access = AccessLog()

    def _observe(self, method: str, status: int, elapsed: float) -> None:
        seconds = self._seconds.get(method)
        if seconds is None:
            seconds = self._seconds[method] = HTTP_SECONDS.labels(method)
        total = self._totals.get((method, status))
        if total is None:
            total = self._totals[(method, status)] = HTTP_TOTAL.labels(method, str(status))
        seconds.observe(elapsed)
        total.inc()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        # 128 random bits as uuid4().hex gave, at a third of the cost.
        rid = incoming if incoming and _REQUEST_ID.match(incoming) else os.urandom(16).hex()
        token = logs.request_id.set(rid)
        scope.setdefault("state", {})["request_id"] = rid  # the API endpoint passes it on as gRPC metadata
        start = time.perf_counter()
        status = 500
        size = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            if len(self._seconds) < 64 or scope["method"] in self._seconds:
                self._observe(scope["method"], status, elapsed)
            else:  # a client inventing methods must not grow the cache
                HTTP_SECONDS.labels(scope["method"]).observe(elapsed)
                HTTP_TOTAL.labels(scope["method"], str(status)).inc()
            if self._access.enabled():
                client = scope.get("client") or ("", 0)
                self._access.write({
                    "method": scope["method"], "path": scope["path"], "status": status, "bytes": size,
                    "ms": round(elapsed * 1e3, 2), "remote": client[0],
                    "client": scope["state"].get("client", ""),
                })
            logs.request_id.reset(token)


# ---------------------------------------------------------------- endpoints


class JsonReply:
    """A JSON response sent straight to the ASGI server, with the headers Starlette's Response
    would send (given headers lowercased, then content-length and content-type), without
    building a Response object on the hot path."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        self.body = body
        self.status = status
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()] \
            if self.headers else []
        raw.append((b"content-length", str(len(self.body)).encode()))
        raw.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": self.status, "headers": raw})
        await send({"type": "http.response.body", "body": self.body})


def error_reply(err: GatewayError) -> JsonReply:
    return JsonReply(dumps(err.body()), err.http_status, err.headers)


async def _read_body(receive: Receive, declared: str) -> bytes:
    """The request body (as Starlette's `Request.stream`), refused past MAX_BODY."""
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, f"the body is larger than {MAX_BODY} bytes",
                           http_status=413)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        if message["type"] != "http.request":
            continue
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > MAX_BODY:
                raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, f"the body is larger than {MAX_BODY} bytes",
                                   http_status=413)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _headers(scope: Scope) -> tuple[str, str, str | None]:
    """Authorization, Content-Length and Grpc-Timeout (the first of each, as Starlette's Headers.get)."""
    authorization = length = ""
    timeout: str | None = None
    seen = 0
    for key, value in scope["headers"]:
        if key == b"authorization" and not seen & 1:
            authorization, seen = value.decode("latin-1"), seen | 1
        elif key == b"content-length" and not seen & 2:
            length, seen = value.decode("latin-1"), seen | 2
        elif key == b"grpc-timeout" and not seen & 4:
            timeout, seen = value.decode("latin-1"), seen | 4
    return authorization, length, timeout


def api_endpoint(gw: Gateway) -> ASGIApp:
    """The handler of every transcoded route: a bare ASGI app, no Request object or middleware of
    Starlette's in the way (they were a fifth of the gateway's CPU per proxied call)."""

    async def handle(scope: Scope, receive: Receive) -> ASGIApp:
        authorization, length, grpc_timeout = _headers(scope)
        client_address = scope.get("client")
        principal = await gw.authenticator.authenticate(authorization, client_address[0] if client_address else "")
        client = principal.name
        state = scope.setdefault("state", {})
        state["client"] = client
        wait = gw.limiter.check(client)
        if wait > 0:
            raise GatewayError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"rate limit of client {client!r} exceeded",
                               headers={"Retry-After": retry_after(wait)})
        method = scope["method"]
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.decode("latin-1").split("?")[0]
        try:
            route, bound = _find(gw, method, path)
        except NoRoute as exc:
            if exc.allowed:
                raise GatewayError(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not allowed here",
                                   headers={"Allow": ", ".join(exc.allowed)}, http_status=405) from None
            raise GatewayError(grpc.StatusCode.NOT_FOUND, f"no route for {method} {URL(scope=scope).path}") from None
        body = await _read_body(receive, length)
        query_string = scope.get("query_string", b"")
        query = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True) if query_string else []
        try:
            message = build_request(route, bound, query, body)
        except BadInput as exc:
            raise bad_request(str(exc), exc.violations) from None
        if route.rpc.backend == keyservice.BACKEND and gw.keys is not None:
            return JsonReply(dumps(response_value(route, await gw.keys.call(route, message, principal))))
        # Built here, never copied from the request: a client's own x-cb-* headers go nowhere.
        metadata = (("x-request-id", state["request_id"]), *principal.metadata())
        if route.rpc.server_streaming:
            stream = await gw.backends.open_stream(route, message, metadata)
            messages, first = await sse.first_message(stream)
            return sse.response(route, stream, messages, first, gw.settings.sse_keepalive_seconds)
        timeout = deadline(grpc_timeout, gw.settings.timeout_seconds, gw.settings.max_timeout_seconds)
        reply = await gw.backends.call(route, message, metadata, timeout)
        return JsonReply(dumps(response_value(route, reply)))

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        answer: ASGIApp
        try:
            answer = await handle(scope, receive)
        except GatewayError as err:
            answer = error_reply(err)
        except Exception:  # a bug of ours: say so without detail, log it in full
            log.exception("unexpected error", extra={"path": URL(scope=scope).path})
            answer = error_reply(GatewayError(grpc.StatusCode.INTERNAL, "internal gateway error"))
        await answer(scope, receive, send)

    return endpoint


def _find(gw: Gateway, method: str, path: str) -> tuple[api_routes.Route, dict[str, str]]:
    """The gateway's own routes first (their paths are /gateway/…), then the backends'."""
    if gw.keys is None or not path.startswith("/gateway/"):
        return gw.backends.table.find(method, path)
    try:
        return gw.keys.table.find(method, path)
    except NoRoute as own:
        try:
            return gw.backends.table.find(method, path)
        except NoRoute as theirs:
            raise (own if own.allowed else theirs) from None


def public_routes(gw: Gateway) -> list[BaseRoute]:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        health = await gw.backends.health()
        ready = any(health.values()) and len(gw.backends.table) > 0
        # Public: whether it is ready and which backend serves, never where they listen.
        body = {"ready": ready, "backends": {name: {"serving": ok} for name, ok in health.items()}}
        return json_response(body, 200 if ready else 503)

    async def openapi_json(request: Request) -> Response:
        return Response(gw.openapi_json(), media_type="application/json")

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        *docs.routes("cb-suite API"),
    ]


_READY_SCHEMA = {"type": "object", "properties": {
    "ready": {"type": "boolean"},
    "backends": {"type": "object", "additionalProperties": {"type": "object", "properties": {
        "serving": {"type": "boolean"}}}}}}
_PUBLIC_PATHS: dict[str, dict[str, Any]] = {
    "/healthz": {"get": {"operationId": "Gateway_Healthz", "tags": ["Gateway"], "security": [],
                         "summary": "The gateway process is up",
                         "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {
                             "type": "object", "properties": {"status": {"type": "string"}}}}}}}}},
    "/readyz": {"get": {"operationId": "Gateway_Readyz", "tags": ["Gateway"], "security": [],
                        "summary": "At least one backend serves; each backend's state",
                        "responses": {
                            "200": {"description": "Ready", "content": {"application/json": {"schema": _READY_SCHEMA}}},
                            "503": {"description": "No backend serves",
                                    "content": {"application/json": {"schema": _READY_SCHEMA}}}}}},
}


class Dispatch:
    """Public pages to Starlette's router, everything else straight to the API endpoint.

    A request whose first path segment is no public route's (and so could neither match one nor
    be redirected to one by a trailing slash) is what Starlette's router would give its fallback,
    the API endpoint, anyway; it goes there without Starlette's exception middlewares and route
    matching. Lifespan and anything not HTTP go to Starlette."""

    def __init__(self, public: Starlette, api: ASGIApp) -> None:
        self.public = public
        self.api = api
        self.segments = frozenset(_first_segment(getattr(r, "path", "/")) for r in public.routes)
        # A public route with a variable first segment could match anything: then Starlette routes all.
        self.everything_public = any("{" in s for s in self.segments)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.everything_public \
                and _first_segment(scope["path"]) not in self.segments:
            await self.api(scope, receive, send)
        else:
            await self.public(scope, receive, send)


def _first_segment(path: str) -> str:
    return path[1:].partition("/")[0]


def create_app(gw: Gateway, lifespan: Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]] | None
               = None) -> ASGIApp:
    """The ASGI app. Request IDs and the access log wrap everything, CORS (when configured) inside,
    then the public pages (Starlette) or the API endpoint."""
    api = api_endpoint(gw)
    public = Starlette(routes=[*public_routes(gw), *dashboard.routes()], lifespan=lifespan,
                       exception_handlers={HTTPException: _http_exception})
    # Every path that is not a public route is the API's: the router's fallback, not a pattern,
    # so no path (a newline in it, say) can miss the transcoder and get a plain-text 404.
    public.router.default = api
    app: ASGIApp = Dispatch(public, api)
    origins = gw.settings.cors_origin_list()
    if origins:
        app = CORSMiddleware(
            app, allow_origins=origins, allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-Id", "Grpc-Timeout"],
            expose_headers=["X-Request-Id", "Retry-After", "WWW-Authenticate"], max_age=600)
    return RequestContext(app)


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (a wrong method on a public route) in the same body as all others."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: grpc.StatusCode.NOT_FOUND, 405: grpc.StatusCode.UNIMPLEMENTED}.get(status, grpc.StatusCode.UNKNOWN)
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
    return error_response(GatewayError(code, str(getattr(exc, "detail", "")) or code.name, headers=headers,
                                       http_status=status))


@contextlib.asynccontextmanager
async def running(gw: Gateway) -> AsyncIterator[Gateway]:
    """Backends loaded and refreshing, stored API keys followed, for the life of the block."""
    if gw.registry is not None:
        await gw.registry.start()
    await gw.backends.start()
    try:
        yield gw
    finally:
        await gw.backends.close()
        if gw.registry is not None:
            await gw.registry.stop()
