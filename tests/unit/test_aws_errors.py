"""EC2 error codes → the suite's errors, and which are retried."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from services import errors
from spider.drivers.aws.client import _snake, classify


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"}}, "RunInstances")


@pytest.mark.parametrize(("code", "cls", "retryable"), [
    ("InvalidAMIID.NotFound", errors.NotFound, False),
    ("InvalidInstanceID.NotFound", errors.NotFound, False),
    ("InstanceLimitExceeded", errors.ResourceExhausted, False),
    ("VcpuLimitExceeded", errors.ResourceExhausted, False),
    ("VpcLimitExceeded", errors.ResourceExhausted, False),
    ("RequestLimitExceeded", errors.ResourceExhausted, True),
    ("Throttling", errors.ResourceExhausted, True),
    ("UnauthorizedOperation", errors.PermissionDenied, False),
    ("AuthFailure", errors.PermissionDenied, False),
    ("IncorrectInstanceState", errors.FailedPrecondition, False),
    ("DependencyViolation", errors.FailedPrecondition, False),
    ("InvalidGroup.Duplicate", errors.AlreadyExists, False),
    ("InvalidParameterValue", errors.InvalidArgument, False),
    ("InvalidAMIID.Malformed", errors.InvalidArgument, False),
    ("InsufficientInstanceCapacity", errors.Unavailable, False),
    ("InternalError", errors.Unavailable, True),
])
def test_ec2_codes(code: str, cls: type[errors.DomainError], retryable: bool) -> None:
    err = classify(_client_error(code))
    assert err.error is cls and err.retryable is retryable and err.cloud_code == code
    domain = err.to_domain()
    assert isinstance(domain, cls) and code in domain.message and domain.upstream_code == code


def test_no_answer_is_retryable_and_ambiguous() -> None:
    err = classify(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert err.error is errors.Unavailable and err.retryable and not err.cloud_code


def test_api_names_map_to_boto3_methods() -> None:
    assert _snake("RunInstances") == "run_instances"
    assert _snake("DescribeInstanceTypes") == "describe_instance_types"
    assert _snake("AuthorizeSecurityGroupIngress") == "authorize_security_group_ingress"
