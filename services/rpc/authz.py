"""Role-based authorization of every RPC a backend serves.

Who calls (`caller`): the verified TLS peer decides whether the identity metadata counts.
- peer "gateway": the caller is the principal the gateway put in the metadata; none → UNAUTHENTICATED.
- any other verified peer (a service, an operator's admin client certificate): full rights.
- no verified peer (a server without mutual TLS): the metadata when present, else full rights.

What a principal may call (`decide`) is data: the role a method needs (`required_role`), and, for
a key scoped to one namespace, the request field that names the namespace (`namespace_field`).
A scoped key reaches a method only when that field equals its namespace, or when the method is a
read of the shared catalog (`CATALOG_METHODS`); every other method is refused to it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cache
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from services import errors, roles
from services.roles import Principal, Role
from services.rpc import tls

log = logging.getLogger("authz")

# The TLS identity (certificate common name) of the REST gateway.
GATEWAY = "gateway"

# Anyone may call these: load balancers, the gateway loading descriptors, cbctl status.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
# A method whose name starts with one of these only reads.
READ_PREFIXES = ("Get", "List", "Watch", "Query", "Read", "Describe")
# Reads whose names do not say so.
READ_METHODS = frozenset({
    "/cbapi.spider.v1.Spider/ReconcileResources",  # reports mapped/only-spider/only-cloud; changes nothing
})
# Credentials (cloud credentials, agent credentials) and the emulator's own controls: admin only,
# reads included (an operator may not even list credential names).
ADMIN_METHODS = frozenset({
    "/cbapi.spider.v1.Spider/CreateCredential",
    "/cbapi.spider.v1.Spider/GetCredential",
    "/cbapi.spider.v1.Spider/ListCredentials",
    "/cbapi.spider.v1.Spider/DeleteCredential",
    "/cbapi.dragonfly.v1.Dragonfly/IssueAgentCredential",
    "/cbapi.dragonfly.v1.Dragonfly/RevokeAgentCredential",
    "/cbapi.cloudtwin.v1.CloudTwin/GetKnobs",
    "/cbapi.cloudtwin.v1.CloudTwin/SetKnobs",
    "/cbapi.cloudtwin.v1.CloudTwin/GetSpecTruth",
})
# Reads of what the clouds offer, shared by every namespace: open to namespace-scoped keys.
CATALOG_METHODS = frozenset({
    "/cbapi.tumblebug.v1.Tumblebug/ListCatalogSpecs",
    "/cbapi.tumblebug.v1.Tumblebug/ListCatalogImages",
    "/cbapi.spider.v1.Spider/ListDrivers",
    "/cbapi.spider.v1.Spider/ListImages",
    "/cbapi.spider.v1.Spider/GetImage",
    "/cbapi.spider.v1.Spider/ListSpecs",
    "/cbapi.spider.v1.Spider/GetSpec",
    "/cbapi.spider.v1.Spider/ListRegionZones",
    "/cbapi.spider.v1.Spider/ListPrices",
})
# Where the namespace is when it is not a string field `ns` or `namespace` of the request.
NAMESPACE_FIELDS = {
    "/cbapi.tumblebug.v1.Tumblebug/CreateNamespace": "namespace.name",
    "/cbapi.tumblebug.v1.Tumblebug/GetNamespace": "name",
    "/cbapi.tumblebug.v1.Tumblebug/DeleteNamespace": "name",
}
_DEFAULT_NAMESPACE_FIELDS = ("ns", "namespace")


def is_public(method: str) -> bool:
    return method.startswith(PUBLIC_PREFIXES)


def required_role(method: str) -> Role:
    """The least role that may call `method` (`/package.Service/Method`)."""
    if method in ADMIN_METHODS:
        return Role.ADMIN
    name = method.rsplit("/", 1)[-1]
    if method in READ_METHODS or name.startswith(READ_PREFIXES):
        return Role.VIEWER
    return Role.OPERATOR


@cache
def namespace_field(method: str, request: Descriptor) -> str:
    """The dotted path of the request's string field naming the namespace; "" when it has none."""
    if method in NAMESPACE_FIELDS:
        return NAMESPACE_FIELDS[method]
    for name in _DEFAULT_NAMESPACE_FIELDS:
        f = request.fields_by_name.get(name)
        if f is not None and f.type == FieldDescriptor.TYPE_STRING and not _repeated(f):
            return name
    return ""


