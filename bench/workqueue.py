"""Work queue benchmark; prints one JSON document.

The controller runtime's queue (services/controller) against a bare asyncio.Queue in the same run,
with the same number of workers and a sync that only yields once:
1. distinct keys, each added once: the cost of de-duplication and bookkeeping per key;
2. a burst where every key is added `--dups` times before the workers catch up: how many syncs
   each makes (the bare queue syncs every add; the work queue once per key, plus once more for a
   key added again during its own sync).

Usage: python bench/workqueue.py [--quick] [--keys N] [--workers W] [--dups D]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.controller import WorkQueue


async def bare(adds: list[int], workers: int) -> tuple[float, int]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    synced = 0

    async def work() -> None:
        nonlocal synced
        while True:
            await queue.get()
            await asyncio.sleep(0)
            synced += 1
            queue.task_done()

    tasks = [asyncio.create_task(work()) for _ in range(workers)]
    start = time.perf_counter()
    for key in adds:
        queue.put_nowait(key)
    await queue.join()
    elapsed = time.perf_counter() - start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return elapsed, synced


async def workqueue(adds: list[int], workers: int) -> tuple[float, int]:
    queue: WorkQueue[int] = WorkQueue()
    synced = active = 0
    idle = asyncio.Event()

    async def work() -> None:
        nonlocal synced, active
        while True:
            key = await queue.get()
            active += 1
            await asyncio.sleep(0)
            synced += 1
            queue.forget(key)
            queue.done(key)
            active -= 1
            if not len(queue) and not active:
                idle.set()

    tasks = [asyncio.create_task(work()) for _ in range(workers)]
    start = time.perf_counter()
    for key in adds:
        queue.add(key)
    while len(queue) or active:  # until every key was synced and nothing is in a worker's hands
        idle.clear()
        await idle.wait()
    elapsed = time.perf_counter() - start
    queue.shutdown()
    await asyncio.gather(*tasks, return_exceptions=True)
    return elapsed, synced


async def run(keys: int, workers: int, dups: int) -> dict[str, object]:
    distinct = list(range(keys))
    burst = [k for k in range(keys) for _ in range(dups)]
    out: dict[str, object] = {"keys": keys, "workers": workers, "dups": dups}
    for name, adds in (("distinct", distinct), ("burst", burst)):
        base_s, base_n = await bare(adds, workers)
        wq_s, wq_n = await workqueue(adds, workers)
        out[name] = {
            "adds": len(adds),
            "asyncio_queue": {"seconds": round(base_s, 4), "syncs": base_n, "adds_per_s": round(len(adds) / base_s)},
            "workqueue": {"seconds": round(wq_s, 4), "syncs": wq_n, "adds_per_s": round(len(adds) / wq_s)},
            "time_ratio": round(wq_s / base_s, 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a second or so")
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--dups", type=int, default=10)
    args = parser.parse_args()
    keys = 5_000 if args.quick else args.keys
    print(json.dumps(asyncio.run(run(keys, args.workers, args.dups)), indent=2))


if __name__ == "__main__":
    main()
