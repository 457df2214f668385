"""The agent's supervisor: keeps each app's desired set of workloads running on this VM.

Each workload is a shell command in its own directory (`{root}/run/{id}`, where its files are
written) and its own session (process group), with PORT, HOST, CB_APP, CB_REVISION and
CB_INSTANCE set. When it exits it is started again after a backoff that doubles with every exit
within the crash-loop window (from `initial_backoff_s` up to `max_backoff_s`); the
`crash_loop_restarts`-th exit within the window leaves it in CRASH_LOOP, not restarted until its
set is sent again with a changed spec. A workload is STARTING until its health probe first passes
(`healthy_threshold` in a row; RUNNING at once without a probe), and unhealthy again after
`unhealthy_threshold` failures in a row. Output is kept as a ring of lines per stream, bounded
in lines and bytes. Stopping sends SIGTERM to the group, waits `stop_grace_s`, then SIGKILLs it.

The desired sets are persisted (`{root}/apps/{app}.json`, written atomically before anything is
started), so an agent that restarts starts them again: on agent shutdown every workload is
stopped (the VM's agent owns its processes; a process it cannot wait on it cannot supervise), and
at start the agent kills what a crashed predecessor left running (the process groups recorded in
`{root}/run/{id}/pgid`, if they still run in that directory) and starts every persisted set afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import shutil
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dragonfly.agent import probes
from dragonfly.protocol import wire
from dragonfly.protocol.workspec import SpecError, WorkloadSpec, from_saved

log = logging.getLogger("cb-agent.supervisor")

# How often a running workload's exit is looked for (Process.wait() on 3.11 also waits for its pipes).
_POLL_S = 0.05
# What is kept of each stream of each workload.
RING_LINES = 10_000
RING_BYTES = 512 << 10
MAX_LINE_BYTES = 8 << 10
# Workloads per VM, all apps together.
MAX_WORKLOADS = 256


class State(enum.Enum):
    """The names match the protobuf contract's WorkloadState without its prefix."""

    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    CRASH_LOOP = "CRASH_LOOP"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    FAILED = "FAILED"


class LogRing:
    """The last lines of one stream, bounded in lines and in bytes; a long line is cut."""

    def __init__(self, max_lines: int = RING_LINES, max_bytes: int = RING_BYTES) -> None:
        self.lines: deque[str] = deque(maxlen=max_lines)
        self.max_bytes = max_bytes
        self.bytes = 0
        self._partial = bytearray()

    def feed(self, chunk: bytes) -> None:
        self._partial += chunk
        while (cut := self._partial.find(b"\n")) >= 0:
            self._push(bytes(self._partial[:cut]))
            del self._partial[:cut + 1]
        if len(self._partial) > MAX_LINE_BYTES:
            self._push(bytes(self._partial))
            self._partial.clear()

    def flush(self) -> None:
        if self._partial:
            self._push(bytes(self._partial))
            self._partial.clear()

    def _push(self, raw: bytes) -> None:
        line = raw[:MAX_LINE_BYTES].decode(errors="replace")
        if len(self.lines) == self.lines.maxlen:
            self.bytes -= len(self.lines[0])
        self.lines.append(line)
        self.bytes += len(line)
        while self.bytes > self.max_bytes and len(self.lines) > 1:
            self.bytes -= len(self.lines.popleft())

    def tail(self, n: int) -> str:
        """The last `n` lines; a line still being written counts as the last (without its newline)."""
        partial = [bytes(self._partial).decode(errors="replace")] if self._partial else []
        lines = ([*self.lines, *partial])[-n:] if n > 0 else []
        return "".join(line + "\n" for line in lines)


