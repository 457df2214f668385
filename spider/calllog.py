"""The call log: every call a driver makes to a cloud, as a JSON line and a queryable entry.

Entries live in a bounded in-memory ring (for the API) and are appended to a
JSON-lines file (for operators and log shippers). Statistics per connection and
cloud API keep a bounded sample of latencies for percentiles.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson
from google.protobuf.timestamp_pb2 import Timestamp

from cbapi.spider.v1 import spider_pb2 as pb


@dataclass
class _ApiStats:
    calls: int = 0
    errors: int = 0
    max_seconds: float = 0.0
    sample: deque[float] = field(default_factory=lambda: deque(maxlen=2048))

    def add(self, seconds: float, failed: bool) -> None:
        self.calls += 1
        self.errors += int(failed)
        self.max_seconds = max(self.max_seconds, seconds)
        self.sample.append(seconds)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class CallLog:
    """Bounded ring of entries + JSON-lines file + per-(connection, API) statistics."""

    def __init__(self, path: str = "", capacity: int = 20_000) -> None:
        self._ring: deque[pb.CallLogEntry] = deque(maxlen=capacity)
        self._stats: dict[tuple[str, str], _ApiStats] = {}
        self._file: IO[str] | None = None
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", buffering=64 * 1024, encoding="utf-8")  # noqa: SIM115  (kept open for the process)
        self._last_flush = time.monotonic()

    def record(self, entry: pb.CallLogEntry) -> None:
        self._ring.append(entry)
        key = (entry.connection, entry.cloud_api)
        self._stats.setdefault(key, _ApiStats()).add(entry.elapsed_seconds, bool(entry.error))
        if self._file is not None:
            # orjson: a line per cloud call is on spider's hot path; json.dumps took several times longer.
            self._file.write(orjson.dumps({
                "time": entry.time.ToJsonString(), "connection": entry.connection, "driver": entry.driver,
                "provider": entry.provider, "region": entry.region, "resource_type": entry.resource_type,
                "resource_name": entry.resource_name, "cloud_api": entry.cloud_api,
                "elapsed_seconds": round(entry.elapsed_seconds, 6), "error": entry.error, "attempt": entry.attempt,
            }).decode() + "\n")
            now = time.monotonic()
            if now - self._last_flush > 1.0:
                self._file.flush()
                self._last_flush = now

    def entries(self, connection: str = "", since: Timestamp | None = None) -> list[pb.CallLogEntry]:
        """Entries newest last, filtered by connection and time."""
        since_ns = since.ToNanoseconds() if since is not None and since.seconds else 0
        return [e for e in self._ring
                if (not connection or e.connection == connection) and e.time.ToNanoseconds() >= since_ns]

    def stats(self, connection: str = "") -> list[pb.CallStats]:
        out = []
        for (conn, api), s in sorted(self._stats.items()):
            if connection and conn != connection:
                continue
            sample = list(s.sample)
            out.append(pb.CallStats(connection=conn, cloud_api=api, calls=s.calls, errors=s.errors,
                                    p50_seconds=_percentile(sample, 0.50), p99_seconds=_percentile(sample, 0.99),
                                    max_seconds=s.max_seconds))
        return out

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
