"""Commands the agent runs: a shell command line with a timeout and an output limit.

Each command runs in a new session (its own process group), so a timeout kills
everything it started, and what it leaves running in the background (a server)
can be found (CPU, memory) and stopped with the agent. The answer is due when
the shell exits: background children that keep stdout open do not hold it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping

from dragonfly.protocol.replies import CommandResult
from services.capped import Capped

# After the shell exits, how long to wait for the rest of its output.
_TAIL_S = 0.2


async def _exit_code(proc: asyncio.subprocess.Process, timeout_s: float) -> int | None:
    """The shell's exit code once it exits, or None after `timeout_s`.

    Polled, because on Python 3.11 `Process.wait()` also waits for the pipes to
    close, which a server left running in the background never does.
    """
    deadline = time.monotonic() + timeout_s
    while proc.returncode is None and time.monotonic() < deadline:  # noqa: ASYNC110 (no exit event on 3.11)
        await asyncio.sleep(0.02)
    return proc.returncode


class Runner:
    """Runs commands in one directory with one environment, and remembers their process groups."""

    def __init__(self, cwd: str | None = None, env: Mapping[str, str] | None = None) -> None:
        self.cwd = cwd
        self.env = {**os.environ, **(env or {})}
        self.pgids: set[int] = set()

    async def run(self, command: str, timeout_s: float, limit_bytes: int) -> CommandResult:
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_shell(
                command, cwd=self.cwd, env=self.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            return CommandResult(-1, "", "", False, False, False, 0.0, error=f"cannot start: {exc}")
        self.pgids.add(proc.pid)  # the session leader's PID is the group's ID
        out, err = Capped(limit_bytes), Capped(limit_bytes)
        assert proc.stdout is not None and proc.stderr is not None
        readers = [asyncio.create_task(out.drain(proc.stdout)), asyncio.create_task(err.drain(proc.stderr))]
        timed_out = False
        code = await _exit_code(proc, timeout_s)
        if code is None:
            timed_out = True
            self.kill_group(proc.pid)
            code = await _exit_code(proc, 5.0)
        await asyncio.wait(readers, timeout=_TAIL_S)
        for task in readers:
            task.cancel()
        self.forget_dead()
        return CommandResult(-9 if code is None else code, out.text(), err.text(), timed_out, out.truncated, err.truncated,
                             round(time.monotonic() - started, 3),
                             error=f"timed out after {timeout_s:g}s" if timed_out else "")

    def kill_group(self, pgid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    def forget_dead(self) -> None:
        """Drop groups with no process left."""
        for pgid in list(self.pgids):
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                self.pgids.discard(pgid)

    def stop_all(self) -> None:
        """Kill everything any command left running (the VM stops)."""
        for pgid in list(self.pgids):
            self.kill_group(pgid)
        self.pgids.clear()
