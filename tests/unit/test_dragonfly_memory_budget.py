"""The memory backend within its byte budget: limits from the number of series, floors, lazy trims,
roll-ups past the raw points, late points, new fields, and its accounting on /metrics."""

from __future__ import annotations

import itertools
import logging

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dragonfly.storage import Query, Sample, accounting
from dragonfly.storage.budget import CEILINGS, FLOORS, Budget, Limits, raw_slack
from dragonfly.storage.layout import Layouts
from dragonfly.storage.memory import MB, MemoryBackend

T0 = 1_700_000_000.0 - 1_700_000_000.0 % 86400  # midnight: whole minutes and hours
CPU = ("utilization_percent", "user_percent", "system_percent", "idle_percent", "iowait_percent")


def cpu(vm: str, t: float, v: float) -> Sample:
    return Sample(vm, "cpu", t, {name: v + i for i, name in enumerate(CPU)})


def test_limits_shrink_as_series_grow_and_never_pass_floors_or_ceilings() -> None:
    budget = Budget(256 * MB)
    seen = [budget.limits(n, 5.0) for n in (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)]
    assert seen[0] == CEILINGS and seen[-1] == FLOORS
    for bigger, smaller in itertools.pairwise(seen):
        assert all(b >= s for b, s in zip(bigger.as_tuple(), smaller.as_tuple(), strict=True))
    for limits in seen:
        assert all(f <= v <= c for f, v, c in zip(FLOORS.as_tuple(), limits.as_tuple(), CEILINGS.as_tuple(), strict=True))
    # Between ceilings and floors every tier keeps the same share of its ceiling, within the budget.
    middle = budget.limits(1_000, 5.0)
    shares = [v / c for v, c in zip(middle.as_tuple(), CEILINGS.as_tuple(), strict=True)]
    assert max(shares) - min(shares) < 0.01 and 0.05 < shares[0] < 1
    assert 0.97 * budget.total_bytes < budget.held_at(middle, 1_000, 5.0) <= budget.total_bytes


def test_a_tier_at_its_floor_leaves_the_others_less_and_floors_win_at_last() -> None:
    budget = Budget(256 * MB)
    # Just past where raw points reach their floor: raw stays there, minutes and hours shrink for it.
    series = next(n for n in range(1_000, 200_000, 250) if budget.limits(n, 5.0).raw == FLOORS.raw)
    limits = budget.limits(series, 5.0)
    assert limits.minutes > FLOORS.minutes and budget.held_at(limits, series, 5.0) <= budget.total_bytes
    assert not budget.exceeded(limits, series, 5.0)
    assert budget.exceeded(FLOORS, 1_000_000, 5.0)
    # A raw ceiling below the raw floor (raw_points=100) is the floor.
    assert Budget(MB, Limits(100, 1440, 720)).limits(10**6, 5.0).raw == 100


async def test_series_trim_to_shrunken_limits_on_their_next_write(caplog: pytest.LogCaptureFixture) -> None:
    backend = MemoryBackend(memory_mb=64)
    await backend.write([cpu("ns.m.first", T0 + i, 1.0) for i in range(3_000)])
    assert backend.limits == CEILINGS
    with caplog.at_level(logging.INFO, logger="dragonfly.storage"):
        await backend.write([cpu(f"ns.m.vm-{i}", T0, 1.0) for i in range(1_000)])
    shrunk = backend.limits
    assert FLOORS.raw < shrunk.raw < 1_000 and shrunk.minutes < CEILINGS.minutes
    assert any(r.message == "memory storage limits" for r in caplog.records)
    raw = await backend.query(Query("ns.m.first", "cpu", T0, T0 + 10_000))
    assert len(raw[0].points) == 3_000  # not trimmed yet: it has not been written since
    await backend.write([cpu("ns.m.first", T0 + 3_000, 1.0)])
    raw = await backend.query(Query("ns.m.first", "cpu", T0, T0 + 10_000))
    assert len(raw[0].points) == shrunk.raw and raw[0].points[-1][0] == T0 + 3_000
    stats = backend.stats()
    assert stats.series == 1_001 and stats.limits == shrunk and 0 < stats.bytes_held < stats.budget_bytes


async def test_floors_hold_and_the_budget_says_it_is_exceeded(caplog: pytest.LogCaptureFixture) -> None:
    backend = MemoryBackend(memory_mb=16)
    with caplog.at_level(logging.WARNING, logger="dragonfly.storage"):
        await backend.write([cpu(f"ns.m.vm-{i}", T0, 1.0) for i in range(2_000)])
    assert backend.limits == FLOORS
    assert [r.message for r in caplog.records if r.levelno == logging.WARNING] == [
        "memory storage: the floors of this many series exceed the budget; raise CB_DRAGONFLY_MEMORY_MB or use "
        "victoriametrics"]
    await backend.write([cpu("ns.m.vm-0", T0 + i, 2.0) for i in range(1, 400)])
    raw = await backend.query(Query("ns.m.vm-0", "cpu", T0, T0 + 400))
    assert FLOORS.raw <= len(raw[0].points) <= FLOORS.raw + raw_slack(FLOORS.raw)


