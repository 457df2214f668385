"""The measuring loops of the host benchmarks: plain, synchronous, standard library only.

CPU and memory loops run in worker processes, `python -m dragonfly.agent.workloads
LOOP ARGS…`, which print their result as JSON (so the agent's event loop and its
metric batches never wait for them); disk loops run in a thread (file I/O
releases the GIL). Each loop times itself, so the cost of starting a worker is
not in the result. This module is all a worker imports: it stays small.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable

# One CPU operation: SHA-256 of a 1 KiB block. Hashing runs in C, so the score is the
# processor's, not the interpreter's; it is an integer workload every core has.
CPU_BLOCK = b"\x5a" * 1024
_CPU_BATCH = 256
DISK_CHUNK = 1 << 20
# Written data is flushed to the device every this many bytes, so the write rate is the
# device's and the final flush cannot run far past the time share.
DISK_SYNC_BYTES = 8 << 20


def hash_window(start_at: float, end_at: float) -> tuple[int, float]:
    """Hash from wall-clock `start_at` (or arrival, if later) to `end_at`: (operations, seconds).

    Several workers given one window run together, so their sum is what all cores do at once.
    """
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    t0 = time.perf_counter()
    stop = t0 + max(0.0, end_at - time.time())
    ops = 0
    while True:
        for _ in range(_CPU_BATCH):
            hashlib.sha256(CPU_BLOCK).digest()
        ops += _CPU_BATCH
        now = time.perf_counter()
        if now >= stop:
            return ops, now - t0


def _filled(size: int) -> bytearray:
    # Touched, non-zero pages: fresh zero pages all map to one page the cache holds, which
    # would make the read rate the cache's.
    return bytearray(b"\x5a") * size


def memory_read(seconds: float, size: int) -> float:
    """Bytes per second scanning a buffer larger than the caches (memchr over it, no match)."""
    buf = _filled(size)
    buf.find(b"\x01")  # once untimed: the pages are resident
    t0 = time.perf_counter()
    done = 0
    while True:
        buf.find(b"\x01")
        done += size
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return done / elapsed


def memory_write(seconds: float, size: int) -> float:
    """Bytes per second filling a buffer larger than the caches (memset)."""
    buf = _filled(size)
    address = ctypes.addressof((ctypes.c_char * size).from_buffer(buf))
    t0 = time.perf_counter()
    done, value = 0, 0
    while True:
        value = (value + 1) & 0xFF
        ctypes.memset(address, value, size)
        done += size
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return done / elapsed


def disk_write(path: str, seconds: float, limit: int) -> float:
    """Bytes per second writing incompressible data to `path` (at most `limit` bytes), flushed
    to the device as it goes."""
    chunk = os.urandom(DISK_CHUNK)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        t0 = time.perf_counter()
        written = 0
        while written < limit:
            written += os.write(fd, chunk)
            if written % DISK_SYNC_BYTES == 0:
                os.fdatasync(fd)
                if time.perf_counter() - t0 >= seconds:
                    break
        os.fdatasync(fd)
        return written / (time.perf_counter() - t0)
    finally:
        os.close(fd)


def _drop_cache(fd: int) -> None:
    # The file was flushed, so its pages are clean and the kernel can let them go: reads then
    # come from the device. Where it cannot (some file systems), they come from memory.
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def disk_read(path: str, seconds: float) -> float:
    """Bytes per second reading `path` from the start, again from the start while time is left."""
    buf = bytearray(DISK_CHUNK)
    view = memoryview(buf)
    fd = os.open(path, os.O_RDONLY)
    try:
        _drop_cache(fd)
        t0 = time.perf_counter()
        done = 0
        while time.perf_counter() - t0 < seconds:
            got = os.readv(fd, [view])
            if got == 0:
                if done == 0:
                    raise OSError(f"{path} is empty")
                _drop_cache(fd)
                os.lseek(fd, 0, os.SEEK_SET)
            done += got
        return done / (time.perf_counter() - t0)
    finally:
        os.close(fd)


# What a worker process may run: name → (loop, argument types).
WORKER_LOOPS: dict[str, tuple[Callable[..., object], tuple[type, ...]]] = {
    "hash_window": (hash_window, (float, float)),
    "memory_read": (memory_read, (float, int)),
    "memory_write": (memory_write, (float, int)),
}


def main(argv: list[str]) -> int:
    """A worker: run one loop with its arguments, print the result as JSON."""
    if not argv or argv[0] not in WORKER_LOOPS:
        print(f"usage: workloads {{{'|'.join(WORKER_LOOPS)}}} ARGS…", file=sys.stderr)
        return 2
    fn, types = WORKER_LOOPS[argv[0]]
    print(json.dumps(fn(*(t(a) for t, a in zip(types, argv[1:], strict=True)))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
