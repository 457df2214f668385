"""Per-key exponential backoff with jitter and a cap (client-go's item failure rate limiter).

Each failure of a key doubles its next delay, from `base` up to `cap`; `forget` starts the key
over once it succeeds. Jitter shortens each delay by up to `jitter` of itself, so keys that
failed together (a dependency went away) do not all come back in the same instant.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass
class Backoff(Generic[K]):
    """Delays for keys that keep failing: `base * 2**failures`, at most `cap`, less up to `jitter`."""

    base: float = 0.05
    cap: float = 60.0
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random)
    _failures: dict[K, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not (0 < self.base <= self.cap) or not (0 <= self.jitter < 1):
            raise ValueError("backoff needs 0 < base <= cap and 0 <= jitter < 1")

    def when(self, key: K) -> float:
        """Count one more failure of `key` and return how long it should wait."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # The exponent is bounded so a key that failed for days cannot overflow a float.
        delay = min(self.cap, self.base * 2.0 ** min(failures, 64))
        return delay * (1.0 - self.jitter * self.rng.random())

    def retries(self, key: K) -> int:
        """Failures counted for `key` since it was last forgotten."""
        return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        """`key` succeeded: its next failure starts again at `base`."""
        self._failures.pop(key, None)
