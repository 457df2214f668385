"""The controller runtime: informer events enqueue keys; workers sync one key at a time.

The pattern of Kubernetes' sample-controller. Event handlers do nothing but turn a changed record
into a key (`notify`); N workers take keys from a `WorkQueue` and call the controller's own
`sync(key)`, which reads the world (from informers), decides, and acts. A sync that raises is
retried after the key's backoff; one that returns resets it. The queue guarantees that one key is
never synced by two workers at once and that a change during a sync brings another sync.
Everything runs only in the elected leader (`run_as_leader`), with fresh sources and a fresh
queue for each term.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

from services.controller.backoff import Backoff
from services.controller.clock import Clock
from services.controller.workqueue import ShutDown, WorkQueue
from services.store.election import Election

K = TypeVar("K", bound=Hashable)

log = logging.getLogger("controller")


class Source(Protocol):
    """What the controller needs of an informer: start (filled), stop, and its cached keys."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    @property
    def cache(self) -> Mapping[str, object]: ...


class Controller(Generic[K]):
    """Runs `sync(key)` on `workers` workers for every key its sources (or callers) enqueue.

    `key_of` maps a changed store key to the controller's key (None: not this controller's),
    e.g. both an MCIS record and its VM records to `(namespace, mcis)`. Errors of the types in
    `quiet` (expected, like a lost compare-and-swap) are retried without a warning in the log.
    """

    def __init__(self, name: str, sync: Callable[[K], Awaitable[None]], key_of: Callable[[str], K | None], *,
                 workers: int = 4, backoff: Callable[[], Backoff[K]] = Backoff, clock: Clock | None = None,
                 requeue_gap: float = 0.0, quiet: tuple[type[BaseException], ...] = ()) -> None:
        if workers < 1:
            raise ValueError("a controller needs at least one worker")
        self.name = name
        self.sync = sync
        self.key_of = key_of
        self.workers = workers
        self._backoff = backoff
        self._clock = clock
        self._gap = requeue_gap
        self.quiet = quiet
        # Keys enqueued before the first term wait for it; between terms they are dropped (a term
        # starts by enqueueing everything its sources hold).
        self.queue: WorkQueue[K] = self._new_queue()
        self.synced = 0  # syncs that returned
        self.failed = 0  # syncs that raised (each retried)

    def _new_queue(self) -> WorkQueue[K]:
        return WorkQueue(self._backoff(), self._clock, self._gap)

    # ------------------------------------------------------- event handlers

    def notify(self, store_key: str) -> None:
        """An informer's `on_change`: enqueue the key this record belongs to, if any."""
        key = self.key_of(store_key)
        if key is not None:
            self.queue.add(key)

    def enqueue(self, key: K) -> None:
        """Sync `key` soon (once, however often it is enqueued before a worker takes it)."""
        self.queue.add(key)

    def enqueue_after(self, key: K, delay: float) -> None:
        """Sync `key` after `delay` seconds (e.g. to poll something on its way)."""
        self.queue.add_after(key, delay)

    # --------------------------------------------------------------- running

    async def run(self, *sources: Source,
                  alongside: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()) -> None:
        """One term: start `sources`, enqueue every key they hold, run the workers (and the
        `alongside` loops, e.g. a poller) until cancelled or one of them fails; then stop all."""
        if self.queue.shutting_down:
            self.queue = self._new_queue()
        started: list[Source] = []
        tasks: list[asyncio.Task[None]] = []
        try:
            for source in sources:
                await source.start()
                started.append(source)
            for source in sources:
                for store_key in list(source.cache):
                    self.notify(store_key)
            tasks = [asyncio.create_task(self._work(), name=f"{self.name}-worker-{i}") for i in range(self.workers)]
            tasks += [asyncio.create_task(body()) for body in alongside]
            await asyncio.gather(*tasks)
        finally:
            self.queue.shutdown()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for source in started:
                with contextlib.suppress(Exception):
                    await source.stop()

    async def run_as_leader(self, election: Election, sources: Callable[[], Sequence[Source]] = tuple,
                            alongside: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()) -> None:
        """Forever: win `election`, then `run` with fresh `sources()` until leadership is lost."""
        await election.run(lambda: self.run(*sources(), alongside=alongside))

    async def _work(self) -> None:
        queue = self.queue
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            try:
                await self.sync(key)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self.failed += 1
                if not isinstance(err, self.quiet):
                    log.warning("sync failed; will retry", extra={
                        "controller": self.name, "key": str(key), "retries": queue.retries(key), "error": repr(err)})
                queue.add_rate_limited(key)
            else:
                self.synced += 1
                queue.forget(key)
            finally:
                queue.done(key)
