"""The work queue and backoff of the controller runtime, step by step on a manual clock."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.controller import Backoff, ManualClock, ShutDown, WorkQueue


def queue(gap: float = 0.0, base: float = 1.0, cap: float = 8.0, jitter: float = 0.0) -> tuple[WorkQueue[str], ManualClock]:
    clock = ManualClock()
    return WorkQueue(Backoff(base=base, cap=cap, jitter=jitter, rng=random.Random(7)), clock, gap), clock


def take_all(q: WorkQueue[str]) -> list[str]:
    out = []
    while (key := q.get_nowait()) is not None:
        out.append(key)
    return out


def test_a_key_added_twice_is_queued_once_in_first_added_order() -> None:
    q, _ = queue()
    for key in ["a", "b", "a", "c", "b"]:
        q.add(key)
    assert len(q) == 3
    assert take_all(q) == ["a", "b", "c"]


def test_a_key_added_while_processing_waits_for_done_then_comes_back_once() -> None:
    q, _ = queue()
    q.add("a")
    assert q.get_nowait() == "a"
    q.add("a")
    q.add("a")
    assert q.get_nowait() is None  # not handed to a second worker while the first holds it
    assert q.processing("a")
    q.done("a")
    assert take_all(q) == ["a"]
    q.done("a")
    assert take_all(q) == []  # nothing came in during the second sync


def test_done_without_a_new_add_does_not_requeue() -> None:
    q, _ = queue()
    q.add("a")
    q.get_nowait()
    q.done("a")
    assert len(q) == 0 and not q.processing("a")


def test_requeue_gap_holds_a_key_changed_during_its_sync() -> None:
    q, clock = queue(gap=0.5)
    q.add("a")
    q.get_nowait()
    q.add("a")
    q.done("a")
    assert len(q) == 0 and q.waiting() == 1
    clock.advance(0.4)
    assert len(q) == 0
    clock.advance(0.1)
    assert take_all(q) == ["a"]


def test_add_after_holds_back_and_the_earlier_time_wins() -> None:
    q, clock = queue()
    q.add_after("a", 5.0)
    q.add_after("a", 2.0)  # earlier: replaces
    q.add_after("a", 9.0)  # later: ignored
    assert q.waiting() == 1 and clock.pending() == 1
    clock.advance(1.9)
    assert len(q) == 0
    clock.advance(0.1)
    assert take_all(q) == ["a"]
    clock.advance(10)
    assert take_all(q) == []  # the replaced and the ignored timers never fire


def test_add_after_zero_is_add() -> None:
    q, _ = queue()
    q.add_after("a", 0)
    assert take_all(q) == ["a"]


def test_a_key_held_back_and_added_meanwhile_is_synced_at_once_and_again_at_its_time() -> None:
    q, clock = queue()
    q.add_after("a", 3.0)
    q.add("a")
    assert q.get_nowait() == "a"
    q.done("a")
    clock.advance(3.0)
    assert take_all(q) == ["a"]  # as client-go: the delayed add still happens


def test_rate_limited_adds_back_off_exponentially_up_to_the_cap_and_forget_resets() -> None:
    q, clock = queue(base=1.0, cap=8.0)
    seen = []
    for _ in range(6):
        start = clock.now()
        q.add_rate_limited("a")
        while not len(q):
            clock.advance(0.5)
        seen.append(clock.now() - start)
        assert q.get_nowait() == "a"
        q.done("a")
    assert seen == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert q.retries("a") == 6
    q.forget("a")
    assert q.retries("a") == 0
    start = clock.now()
    q.add_rate_limited("a")
    clock.advance(1.0)
    assert take_all(q) == ["a"] and clock.now() - start == 1.0


def test_backoff_is_per_key() -> None:
    backoff: Backoff[str] = Backoff(base=1, cap=100, jitter=0)
    assert [backoff.when("a") for _ in range(3)] == [1, 2, 4]
    assert backoff.when("b") == 1
    backoff.forget("a")
    assert backoff.when("a") == 1


@given(st.integers(0, 2000), st.floats(0.0, 0.99), st.integers(0, 2**32))
def test_backoff_jitter_stays_between_its_share_and_the_cap(failures: int, jitter: float, seed: int) -> None:
    backoff: Backoff[str] = Backoff(base=0.01, cap=30.0, jitter=jitter, rng=random.Random(seed))
    backoff._failures["k"] = failures
    full = min(30.0, 0.01 * 2.0 ** min(failures, 64))
    delay = backoff.when("k")
    assert full * (1 - jitter) <= delay <= full <= 30.0


def test_backoff_rejects_nonsense() -> None:
    for bad in ({"base": 0}, {"base": 2, "cap": 1}, {"jitter": 1.0}, {"jitter": -0.1}):
        with pytest.raises(ValueError):
            Backoff(**bad)  # type: ignore[arg-type]


def test_shutdown_drains_what_is_queued_then_says_so_and_ignores_new_adds() -> None:
    q, clock = queue()
    q.add("a")
    q.add_after("b", 1.0)
    q.shutdown()
    q.add("c")
    q.add_after("d", 1.0)
    clock.advance(5)
    assert q.get_nowait() == "a"
    with pytest.raises(ShutDown):
        q.get_nowait()
    assert q.shutting_down and clock.pending() == 0


async def test_get_waits_for_an_add_and_shutdown_wakes_every_getter() -> None:
    q, _ = queue()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    assert not getter.done()
    q.add("a")
    assert await getter == "a"
    waiting = [asyncio.create_task(q.get()) for _ in range(3)]
    await asyncio.sleep(0)
    q.shutdown()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, ShutDown) for r in results)


async def test_a_cancelled_getter_does_not_swallow_a_key() -> None:
    q, _ = queue()
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add("a")  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it runs: the wake-up passes to `second`
    assert await asyncio.wait_for(second, 5) == "a"
    assert first.cancelled()


# --------------------------------------------------------------------------------------------------
# Properties: random interleavings of adds, takes, finishes and time.

KEYS = st.sampled_from(["a", "b", "c", "d"])
OPS = st.one_of(
    st.tuples(st.just("add"), KEYS),
    st.tuples(st.just("add_after"), KEYS, st.floats(0.0, 3.0)),
    st.tuples(st.just("rate_limited"), KEYS),
    st.tuples(st.just("forget"), KEYS),
    st.tuples(st.just("take"), st.integers(0, 2)),
    st.tuples(st.just("finish"), st.integers(0, 2)),
    st.tuples(st.just("advance"), st.floats(0.0, 5.0)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, max_size=60), st.sampled_from([0.0, 0.5]))
def test_never_two_workers_on_one_key_and_every_add_is_followed_by_a_sync(ops: list[tuple], gap: float) -> None:
    q, clock = queue(gap=gap, base=0.1, cap=2.0, jitter=0.5)
    held: list[str | None] = [None, None, None]  # what each of three workers holds
    unseen: set[str] = set()  # keys added since the last time a worker took them

    def take(worker: int) -> None:
        if held[worker] is None and (key := q.get_nowait()) is not None:
            assert key not in held, f"{key} handed to a second worker"
            held[worker] = key
            unseen.discard(key)

    def finish(worker: int) -> None:
        if (key := held[worker]) is not None:
            held[worker] = None
            q.done(key)

    for op in ops:
        match op:
            case ("add", key):
                q.add(key)
                unseen.add(key)
            case ("add_after", key, delay):
                q.add_after(key, delay)
                unseen.add(key)
            case ("rate_limited", key):
                q.add_rate_limited(key)
                unseen.add(key)
            case ("forget", key):
                q.forget(key)
            case ("take", worker):
                take(worker)
            case ("finish", worker):
                finish(worker)
            case ("advance", seconds):
                clock.advance(seconds)
    # Let the workers run to quiet: every add must have led to a sync that started after it.
    for _ in range(50):
        for worker in range(3):
            finish(worker)
        clock.advance(10.0)
        for worker in range(3):
            take(worker)
        if not any(held) and not len(q) and not q.waiting():
            break
    assert unseen == set()
    assert not any(held) and len(q) == 0 and q.waiting() == 0
