"""A bounded HTTP/1.1 load generator over keep-alive connections (asyncio, loopback only)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    """What the clients saw: answers by status and by body, failures, latencies."""

    statuses: Counter[int] = field(default_factory=Counter)
    bodies: Counter[str] = field(default_factory=Counter)
    failures: int = 0  # no HTTP answer at all (connection refused, reset, timeout)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    @property
    def failed(self) -> int:
        """Requests that did not get a 2xx/3xx answer."""
        return self.failures + sum(n for s, n in self.statuses.items() if s >= 400)

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def throughput(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    length = 0
    close = False
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.lower() == "content-length":
            length = int(value)
        elif key.lower() == "connection" and value.strip().lower() == "close":
            close = True
    body = await reader.readexactly(length) if length else b""
    return status, body, close


async def _client(host: str, port: int, path: str, deadline: float, budget: list[int], result: LoadResult,
                  timeout: float, pause: float, until: asyncio.Event) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while budget[0] > 0 and time.monotonic() < deadline and not until.is_set():
        budget[0] -= 1
        start = time.perf_counter()
        try:
            if conn is None:
                conn = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            reader, writer = conn
            writer.write(request)
            status, body, close = await asyncio.wait_for(_read_response(reader), timeout)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError):
            result.failures += 1
            if conn is not None:
                conn[1].close()
            conn = None
            continue
        result.latencies_ms.append((time.perf_counter() - start) * 1000)
        result.statuses[status] += 1
        result.bodies[body.decode(errors="replace")] += 1
        if close:
            conn[1].close()
            conn = None
        if pause:
            await asyncio.sleep(pause)
    if conn is not None:
        conn[1].close()
        with contextlib.suppress(OSError):
            await conn[1].wait_closed()


async def load(host: str, port: int, *, requests: int, seconds: float, connections: int = 4,
               path: str = "/", timeout: float = 5.0, pause: float = 0.0,
               until: asyncio.Event | None = None) -> LoadResult:
    """Send at most `requests` requests within `seconds` over `connections` keep-alive connections;
    `pause` between a client's requests makes the load steady rather than as fast as possible;
    setting `until` ends it early (the result covers what was sent)."""
    result = LoadResult()
    until = until or asyncio.Event()
    budget = [requests]
    start = time.monotonic()
    await asyncio.gather(*(_client(host, port, path, start + seconds, budget, result, timeout, pause, until)
                           for _ in range(connections)))
    result.seconds = time.monotonic() - start
    return result
