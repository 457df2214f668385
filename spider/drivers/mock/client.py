"""The CloudTwin API as the mock driver sees it: a stub, credentials in metadata,
and the twin's error codes turned into classified CloudErrors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as tw_grpc
from services import errors
from services.rpc.client import channel
from spider.drivers.base import Caller, CloudError

# Errors worth another try: the twin throttled us, or could not be reached.
RETRYABLE_CODES = {"RequestLimitExceeded"}

_BY_GRPC: dict[grpc.StatusCode, type[errors.DomainError]] = {
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.UNAUTHENTICATED: errors.PermissionDenied,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
}

_channels: dict[str, grpc.aio.Channel] = {}


def classify(err: grpc.aio.AioRpcError) -> CloudError:
    """A twin RPC error as a CloudError with the right domain error and retry flag."""
    code = next((v for k, v in (err.trailing_metadata() or ()) if k == "x-twin-error-code"), "")
    cloud_code = str(code)
    transport = err.code() == grpc.StatusCode.UNAVAILABLE and not cloud_code
    message = err.details() or err.code().name
    if transport:
        message = f"CloudTwin is unreachable: {message}"
    return CloudError(_BY_GRPC.get(err.code(), errors.Internal), message, cloud_code,
                      retryable=transport or cloud_code in RETRYABLE_CODES, transport=transport)


class TwinClient:
    """One account on one CloudTwin provider/region, every call through the connection's gate."""

    def __init__(self, endpoint: str, provider: str, region: str, access_key: str, secret_key: str,
                 caller: Caller) -> None:
        if endpoint not in _channels:
            _channels[endpoint] = channel(endpoint)
        self.stub = tw_grpc.CloudTwinStub(_channels[endpoint])
        self.provider = provider
        self.region = region
        self.caller = caller
        self._metadata = (("x-twin-access-key", access_key), ("x-twin-secret-key", secret_key))

    async def call(self, api: str, rpc: Callable[..., Awaitable[Any]], request: Any,
                   resource_type: str = "", resource_name: str = "") -> Any:
        async def once() -> Any:
            try:
                return await rpc(request, metadata=self._metadata, timeout=60)
            except grpc.aio.AioRpcError as err:
                raise classify(err) from err

        return await self.caller(api, once, resource_type, resource_name)

    # The twin's generic resource API, with the kind in the call log's API name.

    async def create(self, req: tw.CreateResourceRequest, kind: str, name: str) -> tw.Resource:
        req.provider, req.region = self.provider, self.region
        result: tw.Resource = await self.call(f"CreateResource:{kind}", self.stub.CreateResource, req, kind, name)
        return result

    async def get(self, kind: tw.Kind, csp_id: str) -> tw.Resource:
        req = tw.GetResourceRequest(provider=self.provider, region=self.region, kind=kind, id=csp_id)
        result: tw.Resource = await self.call(f"GetResource:{tw.Kind.Name(kind)}", self.stub.GetResource, req,
                                              tw.Kind.Name(kind), csp_id)
        return result

    async def list(self, kind: tw.Kind) -> list[tw.Resource]:
        out: list[tw.Resource] = []
        token = ""
        while True:
            req = tw.ListResourcesRequest(provider=self.provider, region=self.region, kind=kind, page_size=1000,
                                          page_token=token)
            page = await self.call(f"ListResources:{tw.Kind.Name(kind)}", self.stub.ListResources, req,
                                   tw.Kind.Name(kind))
            out.extend(page.resources)
            token = page.next_page_token
            if not token:
                return out

    async def delete(self, kind: tw.Kind, csp_id: str) -> tw.Resource:
        req = tw.DeleteResourceRequest(provider=self.provider, region=self.region, kind=kind, id=csp_id)
        result: tw.Resource = await self.call(f"DeleteResource:{tw.Kind.Name(kind)}", self.stub.DeleteResource,
                                              req, tw.Kind.Name(kind), csp_id)
        return result

    async def act(self, req: tw.ActOnResourceRequest) -> tw.Resource:
        req.provider, req.region = self.provider, self.region
        result: tw.Resource = await self.call(f"ActOnResource:{tw.Kind.Name(req.kind)}:{req.action}",
                                              self.stub.ActOnResource, req, tw.Kind.Name(req.kind), req.id)
        return result
