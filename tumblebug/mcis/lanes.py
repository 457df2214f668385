"""VM operations queued per spider connection, run by at most `width` tasks per connection.

A 10,000-VM build is 10,000 creates, at most `max_per_connection` in flight on each connection.
One task per create, parked on its connection's semaphore, made 10,000 tasks in one pass (each a
task, a few coroutine frames, a future and the closures of its operation): making them is time
the event loop spends while requests wait, and every one of those objects is scanned by each full
collection of the garbage collector while it waits (measured: a 10,000-VM build held ~170,000
such objects, and full collections paused the loop 50-450 ms). A lane is a queue of plain items
(what to act on, not how: the runner decides when the item's turn comes) and as many runner
tasks as may be in flight, each taking the next item when its last one is done.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from services.tasks import cancel_tasks

log = logging.getLogger("tumblebug.reconciler")

T = TypeVar("T")


class Lanes(Generic[T]):
    """`submit(lane, item)`: `run(item)` once fewer than `width()` items of that lane are running;
    each lane in the order its items came."""

    def __init__(self, width: Callable[[], int], run: Callable[[T], Awaitable[None]]) -> None:
        self.width = width
        self.run = run
        self.queued: dict[str, deque[T]] = {}
        self.running: dict[str, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def submit(self, lane: str, item: T) -> None:
        self.queued.setdefault(lane, deque()).append(item)
        if self.running.get(lane, 0) < self.width():
            self.running[lane] = self.running.get(lane, 0) + 1
            task = asyncio.create_task(self._runner(lane))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _runner(self, lane: str) -> None:
        queue = self.queued[lane]
        try:
            while queue:
                item = queue.popleft()
                try:
                    await self.run(item)
                except Exception:  # one item's failure must not stop the items queued behind it
                    log.exception("VM operation raised", extra={"lane": lane})
        finally:
            self.running[lane] -= 1

    async def close(self) -> None:
        """Cancel the runners; what is queued is dropped (a new leadership term starts over)."""
        await cancel_tasks(list(self.tasks))
        self.queued.clear()
        self.running.clear()

    def __len__(self) -> int:
        """Items queued, not yet running."""
        return sum(len(q) for q in self.queued.values())
