"""The gateway's own API (`cbapi.gateway.v1.ApiKeys`): create, list, get and revoke API keys.

Its routes come from the proto's google.api.http rules like every backend's, are transcoded by
the same code and appear in the same OpenAPI document; the gateway answers them itself. Only an
admin whose key is not scoped to a namespace may call them (a scoped admin could otherwise mint
itself an unscoped key).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
from google.protobuf import descriptor_pool, empty_pb2
from google.protobuf.message import Message

from cbapi.gateway.v1 import gateway_pb2 as pb
from services import errors
from services.gateway.apikeys import ApiKeyRegistry
from services.gateway.auth import KeyStore, generate_key, hash_key
from services.gateway.backends import routes_of
from services.gateway.descriptors import Schema
from services.gateway.errors import GatewayError, from_domain_error
from services.gateway.routes import Route, RouteTable
from services.names import check_name
from services.roles import Principal, Role

BACKEND = "gateway"
_MAX_PAGE = 1000

Handler = Callable[[Message, Principal], Awaitable[Message]]


def schema() -> Schema:
    """The ApiKeys service as a backend schema (from the installed generated code)."""
    return Schema(BACKEND, descriptor_pool.Default(), (pb.DESCRIPTOR.services_by_name["ApiKeys"],), "installed")


def routes() -> list[Route]:
    return routes_of(schema())


class KeyService:
    """Answers the ApiKeys routes from the key store and the registry."""

    def __init__(self, keys: KeyStore, registry: ApiKeyRegistry | None, hash_rounds: int = 12) -> None:
        self.keys = keys
        self.registry = registry
        self.hash_rounds = hash_rounds
        self.table = RouteTable(routes())
        self._handlers: dict[str, Handler] = {
            "CreateApiKey": self._create, "ListApiKeys": self._list, "GetApiKey": self._get,
            "DeleteApiKey": self._delete}

    async def call(self, route: Route, request: Message, principal: Principal) -> Message:
        """Answer one request; domain errors become the gateway's error answers."""
        if principal.role is not Role.ADMIN or principal.namespace:
            scope = f" limited to namespace {principal.namespace!r}" if principal.namespace else ""
            raise GatewayError(grpc.StatusCode.PERMISSION_DENIED,
                               f"permission denied: {principal.name} has role {principal.role.label}{scope}; "
                               f"managing API keys needs an unscoped admin")
        try:
            return await self._handlers[route.rpc.method.name](request, principal)
        except errors.DomainError as exc:
            raise from_domain_error(exc) from None

    def _store(self) -> ApiKeyRegistry:
        if self.registry is None:
            raise errors.FailedPrecondition("this gateway keeps no API keys of its own (CB_GATEWAY_STORED_KEYS is off)")
        return self.registry

    async def _create(self, request: Message, principal: Principal) -> Message:
        assert isinstance(request, pb.CreateApiKeyRequest)
        name = check_name(request.name, "name")
        if not request.role:
            raise errors.InvalidArgument.field("role", "is required: admin, operator or viewer")
        try:
            role = Role.parse(request.role)
        except ValueError as exc:
            raise errors.InvalidArgument.field("role", str(exc)) from None
        if request.namespace:
            check_name(request.namespace, "namespace")
        if name in self.keys.static:
            raise errors.AlreadyExists(f"API key {name!r} already exists (in the keys file or CB_ADMIN_API_KEY)")
        registry = self._store()
        key = generate_key(name)
        record = await registry.create(name, role, request.namespace, hash_key(key, self.hash_rounds))
        return pb.CreatedApiKey(api_key=record.key, key=key)

    def _all(self) -> list[pb.ApiKey]:
        static = [pb.ApiKey(name=n, role=k.principal.role.label, namespace=k.principal.namespace, source="static")
                  for n, k in self.keys.static.items()]
        stored = [r.key for r in self.registry.all()] if self.registry is not None else []
        return sorted([*static, *stored], key=lambda k: k.name)

    async def _list(self, request: Message, principal: Principal) -> Message:
        assert isinstance(request, pb.ListApiKeysRequest)
        if request.page_size < 0:
            raise errors.InvalidArgument.field("page_size", "must not be negative")
        size = min(request.page_size or 100, _MAX_PAGE)
        keys = [k for k in self._all() if k.name > request.page_token]
        page = keys[:size]
        return pb.ListApiKeysResponse(api_keys=page, next_page_token=page[-1].name if len(keys) > size else "")

    async def _get(self, request: Message, principal: Principal) -> Message:
        assert isinstance(request, pb.GetApiKeyRequest)
        for key in self._all():
            if key.name == request.name:
                return key
        raise errors.NotFound(f"API key {request.name[:64]!r} not found")

    async def _delete(self, request: Message, principal: Principal) -> Message:
        assert isinstance(request, pb.DeleteApiKeyRequest)
        if request.name in self.keys.static:
            raise errors.FailedPrecondition(
                f"API key {request.name!r} comes from the keys file or CB_ADMIN_API_KEY: remove it there")
        if not await self._store().delete(request.name):
            raise errors.NotFound(f"API key {request.name[:64]!r} not found")
        return empty_pb2.Empty()
