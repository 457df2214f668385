"""A de-duplicating work queue with delayed and rate-limited adds (client-go's workqueue).

The rules that make a controller correct however events arrive:

- a key added while it waits in the queue is not queued twice (many events, one sync);
- a key taken by a worker is "processing" until `done`; added meanwhile, it is marked dirty and
  queued again at `done` (optionally after `requeue_gap`), so it is never synced by two workers at
  once and never misses a change that arrived during its sync;
- `add_after` holds a key back for a delay (the earlier of two delays wins); `add_rate_limited`
  holds it back by its own exponential backoff, which `forget` resets;
- `shutdown` stops taking keys; getters drain what is queued, then get `ShutDown`.

Not thread-safe: one event loop owns it (callbacks from informers run on that loop).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

from services.controller.backoff import Backoff
from services.controller.clock import Clock, LoopClock, Timer

K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):
    """The queue was shut down and holds no more keys."""


class WorkQueue(Generic[K]):
    """Keys to sync, each at most once in the queue and at most once in the hands of a worker."""

    def __init__(self, backoff: Backoff[K] | None = None, clock: Clock | None = None,
                 requeue_gap: float = 0.0) -> None:
        self.backoff: Backoff[K] = backoff if backoff is not None else Backoff()
        self.clock: Clock = clock if clock is not None else LoopClock()
        # A key changed during its own sync comes back after this long rather than at once, so a
        # burst of events about one key makes a few syncs rather than one per event.
        self.requeue_gap = requeue_gap
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()  # wants a sync: in `_queue`, or processing and to be queued at `done`
        self._processing: set[K] = set()
        self._waiting: dict[K, tuple[float, Timer]] = {}  # held back until a time
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False

    # ----------------------------------------------------------------- adding

    def add(self, key: K) -> None:
        """Queue `key` unless it is queued already; if a worker holds it, sync it again after."""
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # `done` queues it
        self._queue.append(key)
        self._wake()

    def add_after(self, key: K, delay: float) -> None:
        """Queue `key` once `delay` seconds have passed (at once when `delay` <= 0).
        A key already held back keeps the earlier of the two times."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        when = self.clock.now() + delay
        held = self._waiting.get(key)
        if held is not None:
            if held[0] <= when:
                return
            held[1].cancel()
        self._waiting[key] = (when, self.clock.call_later(delay, lambda: self._ready(key)))

    def add_rate_limited(self, key: K) -> None:
        """Queue `key` after its backoff, which grows with each call until `forget`."""
        self.add_after(key, self.backoff.when(key))

    def forget(self, key: K) -> None:
        """`key` was synced successfully: its backoff starts over."""
        self.backoff.forget(key)

    def retries(self, key: K) -> int:
        """How many rate-limited adds `key` had since it was last forgotten."""
        return self.backoff.retries(key)

    def _ready(self, key: K) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    # ----------------------------------------------------------------- taking

    def get_nowait(self) -> K | None:
        """The next key (now processing), None when none is queued, or `ShutDown`."""
        if not self._queue:
            if self._shutting_down:
                raise ShutDown
            return None
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    async def get(self) -> K:
        """Wait for the next key; it is processing until `done(key)`. Raises `ShutDown`."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken and cancelled at once: hand the wake-up to another getter
                else:
                    with contextlib.suppress(ValueError):
                        self._getters.remove(waiter)
                raise
        key = self.get_nowait()
        assert key is not None
        return key

    def done(self, key: K) -> None:
        """The worker finished with `key`; queue it again if it was added meanwhile."""
        self._processing.discard(key)
        if key not in self._dirty:
            return
        if self.requeue_gap > 0 and not self._shutting_down:
            self._dirty.discard(key)
            self.add_after(key, self.requeue_gap)
        else:
            self._queue.append(key)
            self._wake()

    def _wake(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # ------------------------------------------------------------ life, state

    def shutdown(self) -> None:
        """Take no more keys and drop the held-back ones; getters drain the queue, then `ShutDown`."""
        self._shutting_down = True
        for _, timer in self._waiting.values():
            timer.cancel()
        self._waiting.clear()
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def __len__(self) -> int:
        """Keys queued now (not those processing or held back)."""
        return len(self._queue)

    def processing(self, key: K) -> bool:
        return key in self._processing

    def waiting(self) -> int:
        """Keys held back by `add_after` or backoff."""
        return len(self._waiting)
