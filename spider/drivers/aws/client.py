"""EC2 as the aws driver sees it: a boto3 client whose calls run in a bounded
thread pool (never on the event loop), pass through the connection's gate, and
come back as classified CloudErrors."""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)

from services import errors
from spider.drivers.base import Caller, CloudError

# EC2 error codes and what they mean to the suite, held as data.
RETRYABLE = {"RequestLimitExceeded", "Throttling", "ThrottlingException", "InternalError", "ServiceUnavailable",
             "Unavailable", "InternalFailure"}
_EXACT: dict[str, type[errors.DomainError]] = {
    "InstanceLimitExceeded": errors.ResourceExhausted,
    "VcpuLimitExceeded": errors.ResourceExhausted,
    "RequestLimitExceeded": errors.ResourceExhausted,
    "Throttling": errors.ResourceExhausted,
    "ThrottlingException": errors.ResourceExhausted,
    "InsufficientInstanceCapacity": errors.Unavailable,
    "InternalError": errors.Unavailable,
    "InternalFailure": errors.Unavailable,
    "ServiceUnavailable": errors.Unavailable,
    "Unavailable": errors.Unavailable,
    "UnauthorizedOperation": errors.PermissionDenied,
    "AuthFailure": errors.PermissionDenied,
    "InvalidClientTokenId": errors.PermissionDenied,
    "SignatureDoesNotMatch": errors.PermissionDenied,
    "OptInRequired": errors.PermissionDenied,
    "IncorrectInstanceState": errors.FailedPrecondition,
    "IncorrectState": errors.FailedPrecondition,
    "DependencyViolation": errors.FailedPrecondition,
    "VolumeInUse": errors.FailedPrecondition,
    "InvalidGroup.InUse": errors.FailedPrecondition,
    "IdempotentParameterMismatch": errors.InvalidArgument,
}
# Then by suffix or prefix, for the families EC2 names consistently.
_SUFFIX: list[tuple[str, type[errors.DomainError]]] = [
    (".NotFound", errors.NotFound), (".Duplicate", errors.AlreadyExists), ("LimitExceeded", errors.ResourceExhausted),
    (".Malformed", errors.InvalidArgument), (".Range", errors.InvalidArgument), ("InUse", errors.FailedPrecondition),
]
_PREFIX: list[tuple[str, type[errors.DomainError]]] = [
    ("InvalidParameter", errors.InvalidArgument), ("MissingParameter", errors.InvalidArgument),
    ("Invalid", errors.InvalidArgument), ("Unsupported", errors.InvalidArgument),
]


def error_class(code: str) -> type[errors.DomainError]:
    """The domain error for an EC2 error code."""
    if code in _EXACT:
        return _EXACT[code]
    for suffix, cls in _SUFFIX:
        if code.endswith(suffix):
            return cls
    for prefix, cls in _PREFIX:
        if code.startswith(prefix):
            return cls
    return errors.Internal


def classify(err: Exception) -> CloudError:
    if isinstance(err, ClientError):
        code = str(err.response.get("Error", {}).get("Code", "Unknown"))
        message = str(err.response.get("Error", {}).get("Message", "")) or code
        return CloudError(error_class(code), message, code, retryable=code in RETRYABLE)
    if isinstance(err, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError | ConnectionError
                  | HTTPClientError):
        # No answer came back: the cloud may or may not have acted (no cloud code marks that).
        return CloudError(errors.Unavailable, f"EC2 endpoint unreachable: {err}", retryable=True, transport=True)
    return CloudError(errors.Internal, f"EC2 client error: {err}")


class Ec2:
    """One credential on one region (and endpoint); every call through the gate."""

    def __init__(self, access_key: str, secret_key: str, region: str, endpoint: str, caller: Caller,
                 threads: int) -> None:
        session = boto3.session.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                                        region_name=region)
        # The gate retries with backoff; boto3's own retries would hide throttling from it.
        config = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=60,
                        max_pool_connections=threads)
        self.client = session.client("ec2", endpoint_url=endpoint or None, config=config)
        self.region = region
        self.caller = caller
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"ec2-{region}")

    async def call(self, api: str, resource_type: str = "", resource_name: str = "", **params: Any) -> dict[str, Any]:
        """Call EC2 `api` (its own name, e.g. RunInstances) with `params`."""
        method = getattr(self.client, _snake(api))

        async def once() -> dict[str, Any]:
            loop = asyncio.get_running_loop()
            try:
                result: dict[str, Any] = await loop.run_in_executor(self.pool, functools.partial(method, **params))
            except (ClientError, BotoCoreError) as err:
                raise classify(err) from err
            return result

        return await self.caller(api, once, resource_type, resource_name)

    async def pages(self, api: str, key: str, resource_type: str = "", **params: Any) -> list[dict[str, Any]]:
        """Every item under `key` across the pages of a Describe call."""
        out: list[dict[str, Any]] = []
        token = ""
        while True:
            page = await self.call(api, resource_type, **params, **({"NextToken": token} if token else {}))
            out.extend(page.get(key, []))
            token = page.get("NextToken", "")
            if not token:
                return out

    async def close(self) -> None:
        self.pool.shutdown(wait=False)
        self.client.close()


@functools.cache
def _snake(api: str) -> str:
    out = []
    for i, ch in enumerate(api):
        if ch.isupper() and i and not api[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)
