"""The memory backend: bounded raw points, minute/hour roll-ups, periods and aggregates."""

from __future__ import annotations

from dragonfly.storage import Query, Sample
from dragonfly.storage.memory import MemoryBackend


async def test_raw_points_are_bounded_and_rollups_reach_further() -> None:
    backend = MemoryBackend(raw_points=100)
    t0 = 1_700_000_000.0 - 1_700_000_000.0 % 3600
    await backend.write([Sample("a.b.c", "cpu", t0 + i, {"utilization_percent": float(i % 60)}) for i in range(1000)])
    raw = await backend.query(Query("a.b.c", "cpu", t0, t0 + 2000))
    assert 100 <= len(raw[0].points) <= 120 and raw[0].points[-1][0] == t0 + 999
    # Beyond the raw ring, minute buckets come from the roll-up: every minute complete.
    minutes = await backend.query(Query("a.b.c", "cpu", t0, t0 + 2000, step_s=60, aggregate="max"))
    assert len(minutes[0].points) == 17 and all(v["utilization_percent"] == 59 for _, v in minutes[0].points[:16])
    avg = await backend.query(Query("a.b.c", "cpu", t0, t0 + 2000, step_s=3600, aggregate="avg"))
    assert len(avg[0].points) == 1 and abs(avg[0].points[0][1]["utilization_percent"] - 29.1) < 1e-9


async def test_mcis_prefix_out_of_order_points_and_last() -> None:
    backend = MemoryBackend()
    await backend.write([Sample("ns.m.vm-1", "memory", 120.0, {"used_bytes": 2.0}),
                         Sample("ns.m.vm-1", "memory", 60.0, {"used_bytes": 1.0}),
                         Sample("ns.m.vm-2", "memory", 60.0, {"used_bytes": 5.0}),
                         Sample("ns.other.vm-1", "memory", 60.0, {"used_bytes": 9.0})])
    got = await backend.query(Query("ns.m.", "memory", 0, 200))
    assert [r.vm for r in got] == ["ns.m.vm-1", "ns.m.vm-2"]
    assert [t for t, _ in got[0].points] == [60.0, 120.0]
    last = await backend.query(Query("ns.m.vm-1", "memory", 0, 200, step_s=3600, aggregate="last"))
    assert last[0].points == [(0.0, {"used_bytes": 2.0})]