def _repeated(f: FieldDescriptor) -> bool:
    return bool(f.is_repeated)


def _value(request: Message, path: str) -> str:
    current: Any = request
    for part in path.split("."):
        current = getattr(current, part)
    return str(current)


def decide(method: str, principal: Principal, request: Message) -> str:
    """Why `principal` may not call `method` with `request`; "" when it may."""
    if is_public(method):
        return ""
    need = required_role(method)
    if principal.role < need:
        what = "read only" if principal.role is Role.VIEWER else "no credentials or keys"
        return (f"permission denied: {principal.name or 'the caller'} has role {principal.role.label} "
                f"({what}); {method} needs {need.label}")
    if not principal.namespace:
        return ""
    path = namespace_field(method, request.DESCRIPTOR)
    if path:
        asked = _value(request, path)
        if asked == principal.namespace:
            return ""
        return (f"permission denied: {principal.name or 'the caller'} is limited to namespace "
                f"{principal.namespace!r}; {method} asked for namespace {asked[:64]!r}")
    if method in CATALOG_METHODS:
        return ""
    return (f"permission denied: {principal.name or 'the caller'} is limited to namespace "
            f"{principal.namespace!r}; {method} is not a method of one namespace")


def caller(context: grpc.aio.ServicerContext) -> Principal | None:
    """The principal the call is made for; None for full rights (another service of the suite, or
    an operator's own client certificate). Every server requires mutual TLS, so a call without a
    verified peer cannot arrive; should one, it is refused rather than trusted."""
    peer = tls.peer_identity(context)
    if peer is None:
        raise errors.Unauthenticated("a client certificate of the suite's CA is required")
    if peer != GATEWAY:
        return None
    try:
        principal = roles.from_metadata(context.invocation_metadata() or ())
    except ValueError as exc:
        raise errors.PermissionDenied(f"permission denied: {exc}") from None
    if principal is None:
        raise errors.Unauthenticated("the gateway sent no caller identity (x-cb-role)")
    return principal


def check(method: str, context: grpc.aio.ServicerContext, request: Message) -> None:
    """Raise PermissionDenied / Unauthenticated unless the caller may make this call."""
    principal = caller(context)
    if principal is None:
        return
    reason = decide(method, principal, request)
    if reason:
        log.warning("denied", extra={"method": method, "principal": principal.name, "role": principal.role.label,
                                     "namespace": principal.namespace})
        raise errors.PermissionDenied(reason)


class AuthzInterceptor(grpc.aio.ServerInterceptor):
    """Checks each call against the method policy before the servicer sees it.

    It raises domain errors, so it must sit inside services.rpc.interceptors.ServerInterceptor,
    which turns them into statuses."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method
        if handler is None or is_public(method):
            return handler
        if handler.unary_unary:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                check(method, context, request)
                return await inner_uu(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                check(method, context, request)
                async for item in inner_us(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        # Client streams (none served today but reflection, which is public) carry no single request
        # to read a namespace from: such a method is for full-rights callers and admins only.
        return _admin_only(handler, method)


def _admin_only(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    def check_admin(context: grpc.aio.ServicerContext) -> None:
        principal = caller(context)
        if principal is not None and (principal.role is not Role.ADMIN or principal.namespace):
            raise errors.PermissionDenied(f"permission denied: {method} is a client stream, open to "
                                          f"unscoped admins only; {principal.name} has role {principal.role.label}")

    if handler.stream_unary:
        inner_su = handler.stream_unary

        async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            check_admin(context)
            return await inner_su(requests, context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, request_deserializer=handler.request_deserializer,
                                                    response_serializer=handler.response_serializer)
    inner_ss = handler.stream_stream

    async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        check_admin(context)
        async for item in inner_ss(requests, context):
            yield item

    return grpc.stream_stream_rpc_method_handler(stream_stream, request_deserializer=handler.request_deserializer,
                                                 response_serializer=handler.response_serializer)
