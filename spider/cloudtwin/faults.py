"""The emulated cloud's errors: a gRPC code plus the cloud's own error code.

A real cloud answers with an HTTP status and a code string such as
`InstanceLimitExceeded`; CloudTwin answers with the matching gRPC code and the
code string in the trailing metadata key `x-twin-error-code`, so the `mock`
driver can classify errors exactly as the `aws` driver does.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2

from services import errors

ERROR_CODE_KEY = "x-twin-error-code"
ERROR_DOMAIN = "cloudtwin.cb"


class CloudError(errors.DomainError):
    """An expected failure of the emulated cloud, carrying the cloud's error code."""

    def __init__(self, code: grpc.StatusCode, cloud_code: str, message: str, field: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.cloud_code = cloud_code
        self.field = field

    def details(self) -> list[any_pb2.Any]:
        """google.rpc.ErrorInfo (reason = the cloud code), plus BadRequest for a bad field."""
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason=self.cloud_code, domain=ERROR_DOMAIN))
        out = [info]
        if self.field:
            bad = any_pb2.Any()
            bad.Pack(error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=self.field, description=self.message)
            ]))
            out.append(bad)
        return out

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        """What travels with the status: the cloud code and the rich status details."""
        return ((ERROR_CODE_KEY, self.cloud_code), (errors.DETAILS_KEY, self.to_status().SerializeToString()))


def unauthenticated(message: str) -> CloudError:
    return CloudError(grpc.StatusCode.UNAUTHENTICATED, "Unauthenticated", message)


def invalid_parameter(field: str, message: str) -> CloudError:
    return CloudError(grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameterValue", f"{field}: {message}", field)


def invalid_instance_type(spec: str, region: str) -> CloudError:
    return CloudError(grpc.StatusCode.INVALID_ARGUMENT, "InvalidInstanceType",
                      f"spec {spec!r} is not offered in region {region}", "vm.spec")


def idempotent_mismatch(token: str, message: str) -> CloudError:
    return CloudError(grpc.StatusCode.INVALID_ARGUMENT, "IdempotentParameterMismatch",
                      f"client_token {token!r}: {message}", "client_token")


def invalid_region(message: str) -> CloudError:
    """An unknown provider or region."""
    return CloudError(grpc.StatusCode.NOT_FOUND, "InvalidRegion", message)


def image_not_found(image_id: str, region: str) -> CloudError:
    return CloudError(grpc.StatusCode.NOT_FOUND, "InvalidImageId.NotFound",
                      f"image {image_id!r} does not exist in region {region}")


def resource_not_found(kind: str, resource_id: str) -> CloudError:
    return CloudError(grpc.StatusCode.NOT_FOUND, "ResourceNotFound", f"{kind} {resource_id!r} does not exist")


def incorrect_state(message: str) -> CloudError:
    return CloudError(grpc.StatusCode.FAILED_PRECONDITION, "IncorrectState", message)


def dependency_violation(message: str) -> CloudError:
    return CloudError(grpc.StatusCode.FAILED_PRECONDITION, "DependencyViolation", message)


def volume_in_use(disk_id: str, vm_id: str) -> CloudError:
    return CloudError(grpc.StatusCode.FAILED_PRECONDITION, "VolumeInUse",
                      f"disk {disk_id} is attached to {vm_id}")


def request_limit_exceeded(provider: str, region: str) -> CloudError:
    return CloudError(grpc.StatusCode.RESOURCE_EXHAUSTED, "RequestLimitExceeded",
                      f"request rate exceeded for {provider}/{region}; slow down")


def instance_limit_exceeded(limit: int, region: str) -> CloudError:
    return CloudError(grpc.StatusCode.RESOURCE_EXHAUSTED, "InstanceLimitExceeded",
                      f"you have reached your quota of {limit} VMs in {region}")


def vcpu_limit_exceeded(limit: int, wanted: int, region: str) -> CloudError:
    return CloudError(grpc.StatusCode.RESOURCE_EXHAUSTED, "VcpuLimitExceeded",
                      f"{wanted} vCPUs would exceed your quota of {limit} vCPUs in {region}")


def insufficient_capacity(spec: str, region: str) -> CloudError:
    return CloudError(grpc.StatusCode.UNAVAILABLE, "InsufficientInstanceCapacity",
                      f"not enough {spec} capacity in {region} now; try later or another zone")
