"""Time-sliced yielding: a long loop on the event loop gives way every few milliseconds of work.

A loop over thousands of items (a pass over every VM of an MCIS) holds the event loop until it
yields, and every request the service answers meanwhile waits that long. Yielding every N items
bounds the stall only as well as N items happen to be cheap: the same 500 items cost 3 ms on an
idle machine and 60 ms when each one starts a task on a busy one. A `TimeSlice` yields once its
budget of seconds has been used since the last yield, whatever the items cost.
"""

from __future__ import annotations

import asyncio
import time

# Enough work per slice that yielding costs little (one loop iteration, microseconds), short enough
# that a request waiting behind the slice does not notice it.
BUDGET_S = 0.005


class TimeSlice:
    """Call `await tick()` once per item of a long loop: it yields when the slice is used up."""

    __slots__ = ("_since", "budget")

    def __init__(self, budget: float = BUDGET_S) -> None:
        self.budget = budget
        self._since = time.perf_counter()

    async def tick(self) -> None:
        if time.perf_counter() - self._since >= self.budget:
            await asyncio.sleep(0)
            self._since = time.perf_counter()
