"""The controller runtime: events enqueue keys, workers sync them, failures back off."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.controller import Backoff, Controller, ManualClock


class FakeSource:
    """An informer stand-in: a fixed cache, and whether it was started and stopped."""

    def __init__(self, keys: list[str]) -> None:
        self._cache = dict.fromkeys(keys, object())
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    @property
    def cache(self) -> Mapping[str, object]:
        return self._cache


def mcis_of(store_key: str) -> tuple[str, str] | None:
    """Both an MCIS and its VMs map to (ns, mcis); anything else is not ours."""
    parts = store_key.split("/")
    return (parts[1], parts[2]) if len(parts) >= 3 and parts[0] == "ns" else None


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_cached_keys_are_synced_once_per_controller_key_and_events_map_through_key_of() -> None:
    synced: list[tuple[str, str]] = []

    async def sync(key: tuple[str, str]) -> None:
        synced.append(key)

    source = FakeSource(["ns/a/m1", "ns/a/m1/vm/x", "ns/a/m1/vm/y", "ns/b/m2", "other/key"])
    ctl = Controller("t", sync, mcis_of, workers=2, clock=ManualClock())
    task = asyncio.create_task(ctl.run(source))
    await settle()
    assert source.started
    assert sorted(synced) == [("a", "m1"), ("b", "m2")]
    ctl.notify("ns/a/m1/vm/z")
    ctl.notify("not/ours")
    await settle()
    assert synced[2:] == [("a", "m1")]
    await stop(task)
    assert source.stopped
    ctl.enqueue(("a", "m1"))  # after the term: ignored
    await settle()
    assert len(synced) == 3


async def test_a_failing_sync_is_retried_after_its_backoff_and_forgotten_on_success(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    calls: list[float] = []

    async def sync(key: str) -> None:
        calls.append(clock.now())
        if len(calls) <= 3:
            raise RuntimeError("cloud away")

    ctl = Controller("t", sync, lambda k: k, workers=1, clock=clock,
                     backoff=lambda: Backoff(base=1.0, cap=60.0, jitter=0.0))
    task = asyncio.create_task(ctl.run())
    await settle()
    with caplog.at_level(logging.WARNING, logger="controller"):
        ctl.enqueue("k")
        for _ in range(16):
            await settle()
            clock.advance(0.5)
    await settle()
    assert calls == [0.0, 1.0, 3.0, 7.0]  # 1, 2, 4 seconds apart
    assert ctl.failed == 3 and ctl.synced == 1
    assert ctl.queue.retries("k") == 0  # success forgot the failures
    assert sum("sync failed" in r.message for r in caplog.records) == 3
    await stop(task)


async def test_quiet_errors_are_retried_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    calls = 0

    class Lost(Exception):
        pass

    async def sync(key: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Lost

    ctl = Controller("t", sync, lambda k: k, clock=clock, quiet=(Lost,))
    task = asyncio.create_task(ctl.run())
    with caplog.at_level(logging.WARNING, logger="controller"):
        ctl.enqueue("k")
        await settle()
        clock.advance(1.0)
        await settle()
    assert calls == 2
    assert not [r for r in caplog.records if r.name == "controller"]
    await stop(task)


async def test_a_key_changed_during_its_sync_is_synced_again_after_never_alongside() -> None:
    gate = asyncio.Event()
    active: set[str] = set()
    order: list[str] = []

    async def sync(key: str) -> None:
        assert key not in active
        active.add(key)
        order.append(key)
        await gate.wait()
        active.discard(key)

    ctl = Controller("t", sync, lambda k: k, workers=4, clock=ManualClock())
    task = asyncio.create_task(ctl.run())
    ctl.enqueue("k")
    await settle()
    ctl.enqueue("k")
    ctl.enqueue("k")
    await settle()
    assert order == ["k"]  # three idle workers, yet the second sync waits for the first
    gate.set()
    await settle()
    assert order == ["k", "k"]
    await stop(task)


async def test_a_failing_alongside_loop_ends_the_term_and_stops_the_sources() -> None:
    async def sync(key: str) -> None:
        pass

    async def poller() -> None:
        raise RuntimeError("poller broke")

    source = FakeSource([])
    ctl = Controller("t", sync, lambda k: k, clock=ManualClock())
    with pytest.raises(RuntimeError, match="poller broke"):
        await ctl.run(source, alongside=[poller])
    assert source.stopped and ctl.queue.shutting_down


def test_a_controller_needs_a_worker() -> None:
    async def sync(key: str) -> None:
        pass

    with pytest.raises(ValueError):
        Controller("t", sync, lambda k: k, workers=0)


# --------------------------------------------------------------------------------------------------
# Property: whatever the interleaving of events, pauses in syncs and failures, no key is synced by
# two workers at once, and every event is followed by a sync of its key that started after it.

EVENTS = st.lists(st.tuples(st.sampled_from("abcde"), st.integers(0, 3)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(EVENTS, st.integers(1, 4), st.sets(st.sampled_from("abcde")), st.integers(0, 2**16),
       st.lists(st.integers(0, 4), min_size=1))
def test_controller_never_syncs_one_key_twice_at_once_and_misses_no_event(
        events: list[tuple[str, int]], workers: int, flaky: set[str], seed: int, pauses: list[int]) -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_drive(events, workers, flaky, seed, pauses))
    finally:
        loop.close()


async def _drive(events: list[tuple[str, int]], workers: int, flaky: set[str], seed: int, pauses: list[int]) -> None:
    clock = ManualClock()
    tick = 0  # a logical time: events and sync starts are ordered by it
    last_event: dict[str, int] = {}
    last_start: dict[str, int] = {}
    active: set[str] = set()
    failures_left = {key: 2 for key in flaky}
    pause = iter(pauses * 1000)

    async def sync(key: str) -> None:
        nonlocal tick
        assert key not in active, f"{key} synced by two workers at once"
        active.add(key)
        tick += 1
        last_start[key] = tick
        try:
            for _ in range(next(pause, 0)):
                await asyncio.sleep(0)
            if failures_left.get(key, 0) > 0:
                failures_left[key] -= 1
                raise RuntimeError("flaky")
        finally:
            active.discard(key)

    ctl = Controller("p", sync, lambda k: k, workers=workers, clock=clock,
                     backoff=lambda: Backoff(base=0.5, cap=4.0, jitter=0.5, rng=random.Random(seed)))
    task = asyncio.create_task(ctl.run())
    await asyncio.sleep(0)
    for key, yields in events:
        tick += 1
        last_event[key] = tick
        ctl.enqueue(key)
        for _ in range(yields):
            await asyncio.sleep(0)
    for _ in range(100):
        for _ in range(30):
            await asyncio.sleep(0)
        clock.advance(5.0)
        if all(last_start.get(k, 0) > t for k, t in last_event.items()) and not any(failures_left.values()) \
                and not active:
            break
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    missed = {k for k, t in last_event.items() if last_start.get(k, 0) <= t}
    assert not missed, f"events not followed by a sync: {missed}"
    assert all(failures_left.get(k, 0) == 0 for k in last_event)  # failing keys were retried until they passed
