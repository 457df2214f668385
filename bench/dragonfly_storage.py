"""Dragonfly's memory storage backend: write throughput and memory; prints one JSON document.

1. Scale: 10,000 VMs × the agent's 6 metric groups = 60,000 series, one point per series per
   second written in the collector's batches (2,000 samples). Points per second of writing
   (sample creation is not timed) and resident memory after N points per series, for
   - `floor`: a plain list append of each sample to its series' list (the least a write can cost),
   - `dict_layout`: the layout the backend had before (each point a dict, each roll-up cell a dict
     of lists), kept below as a baseline only,
   - `memory`: the backend (dragonfly/storage/memory.py) with its default budget.
   Each runs in a child process of its own, so its resident memory is its own.
2. Steady state: 600 series at one point a minute for a week, under a 64 MB budget, so every
   tier runs into its limit: bytes held against the budget.

Usage: python bench/dragonfly_storage.py [--quick] [--series N] [--points N] [--baseline-points N]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dragonfly.agent.sources import GROUPS, HostSource
from dragonfly.storage import Sample
from dragonfly.storage.memory import MemoryBackend

BATCH = 2000  # the collector's default batch_samples
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- Baseline only: the dict-based layout of the memory backend before the flat arrays. -----
# A copy kept here to measure against; the service does not use it.

DictCell = dict[str, list[float]]


def _dict_merge(cell: DictCell, t: float, values: dict[str, float]) -> None:
    for name, v in values.items():
        agg = cell.get(name)
        if agg is None:
            cell[name] = [v, v, v, 1.0, v, t]
        else:
            agg[0], agg[1] = min(agg[0], v), max(agg[1], v)
            agg[2] += v
            agg[3] += 1.0
            if t >= agg[5]:
                agg[4], agg[5] = v, t


@dataclass
class _DictRollup:
    width_s: float
    limit: int
    starts: list[float] = field(default_factory=list)
    cells: list[DictCell] = field(default_factory=list)

    def add(self, t: float, values: dict[str, float]) -> None:
        start = t - t % self.width_s
        i = bisect.bisect_left(self.starts, start)
        if i == len(self.starts) or self.starts[i] != start:
            if i == 0 and len(self.starts) >= self.limit:
                return
            self.starts.insert(i, start)
            self.cells.insert(i, {})
        _dict_merge(self.cells[i], t, values)
        if len(self.starts) > self.limit:
            del self.starts[0], self.cells[0]


@dataclass
class _DictSeries:
    raw_limit: int
    times: list[float] = field(default_factory=list)
    values: list[dict[str, float]] = field(default_factory=list)
    minutes: _DictRollup = field(default_factory=lambda: _DictRollup(60.0, 1440))
    hours: _DictRollup = field(default_factory=lambda: _DictRollup(3600.0, 720))
    trimmed: bool = False

    def add(self, t: float, values: dict[str, float]) -> None:
        i = bisect.bisect_right(self.times, t)
        self.times.insert(i, t)
        self.values.insert(i, values)
        if len(self.times) > self.raw_limit + max(16, self.raw_limit // 10):
            cut = len(self.times) - self.raw_limit
            del self.times[:cut], self.values[:cut]
            self.trimmed = True
        self.minutes.add(t, values)
        self.hours.add(t, values)


class DictLayoutBackend:
    """Baseline only: the write path of the former dict-based memory backend."""

    def __init__(self, raw_points: int = 3600) -> None:
        self.raw_points = raw_points
        self._series: dict[tuple[str, str], _DictSeries] = {}

    async def write(self, samples: Sequence[Sample]) -> None:
        for s in samples:
            key = (s.vm, s.group)
            data = self._series.get(key)
            if data is None:
                data = self._series[key] = _DictSeries(self.raw_points)
            data.add(s.time, s.values)


class ListFloor:
    """The least a write can do: append the sample to its series' list."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str], list[Sample]] = {}

    async def write(self, samples: Sequence[Sample]) -> None:
        for s in samples:
            key = (s.vm, s.group)
            kept = self._series.get(key)
            if kept is None:
                kept = self._series[key] = []
            kept.append(s)


# --- The workload ---------------------------------------------------------------------------


def agent_fields() -> dict[str, tuple[str, ...]]:
    """The field names the agent sends per group, taken from a real sample of this host."""
    groups = HostSource().sample()
    return {g: tuple(groups[g]) for g in GROUPS}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def second(vms: Sequence[str], fields: dict[str, tuple[str, ...]], t: float, rng: random.Random) -> list[Sample]:
    """One point of every series at `t`, each with values of its own (new float objects, as the
    collector makes them from JSON)."""
    base = rng.random() * 100.0
    return [Sample(vm, g, t, {name: base + i * 1.5 + j for j, name in enumerate(names)})
            for i, vm in enumerate(vms) for g, names in fields.items()]


@dataclass
class Run:
    """Writes a point of every series per pass into a store, timing only the writes (CPU time)."""

    store: Any
    vms: list[str]
    fields: dict[str, tuple[str, ...]]
    t0: float = 1_700_000_000.0
    step_s: float = 1.0
    passes_done: int = 0
    # Since the last `rate()`: points written and CPU seconds, leaving out the first pass (it
    # creates every series).
    counted: int = 0
    write_s: float = 0.0
    first_pass_s: float = 0.0

    async def passes(self, count: int, rng: random.Random) -> None:
        for _ in range(count):
            samples = second(self.vms, self.fields, self.t0 + self.passes_done * self.step_s, rng)
            began = time.process_time()
            for i in range(0, len(samples), BATCH):
                await self.store.write(samples[i:i + BATCH])
            spent = time.process_time() - began
            if not self.passes_done:
                self.first_pass_s = spent
            else:
                self.counted += len(samples)
                self.write_s += spent
            self.passes_done += 1

    def rate(self) -> int:
        """Points per CPU second since the last call."""
        rate = round(self.counted / self.write_s) if self.write_s else 0
        self.counted, self.write_s = 0, 0.0
        return rate


