"""The reconciler's per-connection lanes and the time-sliced yielding of long loops."""

from __future__ import annotations

import asyncio
import time

from services.controller.slices import TimeSlice
from tumblebug.mcis.lanes import Lanes


async def drained(lanes: Lanes[str]) -> None:
    """Until every runner has ended."""
    await asyncio.gather(*lanes.tasks)


async def test_a_lane_runs_at_most_width_items_at_once_in_order_with_that_many_tasks() -> None:
    running: set[str] = set()
    peak = 0
    order: list[str] = []
    gate = asyncio.Event()

    async def run(item: str) -> None:
        nonlocal peak
        running.add(item)
        peak = max(peak, len(running))
        order.append(item)
        await gate.wait()
        running.discard(item)

    lanes = Lanes(lambda: 3, run)
    items = [f"vm-{i}" for i in range(10)]
    for item in items:
        lanes.submit("conn-a", item)
    assert len(lanes.tasks) == 3 and len(lanes) == 10  # runners, not a task per item
    await asyncio.sleep(0)
    assert running == set(items[:3]) and len(lanes) == 7
    gate.set()
    await drained(lanes)
    assert peak == 3 and order == items and len(lanes) == 0


async def test_lanes_are_independent_and_a_failing_item_does_not_stop_its_lane() -> None:
    done: list[str] = []

    async def run(item: str) -> None:
        if item == "boom":
            raise RuntimeError("a bug in one operation")
        done.append(item)

    lanes = Lanes(lambda: 1, run)
    lanes.submit("a", "boom")
    lanes.submit("a", "a1")
    lanes.submit("b", "b1")
    await drained(lanes)
    assert sorted(done) == ["a1", "b1"]
    lanes.submit("a", "a2")  # a lane whose runners ended starts one again
    await drained(lanes)
    assert done[-1] == "a2"


async def test_close_cancels_running_items_and_drops_queued_ones() -> None:
    cancelled: list[str] = []

    async def run(item: str) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(item)
            raise

    lanes = Lanes(lambda: 1, run)
    lanes.submit("a", "first")
    lanes.submit("a", "second")
    await asyncio.sleep(0)
    await lanes.close()
    assert cancelled == ["first"] and len(lanes) == 0 and not lanes.tasks


async def test_a_time_slice_yields_only_once_its_budget_is_used() -> None:
    ticks = 0

    async def other() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    side = asyncio.create_task(other())
    await asyncio.sleep(0)
    start = ticks
    turn = TimeSlice(budget=3600.0)
    for _ in range(1000):
        await turn.tick()
    assert ticks == start  # within the budget: never gave way
    turn = TimeSlice(budget=0.001)
    end = time.perf_counter() + 0.02
    while time.perf_counter() < end:
        await turn.tick()
    assert ticks > start  # past it: the other task ran
    side.cancel()