def kill_group(pgid: int, sig: signal.Signals) -> bool:
    """Signal a process group; whether it still existed."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Supervised:
    """One workload and what its supervisor knows of it."""

    spec: WorkloadSpec
    directory: Path
    host: str
    base_env: Mapping[str, str]
    changed: Callable[[], None]
    state: State = State.STARTING
    restarts: int = 0
    last_exit_code: int = 0
    pid: int = 0
    started_at: float = 0.0
    healthy_at: float = 0.0
    updated_at: float = field(default_factory=time.time)
    message: str = ""
    exits: deque[float] = field(default_factory=deque)
    stdout: LogRing = field(default_factory=LogRing)
    stderr: LogRing = field(default_factory=LogRing)
    proc: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.verdict = probes.Verdict(self.spec.health.healthy_threshold, self.spec.health.unhealthy_threshold)

    @property
    def env(self) -> dict[str, str]:
        spec = self.spec
        return {**self.base_env, **spec.env, "PORT": str(spec.ports[0]) if spec.ports else "", "HOST": self.host,
                "CB_APP": spec.app, "CB_REVISION": str(spec.revision), "CB_INSTANCE": spec.id}

    def _set(self, state: State, message: str = "") -> None:
        if state != self.state or message != self.message:
            self.state, self.message, self.updated_at = state, message, time.time()
            self.changed()

    def _health(self, passed: bool) -> None:
        if self.verdict.observe(passed):
            self.healthy_at = time.time() if self.verdict.healthy else 0.0
            self.updated_at = time.time()
            if self.verdict.healthy and self.state == State.STARTING:
                self._set(State.RUNNING)
            else:
                self.changed()

    def status(self) -> dict[str, Any]:
        """The wire form of WorkloadStatus (times in seconds since the epoch, 0 = unset)."""
        spec = self.spec
        return {"id": spec.id, "app": spec.app, "revision": spec.revision, "state": self.state.value,
                "healthy": self.verdict.healthy, "restarts": self.restarts, "last_exit_code": self.last_exit_code,
                "pid": self.pid, "started_time": self.started_at, "healthy_time": self.healthy_at,
                "update_time": self.updated_at, "message": self.message, "ip": self.host, "ports": list(spec.ports)}

    # -- life -----------------------------------------------------------------

    def prepare(self) -> None:
        """The workload's directory, with its files (written afresh: a new spec may change them)."""
        if self.directory.exists():
            shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        for rel, content in self.spec.files.items():
            path = self.directory / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)

    async def run(self) -> None:
        """Start, watch, restart with backoff, until stopped or crash-looping."""
        try:
            self.prepare()
        except OSError as err:
            self._set(State.FAILED, f"cannot write its files: {err}")
            return
        while not self.stopping.is_set():
            if not await self._run_once():
                return
            if self.stopping.is_set():
                break
            restart = self.spec.restart
            now = time.monotonic()
            self.exits.append(now)
            while self.exits and now - self.exits[0] > restart.crash_loop_window_s:
                self.exits.popleft()
            if len(self.exits) >= restart.crash_loop_restarts:
                self._set(State.CRASH_LOOP, f"exited {len(self.exits)} times within {restart.crash_loop_window_s:g}s "
                                            f"(last exit code {self.last_exit_code}); not restarted")
                return
            delay = min(restart.max_backoff_s, restart.initial_backoff_s * 2 ** (len(self.exits) - 1))
            self._set(State.BACKOFF, f"exited with code {self.last_exit_code}; restarting in {delay:g}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            if not self.stopping.is_set():
                self.restarts += 1
        self._set(State.STOPPED)

    async def _run_once(self) -> bool:
        """One life of the process; False if it could not be started at all."""
        try:
            proc = await asyncio.create_subprocess_shell(
                self.spec.command, cwd=self.directory, env=self.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        except OSError as err:
            self._set(State.FAILED, f"cannot start: {err}")
            return False
        self.proc, self.pid, self.started_at = proc, proc.pid, time.time()
        with contextlib.suppress(OSError):
            (self.directory / "pgid").write_text(str(proc.pid))
        self.verdict.reset()
        self.healthy_at = 0.0
        if self.spec.health.kind == "none":
            # Without a probe, a running process is all there is to know.
            self.verdict.healthy, self.healthy_at = True, self.started_at
        self._set(State.STARTING if self.spec.health.kind != "none" else State.RUNNING, "")
        assert proc.stdout is not None and proc.stderr is not None
        helpers = [asyncio.create_task(_drain(proc.stdout, self.stdout)),
                   asyncio.create_task(_drain(proc.stderr, self.stderr))]
        if self.spec.health.kind != "none":
            helpers.append(asyncio.create_task(self._probe_forever()))
        try:
            await self._until_exit(proc)
        finally:
            # What the shell left behind goes with it: the next start must find its ports free.
            kill_group(proc.pid, signal.SIGKILL)
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            self.stdout.flush()
            self.stderr.flush()
        self.last_exit_code = proc.returncode if proc.returncode is not None else -1
        self.pid, self.proc = 0, None
        if self.verdict.reset():
            self.healthy_at = 0.0
        self.verdict.healthy = False
        self.changed()
        return True

    async def _until_exit(self, proc: asyncio.subprocess.Process) -> None:
        """Wait for the process to exit; once stopping: SIGTERM to its group, `stop_grace_s`, SIGKILL.
        (Here, not in `stop`: a stop may come while the process is being started.)"""
        kill_at = 0.0
        while proc.returncode is None:
            if self.stopping.is_set():
                if not kill_at:
                    self._set(State.STOPPING)
                    kill_group(proc.pid, signal.SIGTERM)
                    kill_at = time.monotonic() + self.spec.stop_grace_s
                elif time.monotonic() >= kill_at:
                    kill_group(proc.pid, signal.SIGKILL)
            await asyncio.sleep(_POLL_S)

    async def _probe_forever(self) -> None:
        health = self.spec.health
        while True:
            await asyncio.sleep(health.interval_s)
            passed = await probes.probe(health, self.host, self.spec.probe_port, str(self.directory), self.env)
            if self.proc is None or self.proc.returncode is not None:
                return
            self._health(passed)

    async def stop(self) -> None:
        """SIGTERM to the group, `stop_grace_s`, then SIGKILL; returns once it is stopped."""
        self.stopping.set()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        self._set(State.STOPPED)
        with contextlib.suppress(OSError):
            (self.directory / "pgid").unlink()


async def _drain(stream: asyncio.StreamReader, ring: LogRing) -> None:
    while chunk := await stream.read(65536):
        ring.feed(chunk)


class Supervisor:
    """Every app's workloads on this VM."""

    def __init__(self, root: Path, host: str, base_env: Mapping[str, str] | None = None,
                 on_change: Callable[[], None] | None = None) -> None:
        self.root = root
        self.host = host
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.on_change = on_change or (lambda: None)
        self.apps: dict[str, list[WorkloadSpec]] = {}
        self.running: dict[str, Supervised] = {}
        # Sets are applied one at a time, each to the end (its stops, then its starts).
        self._lock = asyncio.Lock()

    @property
    def pgids(self) -> set[int]:
        return {w.pid for w in self.running.values() if w.pid}

    # -- desired state ----------------------------------------------------------

    async def start(self) -> None:
        """Kill what a crashed predecessor left running, then start every persisted set."""
        self._kill_leftovers()
        for path in sorted((self.root / "apps").glob("*.json")):
            try:
                saved = wire.loads(path.read_bytes())
                specs = [from_saved(item) for item in saved["workloads"]]
            except (OSError, ValueError, KeyError, TypeError) as err:
                log.warning("persisted workloads unreadable; dropped", extra={"path": str(path), "error": str(err)})
                path.unlink(missing_ok=True)
                continue
            await self.set(path.stem, specs)

    def _kill_leftovers(self) -> None:
        for pgid_file in (self.root / "run").glob("*/pgid"):
            with contextlib.suppress(OSError, ValueError):
                pgid = int(pgid_file.read_text())
                # Only a group still running in that directory is ours (the PID may have been reused).
                if Path(f"/proc/{pgid}/cwd").resolve() == pgid_file.parent.resolve():
                    kill_group(pgid, signal.SIGKILL)
                pgid_file.unlink()

    async def set(self, app: str, specs: list[WorkloadSpec]) -> list[dict[str, Any]]:
        """Make `specs` the whole set of `app`: persist it, stop what left or changed, start what
        is new or changed. The statuses of the app's workloads (a new one is STARTING)."""
        async with self._lock:
            taken = {s.id: a for a, group in self.apps.items() if a != app for s in group}
            for spec in specs:
                if spec.id in taken:
                    raise SpecError(f"workload ID {spec.id!r} is already used by app {taken[spec.id]!r} on this VM")
            others = sum(len(g) for a, g in self.apps.items() if a != app)
            if others + len(specs) > MAX_WORKLOADS:
                raise SpecError(f"a VM runs at most {MAX_WORKLOADS} workloads ({others} of other apps run here)")
            self._persist(app, specs)
            wanted = {s.id: s for s in specs}
            old = [w for w in self.running.values() if w.spec.app == app
                   and (w.spec.id not in wanted or wanted[w.spec.id] != w.spec)]
            await asyncio.gather(*(w.stop() for w in old))
            for w in old:
                del self.running[w.spec.id]
                if w.spec.id not in wanted:
                    shutil.rmtree(w.directory, ignore_errors=True)
            for spec in specs:
                if spec.id not in self.running:
                    self._launch(spec)
            if specs:
                self.apps[app] = specs
            else:
                self.apps.pop(app, None)
            self.on_change()
            return [self.running[s.id].status() for s in specs]

    def _persist(self, app: str, specs: list[WorkloadSpec]) -> None:
        folder = self.root / "apps"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{app}.json"
        if not specs:
            path.unlink(missing_ok=True)
            return
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(wire.dumps({"app": app, "workloads": [s.to_wire() for s in specs]}))
        os.replace(tmp, path)

    def _launch(self, spec: WorkloadSpec) -> None:
        w = Supervised(spec, self.root / "run" / spec.id, self.host, self.base_env, self.on_change)
        w.task = asyncio.create_task(w.run())
        self.running[spec.id] = w

    # -- reading ----------------------------------------------------------------

    def statuses(self) -> list[dict[str, Any]]:
        return [w.status() for w in self.running.values()]

    def logs(self, workload_id: str, tail_lines: int) -> tuple[str, str] | None:
        w = self.running.get(workload_id)
        if w is None:
            return None
        return w.stdout.tail(tail_lines), w.stderr.tail(tail_lines)

    async def stop_all(self) -> None:
        """Stop every workload (the agent stops); the desired sets stay persisted for the next start."""
        async with self._lock:
            await asyncio.gather(*(w.stop() for w in self.running.values()))
            self.running.clear()
