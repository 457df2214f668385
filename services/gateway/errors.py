"""gRPC status → HTTP status, and the error body: the JSON form of `google.rpc.Status`.

The body is `{"code": <gRPC code number>, "message": "...", "details": [...]}`, each detail an
`Any` with its `@type` (field violations arrive as `google.rpc.BadRequest`). It is the same
body Envoy's gRPC-JSON transcoder writes, so a client cannot tell the two apart. The HTTP
statuses follow DESIGN §3 (FAILED_PRECONDITION is 409: the resource is in the wrong state).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from google.protobuf import any_pb2, json_format
from google.rpc import error_details_pb2, status_pb2

from services.errors import DETAILS_KEY, DomainError
from services.gateway.transcode import Violation

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


class GatewayError(Exception):
    """An error answered over HTTP: a gRPC code, a message, `google.rpc` details, extra headers."""

    def __init__(self, code: grpc.StatusCode, message: str, details: Sequence[dict[str, Any]] = (),
                 headers: Mapping[str, str] | None = None, http_status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details)
        self.headers = dict(headers or {})
        self.http_status = http_status or HTTP_STATUS.get(code, 500)

    def body(self) -> dict[str, Any]:
        return {"code": self.code.value[0], "message": self.message, "details": self.details}


def bad_request(message: str, violations: Sequence[Violation]) -> GatewayError:
    """INVALID_ARGUMENT with a `google.rpc.BadRequest` naming each field."""
    bad = error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description) for v in violations])
    return GatewayError(grpc.StatusCode.INVALID_ARGUMENT, message, [_detail(_pack(bad))])


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _detail(packed: any_pb2.Any) -> dict[str, Any]:
    try:
        return json_format.MessageToDict(packed)
    except (TypeError, KeyError, json_format.Error):
        # A detail type this gateway does not know: pass its bytes on rather than drop it.
        return {"@type": packed.type_url, "value": base64.b64encode(packed.value).decode()}


def from_rpc_error(err: grpc.aio.AioRpcError) -> GatewayError:
    """The HTTP error for a failed RPC, keeping the backend's message and details."""
    code = err.code()
    message = err.details() or code.name
    details: list[dict[str, Any]] = []
    for key, value in err.trailing_metadata() or ():
        if key == DETAILS_KEY and isinstance(value, bytes):
            try:
                status = status_pb2.Status.FromString(value)
            except Exception:  # a malformed trailer must not hide the error itself
                continue
            details = [_detail(d) for d in status.details]
            message = status.message or message
    return GatewayError(code, message, details)


def from_domain_error(err: DomainError) -> GatewayError:
    """The HTTP error for a domain error raised in the gateway itself (its own API)."""
    return GatewayError(err.code, err.message, [_detail(d) for d in err.to_status().details])
