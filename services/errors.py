"""Domain errors, and how they become gRPC statuses with google.rpc details.

Service code raises these; the server interceptor turns them into the right
gRPC code. Nothing expected ever surfaces as UNKNOWN or INTERNAL.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

DETAILS_KEY = "grpc-status-details-bin"
UPSTREAM_DOMAIN = "cloud"


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
        info.Pack(error_details_pb2.ErrorInfo(reason=self.upstream_code, domain=UPSTREAM_DOMAIN))
        return [info]

    def to_status(self) -> status_pb2.Status:
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
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
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in self.violations
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


def bad_request_of(err: grpc.aio.AioRpcError) -> list[error_details_pb2.BadRequest.FieldViolation]:
    """The field violations carried by an INVALID_ARGUMENT error, if any."""
    out = []
    for detail in _status_of(err).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.extend(bad.field_violations)
    return out


assert grpc.StatusCode.NOT_FOUND.value[0] == code_pb2.NOT_FOUND
