"""Benchmarks measured on the real machine the agent runs on.

CPU and memory loops run in worker processes (`python -m dragonfly.agent.workloads`),
`cpu_multi` one per CPU over one shared window. Plain child processes rather than
multiprocessing's pools: a fresh interpreter neither re-imports the program's main
module (spawn, forkserver) nor copies the agent's threads and connections (fork),
and a worker that overruns is killed by its PID. Disk loops run in a thread on a
scratch file in the agent's working directory, bounded in size. RTT is the TCP
connect time, the address resolved beforehand so DNS is not in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from dragonfly.agent import workloads
from dragonfly.agent.benchmarks import BenchmarkError, RttResult, Target

# Memory buffers: well past any cache, within a small share of the free memory.
MEMORY_BYTES_MAX = 128 << 20
MEMORY_BYTES_MIN = 8 << 20
# Disk scratch file: at most this, and at most a tenth of the free space.
DISK_BYTES_MAX = 256 << 20
DISK_BYTES_MIN = 8 << 20
# Time for the workers of `cpu_multi` to start before their shared window opens.
WORKER_LEAD_S = 0.3
RTT_SAMPLES = 3


def memory_size(available: int) -> int:
    """The buffer for the memory benchmarks, given the bytes of memory available."""
    return max(MEMORY_BYTES_MIN, min(MEMORY_BYTES_MAX, available // 8))


def disk_size(free: int) -> int:
    """The most the disk benchmark writes, given the bytes free; 0 if there is not room enough."""
    size = min(DISK_BYTES_MAX, free // 10)
    return size if size >= DISK_BYTES_MIN else 0


async def _worker(loop: str, *args: object) -> Any:
    """One worker process running `workloads.<loop>(*args)`; its result."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dragonfly.agent.workloads", loop, *map(str, args), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await proc.communicate()
    finally:
        # Cut off (the benchmark overran): the worker must not go on loading the machine.
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        raise BenchmarkError(f"the {loop} worker failed (exit {proc.returncode}): {lines[-1] if lines else ''}")
    try:
        return json.loads(out)
    except ValueError as err:
        raise BenchmarkError(f"the {loop} worker answered {out[:100]!r}") from err


async def _in_workers(count: int, loop: str, *args: object) -> list[Any]:
    """`count` workers running the same loop at once."""
    return list(await asyncio.gather(*(_worker(loop, *args) for _ in range(count))))


async def tcp_rtt(target: Target, seconds: float, samples: int = RTT_SAMPLES) -> RttResult:
    """The lowest of up to `samples` TCP connect times to `target` within `seconds`."""
    result = RttResult(str(target))
    deadline = time.monotonic() + seconds
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(seconds):
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except TimeoutError:
        result.error = f"{target.host} did not resolve within {seconds:g}s"
        return result
    except OSError as err:
        result.error = f"cannot resolve {target.host}: {err.strerror or err}"
        return result
    family, _, _, _, address = infos[0]
    best = float("inf")
    for _ in range(samples):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            t0 = time.perf_counter()
            async with asyncio.timeout(remaining):
                await loop.sock_connect(sock, address)
            best = min(best, (time.perf_counter() - t0) * 1000.0)
            result.samples += 1
        except TimeoutError:
            if not result.samples:
                result.error = f"no answer within {seconds:g}s"
            break
        except OSError as err:
            if not result.samples:
                result.error = os.strerror(err.errno) if err.errno else str(err)
            break
        finally:
            sock.close()
    if result.samples:
        result.rtt_ms = round(best, 3)
    return result


async def rtt_all(targets: Sequence[Target], seconds: float) -> list[RttResult]:
    """Every target at once, each within `seconds`."""
    return list(await asyncio.gather(*(tcp_rtt(t, seconds) for t in targets)))


class HostBench:
    """Measures this machine. Scratch files go in `work_dir` (the agent's directory by default)."""

    kind = "host"

    def __init__(self, work_dir: str | None = None) -> None:
        self.work_dir = Path(work_dir or os.getcwd())
        self._scratch: Path | None = None
        self._disk_file: Path | None = None

    @property
    def cpu_count(self) -> int:
        return os.cpu_count() or 1

    async def measure(self, name: str, seconds: float) -> float:
        if name == "cpu_single":
            return await self.cpu(1, seconds)
        if name == "cpu_multi":
            return await self.cpu(self.cpu_count, seconds)
        if name in ("memory_read", "memory_write"):
            size = memory_size(psutil.virtual_memory().available)
            return float((await _in_workers(1, name, seconds, size))[0])
        if name == "disk_write":
            return await self.disk_write(seconds)
        if name == "disk_read":
            return await self.disk_read(seconds)
        raise BenchmarkError(f"no benchmark {name!r}")

    async def cpu(self, workers: int, seconds: float) -> float:
        """Operations per second of `workers` processes hashing over one shared window."""
        start = time.time() + (WORKER_LEAD_S if workers > 1 else 0.0)
        results = await _in_workers(workers, "hash_window", start, start + seconds)
        return float(sum(ops / elapsed for ops, elapsed in results if elapsed > 0))

    def _scratch_file(self) -> Path:
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix=".cb-bench-", dir=self.work_dir))
        return self._scratch / "disk.bin"

    async def disk_write(self, seconds: float) -> float:
        limit = disk_size(shutil.disk_usage(self.work_dir).free)
        if not limit:
            raise BenchmarkError(f"not enough free space in {self.work_dir}")
        path = self._scratch_file()
        rate = await asyncio.to_thread(workloads.disk_write, str(path), seconds, limit)
        self._disk_file = path
        return rate

    async def disk_read(self, seconds: float) -> float:
        if self._disk_file is None:
            # Nothing written by this request yet: write the file first, outside the timing.
            await self.disk_write(seconds)
        assert self._disk_file is not None
        return await asyncio.to_thread(workloads.disk_read, str(self._disk_file), seconds)

    async def rtt(self, targets: Sequence[Target], seconds: float) -> list[RttResult]:
        return await rtt_all(targets, seconds)

    def cleanup(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
        self._scratch = self._disk_file = None
