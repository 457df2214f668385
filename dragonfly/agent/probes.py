"""Local health probes of a workload: HTTP GET, TCP connect, or a command; and the thresholds.

Probes go to the VM's own IP (what clients reach), never through the services: a workload's
health is known on its VM at once. A probe that does not answer within its timeout failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass

from dragonfly.protocol.workspec import HealthSpec


async def http_ok(host: str, port: int, path: str) -> bool:
    """GET http://host:port/path answered 2xx or 3xx (HTTP/1.0: the server closes after it)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: cb-agent\r\n\r\n".encode())
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    parts = line.split()
    return len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1][:1] in (b"2", b"3")


async def tcp_ok(host: str, port: int) -> bool:
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def command_ok(command: str, cwd: str, env: Mapping[str, str], timeout_s: float) -> bool:
    """The command exits 0 within the timeout (its process group is killed otherwise)."""
    proc = await asyncio.create_subprocess_shell(command, cwd=cwd, env=dict(env), stdin=asyncio.subprocess.DEVNULL,
                                                 stdout=asyncio.subprocess.DEVNULL,
                                                 stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
    try:
        return await asyncio.wait_for(proc.wait(), timeout_s) == 0
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await proc.wait()


async def probe(spec: HealthSpec, host: str, port: int, cwd: str, env: Mapping[str, str]) -> bool:
    """One probe: passed or not (an error or a timeout is a failure)."""
    try:
        if spec.kind == "http":
            return await asyncio.wait_for(http_ok(host, port, spec.http_path), spec.timeout_s)
        if spec.kind == "tcp":
            return await asyncio.wait_for(tcp_ok(host, port), spec.timeout_s)
        if spec.kind == "command":
            return await command_ok(spec.command, cwd, env, spec.timeout_s)
    except (OSError, TimeoutError, ValueError):
        return False
    return True


@dataclass
class Verdict:
    """Consecutive passes and failures turned into healthy/unhealthy with the spec's thresholds.

    Starts unhealthy: a workload is healthy only once it passed `healthy_threshold` probes in a
    row, and unhealthy again after `unhealthy_threshold` failures in a row."""

    healthy_threshold: int
    unhealthy_threshold: int
    healthy: bool = False
    passes: int = 0
    failures: int = 0

    def observe(self, passed: bool) -> bool:
        """Record one probe; whether the verdict changed."""
        if passed:
            self.passes, self.failures = self.passes + 1, 0
            if not self.healthy and self.passes >= self.healthy_threshold:
                self.healthy = True
                return True
        else:
            self.passes, self.failures = 0, self.failures + 1
            if self.healthy and self.failures >= self.unhealthy_threshold:
                self.healthy = False
                return True
        return False

    def reset(self) -> bool:
        """The process is gone: unhealthy at once. Whether the verdict changed."""
        changed = self.healthy
        self.healthy, self.passes, self.failures = False, 0, 0
        return changed
