"""HAProxy's runtime API (the admin socket): one command per connection, answers as text."""

from __future__ import annotations

import asyncio
import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

# The longest path a Unix socket address holds (sun_path is 108 bytes, NUL included).
_SUN_PATH_MAX = 107
# Besides silence, the answers of `set server …` that mean it worked; anything else is an error.
_DONE = ("IP changed from", "no need to change")


class RuntimeApiError(RuntimeError):
    """HAProxy refused a runtime command or its socket did not answer."""


@dataclass(frozen=True)
class ServerStat:
    """One server's row of `show stat` (HAProxy's own counters of that slot)."""

    name: str
    status: str  # UP, DOWN, MAINT, DRAIN, "UP 1/2", "no check", …
    weight: int
    current_sessions: int  # scur
    sessions: int  # stot
    requests: int  # HTTP responses counted by class: their sum is the request count
    responses_5xx: int
    connect_errors: int  # econ
    response_errors: int  # eresp
    retries: int  # wretr
    redispatches: int  # wredis
    avg_response_ms: int  # rtime: mean over the last 1024 requests
    addr: str


class RuntimeApi:
    """A client of one HAProxy's admin socket."""

    def __init__(self, socket_path: Path, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    async def call(self, command: str) -> str:
        """Send one command and return HAProxy's whole answer (it closes after answering)."""
        try:
            reader, writer = await asyncio.wait_for(_connect(self.socket_path), self.timeout)
        except (TimeoutError, OSError) as e:
            raise RuntimeApiError(f"HAProxy's admin socket {self.socket_path} does not answer: {e}") from e
        try:
            writer.write(command.encode() + b"\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), self.timeout)
        except (TimeoutError, OSError) as e:
            raise RuntimeApiError(f"HAProxy did not answer {command!r}: {e}") from e
        finally:
            writer.close()
        return answer.decode(errors="replace")

    async def set(self, command: str) -> None:
        """Run a `set …`/`enable …` command; raise with HAProxy's words if it refused."""
        answer = (await self.call(command)).strip()
        if answer and not answer.startswith(_DONE):
            raise RuntimeApiError(f"HAProxy refused {command!r}: {answer}")

    async def worker_pid(self) -> int:
        """The PID of the worker that serves traffic (changes on a reload, unlike the master's)."""
        for line in (await self.call("show info")).splitlines():
            key, _, value = line.partition(":")
            if key == "Pid":
                return int(value)
        raise RuntimeApiError("`show info` has no Pid")

    async def servers(self, backend: str) -> dict[str, ServerStat]:
        """`show stat` of the servers of `backend`, by server name."""
        return parse_stat(await self.call("show stat"), backend)


async def _connect(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a Unix socket whatever the length of its path: one too long for a socket
    address (107 bytes) is reached through an open handle on its directory, /proc/self/fd/N/name."""
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        return await asyncio.open_unix_connection(str(path))
    directory = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        return await asyncio.open_unix_connection(f"/proc/self/fd/{directory}/{path.name}")
    finally:
        os.close(directory)  # the connection, once made, no longer needs it


def _int(row: dict[str, str], key: str) -> int:
    value = row.get(key) or ""
    return int(value) if value.lstrip("-").isdigit() else 0


def parse_stat(text: str, backend: str) -> dict[str, ServerStat]:
    """Parse `show stat`'s CSV (its header line starts with '# ')."""
    rows = csv.DictReader(io.StringIO(text.removeprefix("# ")))
    out: dict[str, ServerStat] = {}
    for row in rows:
        if row.get("pxname") != backend or row.get("svname") in ("FRONTEND", "BACKEND", None):
            continue
        classes = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")
        name = row["svname"]
        out[name] = ServerStat(
            name=name, status=row.get("status") or "", weight=_int(row, "weight"),
            current_sessions=_int(row, "scur"), sessions=_int(row, "stot"),
            requests=sum(_int(row, c) for c in classes), responses_5xx=_int(row, "hrsp_5xx"),
            connect_errors=_int(row, "econ"), response_errors=_int(row, "eresp"),
            retries=_int(row, "wretr"), redispatches=_int(row, "wredis"),
            avg_response_ms=_int(row, "rtime"), addr=row.get("addr") or "")
    return out