async def test_queries_past_the_raw_points_use_the_roll_ups() -> None:
    backend = MemoryBackend(raw_points=200)
    hours = 3
    await backend.write([cpu("ns.m.vm", T0 + i, float(i % 60)) for i in range(hours * 3600)])
    raw = await backend.query(Query("ns.m.vm", "cpu", T0, T0 + hours * 3600))
    assert len(raw[0].points) <= 200 + raw_slack(200)
    minutes = await backend.query(Query("ns.m.vm", "cpu", T0, T0 + hours * 3600, step_s=60, aggregate="max"))
    assert [t for t, _ in minutes[0].points] == [T0 + 60 * m for m in range(hours * 60)]
    assert all(v["utilization_percent"] == 59 and v["idle_percent"] == 62 for _, v in minutes[0].points)
    avg = await backend.query(Query("ns.m.vm", "cpu", T0, T0 + hours * 3600, step_s=3600, aggregate="avg"))
    assert [(t, v["utilization_percent"]) for t, v in avg[0].points] == [(T0 + 3600 * h, 29.5) for h in range(hours)]
    day = await backend.query(Query("ns.m.vm", "cpu", T0, T0 + hours * 3600, step_s=86400, aggregate="last"))
    assert day[0].points == [(T0, {name: 59.0 + i for i, name in enumerate(CPU)})]
    # A range starting inside a minute reports that whole minute, from the roll-up.
    part = await backend.query(Query("ns.m.vm", "cpu", T0 + 90, T0 + 150, step_s=60, aggregate="min"))
    assert part[0].points == [(T0 + m, {name: 0.0 + i for i, name in enumerate(CPU)}) for m in (60, 120)]


async def test_points_out_of_order_land_where_they_belong() -> None:
    backend = MemoryBackend(raw_points=100)
    await backend.write([cpu("ns.m.vm", T0 + i, 1.0) for i in range(600)])
    # A backlog inside the raw points is inserted in order; one older than them is rolled up.
    await backend.write([cpu("ns.m.vm", T0 + 550.5, 50.0), cpu("ns.m.vm", T0 + 30.5, 90.0)])
    raw = await backend.query(Query("ns.m.vm", "cpu", T0, T0 + 600))
    times = [t for t, _ in raw[0].points]
    assert times == sorted(times) and T0 + 550.5 in times and T0 + 30.5 not in times
    minutes = await backend.query(Query("ns.m.vm", "cpu", T0, T0 + 599, step_s=60, aggregate="max"))
    assert minutes[0].points[0][1]["utilization_percent"] == 90.0
    assert minutes[0].points[9][1]["utilization_percent"] == 50.0
    last = await backend.query(Query("ns.m.vm", "cpu", T0, T0 + 59, step_s=60, aggregate="last"))
    assert last[0].points[0][1]["utilization_percent"] == 1.0  # the late point is not the newest


async def test_a_new_field_widens_the_layout_and_old_points_lack_it() -> None:
    backend = MemoryBackend(raw_points=50)
    await backend.write([Sample("ns.m.vm", "disk", T0 + i, {"used_bytes": float(i)}) for i in range(100)])
    await backend.write([Sample("ns.m.vm", "disk", T0 + 100 + i, {"free_bytes": 7.0, "used_bytes": float(100 + i)})
                         for i in range(10)])
    raw = await backend.query(Query("ns.m.vm", "disk", T0 + 98, T0 + 101))
    assert raw[0].points == [(T0 + 98, {"used_bytes": 98.0}), (T0 + 99, {"used_bytes": 99.0}),
                             (T0 + 100, {"used_bytes": 100.0, "free_bytes": 7.0}),
                             (T0 + 101, {"used_bytes": 101.0, "free_bytes": 7.0})]
    # Roll-ups made before the field existed gained it, empty; it counts only where it was sent.
    avg = await backend.query(Query("ns.m.vm", "disk", T0, T0 + 110, step_s=3600, aggregate="avg"))
    assert avg[0].points == [(T0, {"used_bytes": 54.5, "free_bytes": 7.0})]
    # A sample without a field it had before: that field is skipped, the others stored.
    await backend.write([Sample("ns.m.vm", "disk", T0 + 200, {"free_bytes": 3.0})])
    assert (await backend.query(Query("ns.m.vm", "disk", T0 + 200, T0 + 200)))[0].points == [
        (T0 + 200, {"free_bytes": 3.0})]


def test_series_with_the_same_fields_share_one_layout() -> None:
    layouts = Layouts()
    a, b = layouts.get(("x", "y")), layouts.get(["x", "y"])
    assert a is b and a.index == {"x": 0, "y": 1}
    wide = layouts.widen(a, {"y": 1.0, "z": 2.0})
    assert wide.names == ("x", "y", "z") and layouts.widen(wide, ["x"]) is wide and len(layouts) == 2


async def test_the_accounting_is_on_metrics() -> None:
    backend = MemoryBackend(memory_mb=64)
    await backend.write([cpu(f"ns.m.vm-{i}", T0 + t, 1.0) for i in range(3) for t in range(10)])
    registry = CollectorRegistry()
    handle = accounting.register(backend, registry)
    text = generate_latest(registry).decode()
    values = {name: float(value) for name, value in (line.rsplit(" ", 1) for line in text.splitlines()
                                                     if not line.startswith("#"))}
    assert values["cb_dragonfly_memory_series"] == 3 and values["cb_dragonfly_memory_points_total"] == 30
    assert values["cb_dragonfly_memory_budget_bytes"] == 64 * MB and values["cb_dragonfly_memory_held_bytes"] > 0
    assert [values[f'cb_dragonfly_memory_series_limit{{tier="{tier}"}}'] for tier in ("raw", "minute", "hour")] == [
        3600, 1440, 720]
    accounting.unregister(handle, registry)
    assert "cb_dragonfly_memory" not in generate_latest(registry).decode()
