"""Domain errors, and how they become gRPC statuses with google.rpc details.

Service code raises these; the server interceptor turns them into the right
gRPC code. Nothing expected ever surfaces as UNKNOWN or INTERNAL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

DETAILS_KEY = "grpc-status-details-bin"
UPSTREAM_DOMAIN = "cloud"

# What an error may carry, in UTF-8 bytes. The message travels twice in the trailers (grpc-message,
# percent-encoded, and inside the details, base64), and a client refuses trailers over 8 KiB with
# RESOURCE_EXHAUSTED, which reads as a rate limit: so a message that echoes a huge input is cut.
MAX_MESSAGE_BYTES = 1024
MAX_FIELD_BYTES = 128
MAX_DESCRIPTION_BYTES = 256
MAX_VIOLATIONS = 8


# How gRPC's transport names a peer ("ipv4:127.0.0.1:7000", "ipv6:[::1]:7000"): such words reach
# messages when a service passes on why it could not connect; internal addresses stay out.
_TRANSPORT_ADDRESS = re.compile(r"\b(?:ipv4|ipv6|unix|unix-abstract):(?:\[[^\]]*\]|[^\s,;\]]+?)(?::\d+)?(?=[\s,;:\]]|$)")


def without_addresses(text: str) -> str:
    """`text` with gRPC transport addresses replaced by a placeholder."""
    return _TRANSPORT_ADDRESS.sub("<address>", text) if ":" in text else text


def cut(text: str, limit: int) -> str:
    """`text` if it fits in `limit` UTF-8 bytes, else its start, an ellipsis and its full length."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    tail = f"… ({len(text)} characters)"
    return raw[:max(limit - len(tail.encode()), 0)].decode(errors="ignore") + tail


class DomainError(Exception):
    """Base class: an expected failure with a gRPC code and a readable message."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, upstream_code: str = "") -> None:
        super().__init__(message)
        self.message = message
        # The error code an upstream system (a cloud) answered with, when it answered.
        self.upstream_code = upstream_code

    def details(self) -> list[any_pb2.Any]:
        """google.rpc details: the upstream's error code travels as ErrorInfo, so a caller
        two services away still knows the cloud itself answered."""
        if not self.upstream_code:
            return []
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason=cut(self.upstream_code, MAX_FIELD_BYTES),
                                              domain=UPSTREAM_DOMAIN))
        return [info]

    def status_message(self) -> str:
        """The message as sent: cut to MAX_MESSAGE_BYTES, without transport addresses."""
        return cut(without_addresses(self.message), MAX_MESSAGE_BYTES)

    def to_status(self) -> status_pb2.Status:
        status = status_pb2.Status(code=self.code.value[0], message=self.status_message())
        status.details.extend(self.details())
        return status

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        """What travels with the status: the rich google.rpc.Status (subclasses may add keys)."""
        return ((DETAILS_KEY, self.to_status().SerializeToString()),)


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(DomainError):
    """Lost a compare-and-swap race; the caller may retry."""

    code = grpc.StatusCode.ABORTED


class ResourceExhausted(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(DomainError):
    """A dependency (etcd, NATS, a cloud) cannot be reached now."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(DomainError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Internal(DomainError):
    code = grpc.StatusCode.INTERNAL


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class InvalidArgument(DomainError):
    """Bad input; names every offending field (google.rpc.BadRequest)."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, violations: list[FieldViolation] | None = None) -> None:
        super().__init__(message)
        self.violations = violations or []

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls(f"{field}: {description}", [FieldViolation(field, description)])

    def details(self) -> list[any_pb2.Any]:
        if not self.violations:
            return super().details()
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=cut(v.field, MAX_FIELD_BYTES),
                                                            description=cut(v.description, MAX_DESCRIPTION_BYTES))
                for v in self.violations[:MAX_VIOLATIONS]
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad)
        return [packed, *super().details()]


_BY_CODE: dict[grpc.StatusCode, type[DomainError]] = {
    cls.code: cls
    for cls in (
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        Aborted,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        PermissionDenied,
        Unauthenticated,
        InvalidArgument,
        Internal,
    )
}


def from_rpc_error(err: grpc.aio.AioRpcError) -> DomainError:
    """Turn an error from a downstream service back into a domain error, so it
    passes through this service with its code, message and field violations intact."""
    cls = _BY_CODE.get(err.code(), Internal)
    message = err.details() or err.code().name
    status = _status_of(err)
    upstream = ""
    violations: list[FieldViolation] = []
    for detail in status.details:
        info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
        if detail.Unpack(info) and info.domain == UPSTREAM_DOMAIN:
            upstream = info.reason
        elif detail.Unpack(bad):
            violations.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    out = InvalidArgument(message, violations) if cls is InvalidArgument else cls(message)
    out.upstream_code = upstream
    return out


def _status_of(err: grpc.aio.AioRpcError) -> status_pb2.Status:
    for key, value in err.trailing_metadata() or ():
        if key == DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return status_pb2.Status()


def answered_by_server(err: grpc.aio.AioRpcError) -> bool:
    """True when the status came from a server of the suite (its interceptor always sends the
    google.rpc details trailer), False when the channel made it up: the server could not be
    reached, or the connection broke before an answer."""
    return any(key == DETAILS_KEY for key, _ in err.trailing_metadata() or ())


def bad_request_of(err: grpc.aio.AioRpcError) -> list[error_details_pb2.BadRequest.FieldViolation]:
    """The field violations carried by an INVALID_ARGUMENT error, if any."""
    out = []
    for detail in _status_of(err).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.extend(bad.field_violations)
    return out


assert grpc.StatusCode.NOT_FOUND.value[0] == code_pb2.NOT_FOUND