async def scale_child(variant: str, series: int, checkpoints: list[int]) -> dict[str, Any]:
    fields = agent_fields()
    vms = [f"bench.mcis-{i // 1000}.vm-{i}" for i in range(max(1, series // len(fields)))]
    per_pass = len(vms) * len(fields)
    stores: dict[str, Callable[[], Any]] = {"floor": ListFloor, "dict_layout": DictLayoutBackend,
                                            "memory": MemoryBackend}
    gc.collect()
    before = rss_bytes()
    run = Run(stores[variant](), vms, fields)
    rng = random.Random(7)
    out: dict[str, Any] = {"series": per_pass, "fields_per_series": round(sum(map(len, fields.values())) / len(fields),
                                                                          2), "at": {}}
    for point in checkpoints:
        await run.passes(point - run.passes_done, rng)
        gc.collect()
        held = rss_bytes() - before
        # The write rate over the passes since the previous checkpoint.
        row: dict[str, Any] = {"write_points_per_cpu_s": run.rate(), "rss_mb": round(held / 2**20, 1),
                               "rss_bytes_per_point_written": round(held / (run.passes_done * per_pass), 1)}
        if isinstance(run.store, MemoryBackend):
            stats = run.store.stats()
            row.update(bytes_held_mb=round(stats.bytes_held / 2**20, 1),
                       limits={"raw": stats.limits.raw, "minutes": stats.limits.minutes, "hours": stats.limits.hours})
        out["at"][str(point)] = row
    out["first_pass_points_per_cpu_s"] = round(per_pass / run.first_pass_s) if run.first_pass_s else 0
    return out


async def steady_child(series: int, minutes: int, memory_mb: float) -> dict[str, Any]:
    """One point a minute until every tier of every series is at its limit."""
    fields = agent_fields()
    vms = [f"bench.steady.vm-{i}" for i in range(max(1, series // len(fields)))]
    store = MemoryBackend(memory_mb=memory_mb)
    gc.collect()
    before = rss_bytes()
    run = Run(store, vms, fields, step_s=60.0)
    await run.passes(minutes, random.Random(11))
    gc.collect()
    stats = store.stats()
    return {"series": stats.series, "points_per_series": minutes, "budget_mb": memory_mb,
            "bytes_held_mb": round(stats.bytes_held / 2**20, 2), "rss_mb": round((rss_bytes() - before) / 2**20, 1),
            "held_to_budget": round(stats.bytes_held / stats.budget_bytes, 3),
            "limits": {"raw": stats.limits.raw, "minutes": stats.limits.minutes, "hours": stats.limits.hours},
            "write_points_per_cpu_s": run.rate()}


def child(args: list[str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{args} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small run that only shows the shape")
    parser.add_argument("--series", type=int, default=60_000)
    parser.add_argument("--points", type=int, default=360, help="points per series written to the backend")
    parser.add_argument("--baseline-points", type=int, default=30,
                        help="points per series for the floor and the dict layout (they hold every sample)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child.split(":")
        if kind == "scale":
            result = asyncio.run(scale_child(rest[0], args.series, [int(p) for p in rest[1].split(",")]))
        else:
            result = asyncio.run(steady_child(args.series, int(rest[0]), float(rest[1])))
        print(json.dumps(result))
        return
    series, points, base = (600, 300, 20) if args.quick else (args.series, args.points, args.baseline_points)
    # The backend at the baselines' count, then mostly appending, then trimming and rolling up.
    marks = sorted({base, points * 2 // 3, points})
    scale = {"floor": child(["--series", str(series), "--child", f"scale:floor:{base}"]),
             "dict_layout": child(["--series", str(series), "--child", f"scale:dict_layout:{base}"]),
             "memory": child(["--series", str(series), "--child", f"scale:memory:{','.join(map(str, marks))}"])}
    at_base = {name: scale[name]["at"][str(base)] for name in ("floor", "dict_layout", "memory")}
    steady_rate = scale["memory"]["at"][str(points)]["write_points_per_cpu_s"]
    scale["compared_at_baseline_points"] = {
        "memory_write_rate_to_floor": round(at_base["memory"]["write_points_per_cpu_s"]
                                            / max(1, at_base["floor"]["write_points_per_cpu_s"]), 3),
        "memory_write_rate_to_dict_layout": round(at_base["memory"]["write_points_per_cpu_s"]
                                                  / max(1, at_base["dict_layout"]["write_points_per_cpu_s"]), 2),
        "memory_trimming_write_rate_to_dict_layout": round(
            steady_rate / max(1, at_base["dict_layout"]["write_points_per_cpu_s"]), 2),
        "dict_layout_rss_to_memory": round(at_base["dict_layout"]["rss_mb"] / max(0.1, at_base["memory"]["rss_mb"]), 1)}
    steady_args = ["--series", "60", "--child", "steady:600:4"] if args.quick else \
        ["--series", "600", "--child", "steady:10000:64"]
    out = {"benchmark": "dragonfly-storage", "quick": args.quick, "scale": scale, "steady": child(steady_args)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
