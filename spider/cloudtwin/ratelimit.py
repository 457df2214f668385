"""API throttling: one token bucket per provider/region, like a cloud's request limit."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .knobs import RegionKey


@dataclass
class TokenBucket:
    """`rate` tokens a second, holding at most `burst`; one token per request."""

    rate: float
    burst: float
    tokens: float
    last: float

    def take(self, now: float) -> bool:
        # max(0, …): a wall clock stepped back must not drain the bucket.
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class RateLimiter:
    """Buckets per region, made when first needed and reset when the knobs change."""

    def __init__(self) -> None:
        self._buckets: dict[RegionKey, TokenBucket] = {}

    def allow(self, key: RegionKey, rate: float, burst: int, now: float) -> bool:
        """True when a request may pass; rate 0 means unlimited."""
        if rate <= 0:
            return True
        # Without a configured burst, allow one second's worth of requests at once.
        size = float(burst) if burst > 0 else max(1.0, math.ceil(rate))
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != rate or bucket.burst != size:
            bucket = self._buckets[key] = TokenBucket(rate=rate, burst=size, tokens=size, last=now)
        return bucket.take(now)
