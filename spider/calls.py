"""The gate every cloud call passes: rate limit, bounded concurrency, retries, call log.

One Gate per connection protects one cloud account/region from being flooded,
and turns a throttled cloud into a short wait instead of a failure.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf import any_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2

from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from spider.calllog import CallLog
from spider.drivers.base import CloudError

T = TypeVar("T")


class TokenBucket:
    """`rate` calls per second with bursts of `burst`; callers beyond it wait their turn."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._stamp = time.monotonic()

    async def take(self) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        # Going into debt reserves a slot; the wait pays it back. No lock needed on one loop.
        self._tokens -= 1
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)


@dataclass(frozen=True)
class Limits:
    rate_per_second: float
    burst: int
    max_concurrency: int
    max_retries: int
    backoff_base: float = 0.1
    backoff_max: float = 5.0


@dataclass(frozen=True)
class CallSite:
    """Who is calling, for the call log."""

    connection: str
    driver: str
    provider: str
    region: str


class CloudUnreachable(errors.Unavailable):
    """A connection's cloud endpoint gave no answer: UNAVAILABLE, blaming the cloud and not spider.

    It carries ErrorInfo{reason: CLOUD_UNREACHABLE, domain: spider}, so a caller (the gateway)
    does not report spider itself as down. The message names the connection, not the endpoint's
    address (the transport's own words stay in the call log). No upstream code: the cloud did not
    answer, so the failure stays ambiguous (spider looks for what the cloud may have made) and
    retryable for tumblebug."""

    REASON = "CLOUD_UNREACHABLE"
    DOMAIN = "spider"

    def __init__(self, site: CallSite, api: str, attempts: int) -> None:
        super().__init__(f"the cloud of connection {site.connection!r} ({site.driver}, {site.provider} "
                         f"{site.region}) is unreachable: {api} got no answer from its endpoint after {attempts} "
                         f"attempt{'s' if attempts > 1 else ''}; check the region's endpoint setting and "
                         f"whether the cloud is up")
        self.site = site

    def details(self) -> list[any_pb2.Any]:
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason=self.REASON, domain=self.DOMAIN, metadata={
            "connection": self.site.connection, "driver": self.site.driver, "provider": self.site.provider,
            "region": self.site.region}))
        return [*super().details(), info]


class Gate:
    """A connection's Caller: see spider.drivers.base.Caller."""

    def __init__(self, site: CallSite, limits: Limits, log: CallLog) -> None:
        self.site = site
        self.limits = limits
        self._bucket = TokenBucket(limits.rate_per_second, limits.burst)
        self._slots = asyncio.Semaphore(max(1, limits.max_concurrency))
        self._log = log

    async def __call__(self, api: str, fn: Callable[[], Awaitable[T]], resource_type: str = "",
                       resource_name: str = "") -> T:
        attempt = 0
        while True:
            attempt += 1
            await self._bucket.take()
            async with self._slots:
                start = time.perf_counter()
                try:
                    result = await fn()
                except CloudError as err:
                    self._record(api, resource_type, resource_name, start, attempt, err)
                    if not err.retryable or attempt > self.limits.max_retries:
                        raise (CloudUnreachable(self.site, api, attempt) if err.transport else err.to_domain()) from err
                else:
                    self._record(api, resource_type, resource_name, start, attempt, None)
                    return result
            await asyncio.sleep(self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        # Full jitter: spreads retries of many callers hit by the same throttle.
        cap = min(self.limits.backoff_max, self.limits.backoff_base * 2 ** (attempt - 1))
        return random.uniform(0, cap)

    def _record(self, api: str, rtype: str, rname: str, start: float, attempt: int, err: CloudError | None) -> None:
        now = Timestamp()
        now.GetCurrentTime()
        error = ""
        if err is not None:
            error = f"{err.cloud_code}: {err.message}" if err.cloud_code else err.message
        self._log.record(pb.CallLogEntry(
            time=now, connection=self.site.connection, driver=self.site.driver, provider=self.site.provider,
            region=self.site.region, resource_type=rtype, resource_name=rname, cloud_api=api,
            elapsed_seconds=time.perf_counter() - start, error=error, attempt=attempt,
        ))
