"""One application's endpoint: an HAProxy process balancing over the app's instances."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ladybug.endpoint import slots as slotting
from ladybug.endpoint.config import BACKEND, Files, HealthCheck, check_app_name, render, slot_name
from ladybug.endpoint.process import HaproxyProcess
from ladybug.endpoint.runtime import ServerStat
from ladybug.endpoint.settings import EndpointSettings
from ladybug.endpoint.slots import Backend, Slot


@dataclass(frozen=True)
class BackendStats:
    """One instance's traffic through the endpoint since it was placed there."""

    requests: int
    responses_5xx: int
    avg_response_ms: int  # HAProxy's mean over the slot's last 1024 requests
    current_sessions: int  # requests in flight; 0 on a drained instance means it may stop
    status: str  # UP, DOWN, DRAIN, MAINT, "UP 1/2" (rising), …
    connect_errors: int
    retries: int


@dataclass
class _Counters:
    requests: int = 0
    responses_5xx: int = 0
    connect_errors: int = 0
    retries: int = 0


@dataclass
class _Record:
    """What survives a restart of ladybug beside the running HAProxy (slots.json)."""

    slots: int
    assignment: dict[str, Slot] = field(default_factory=dict)
    base: dict[int, _Counters] = field(default_factory=dict)  # counters when the slot was taken

    def placed(self) -> dict[int, tuple[str, int, int]]:
        return {s.index: (s.backend.ip, s.backend.port, s.backend.weight) for s in self.assignment.values()}

    def dump(self) -> str:
        return json.dumps({
            "slots": self.slots,
            "assignment": {i: {"index": s.index, **asdict(s.backend)} for i, s in self.assignment.items()},
            "base": {str(k): asdict(v) for k, v in self.base.items()}})

    @classmethod
    def load(cls, text: str) -> _Record:
        raw = json.loads(text)
        assignment = {}
        for i, s in raw["assignment"].items():
            index = s.pop("index")
            assignment[i] = Slot(index, Backend(**s))
        return cls(int(raw["slots"]), assignment, {int(k): _Counters(**v) for k, v in raw["base"].items()})


def _counters(stat: ServerStat) -> _Counters:
    return _Counters(stat.requests, stat.responses_5xx, stat.connect_errors, stat.retries)


class Endpoint:
    """The one address of an application: HAProxy on `host:port` balancing over its healthy
    instances on every cloud, changed through HAProxy's runtime API without a reload.

    Create or adopt one with `await Endpoint.ensure(app, port)`; then `set_backends`, `stats`,
    `drained`/`wait_drained`, and `stop` when the application is deleted. A ladybug that stops
    leaves its endpoints serving; the next `ensure` adopts them."""

    def __init__(self, app: str, port: int, check: HealthCheck, settings: EndpointSettings,
                 files: Files, process: HaproxyProcess, record: _Record) -> None:
        self.app = app
        self.port = port
        self.check = check
        self.settings = settings
        self.files = files
        self.process = process
        self._record = record
        self._lock = asyncio.Lock()
        self.reloads = 0

    @property
    def host(self) -> str:
        return self.settings.host

    @property
    def pid(self) -> int:
        """The HAProxy master's PID (stable across reloads)."""
        return self.process.pid

    async def worker_pid(self) -> int:
        """The PID of the worker serving now; a reload replaces it."""
        return await self.process.api.worker_pid()

    @classmethod
    async def ensure(cls, app: str, port: int, check: HealthCheck | None = None,
                     settings: EndpointSettings | None = None) -> Endpoint:
        """Start the endpoint of `app` on the bind host and `port`, or adopt the one already
        running. A changed port, bind host or health check is applied by a seamless reload."""
        check_app_name(app)
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is not in 1-65535")
        settings = settings or EndpointSettings()
        check = check or HealthCheck()
        files = _app_files(settings, app)
        process = await HaproxyProcess.adopt(files)
        if process is not None:
            record = cls._read_record(files, settings)
        else:
            # A fresh HAProxy has every slot free: forget what an earlier one held.
            files.server_state.unlink(missing_ok=True)
            record = _Record(settings.slots)
        changed = _write_if_changed(files.config, render(app, settings.host, port, record.slots, check,
                                                         files, settings, record.placed()))
        if process is None:
            process = await HaproxyProcess.start(files, settings.haproxy)
        ep = cls(app, port, check, settings, files, process, record)
        if changed and process.proc is None:
            await ep._reload()
        await ep._repair()
        return ep

    @staticmethod
    def _read_record(files: Files, settings: EndpointSettings) -> _Record:
        try:
            return _Record.load(files.slots.read_text())
        except (OSError, ValueError, KeyError, TypeError):
            return _Record(settings.slots)

    async def _repair(self) -> None:
        """Make the record and HAProxy agree after an adoption: an instance whose slot holds
        another address is forgotten (the next set_backends places it again), weights and drain
        are read back, and slots in service that nobody assigned are taken out."""
        servers = await self.process.api.servers(BACKEND)
        kept: dict[str, Slot] = {}
        for iid, s in self._record.assignment.items():
            stat = servers.get(slot_name(s.index))
            if stat is None or stat.addr != f"{s.backend.ip}:{s.backend.port}" or stat.status == "MAINT":
                continue
            b = s.backend
            kept[iid] = Slot(s.index, Backend(b.instance_id, b.ip, b.port, stat.weight, stat.status == "DRAIN"))
        self._record.assignment = kept
        in_service = [int(n.removeprefix("s")) for n, st in servers.items() if not st.status.startswith("MAINT")]
        for command in slotting.strays((s.index for s in kept.values()), in_service):
            await self.process.api.set(command)
        self._save()

    def _save(self) -> None:
        """Record the slots, and keep the config file in step so a reload keeps the addresses."""
        _write(self.files.slots, self._record.dump())
        _write(self.files.config, self._render())

    def _render(self) -> str:
        return render(self.app, self.host, self.port, self._record.slots, self.check, self.files,
                      self.settings, self._record.placed())

    async def _reload(self) -> None:
        _write(self.files.config, self._render())
        await self.process.reload()
        self.reloads += 1
        # The new worker counts from zero.
        self._record.base = {}
        self._save()

    async def set_backends(self, backends: Sequence[Backend]) -> None:
        """Make the endpoint balance over exactly `backends`. Runtime commands only; a seamless
        reload happens only when there are more instances than slots (the slots then double)."""
        async with self._lock:
            try:
                p = slotting.plan(self._record.assignment, backends, self._record.slots)
            except slotting.TooFewSlots as e:
                while self._record.slots < e.needed:
                    self._record.slots *= 2
                self._save()
                await self._reload()
                p = slotting.plan(self._record.assignment, backends, self._record.slots)
            if p.fresh:
                servers = await self.process.api.servers(BACKEND)
                for index in p.fresh:
                    stat = servers.get(slot_name(index))
                    self._record.base[index] = _counters(stat) if stat else _Counters()
            for command in p.commands:
                await self.process.api.set(command)
            self._record.assignment = p.assignment
            self._save()

    async def stats(self) -> dict[str, BackendStats]:
        """Per instance: requests, 5xx answers, mean response time, sessions in flight, status."""
        servers = await self.process.api.servers(BACKEND)
        out: dict[str, BackendStats] = {}
        for iid, s in self._record.assignment.items():
            stat = servers.get(slot_name(s.index))
            if stat is None:
                continue
            base = self._record.base.get(s.index, _Counters())
            out[iid] = BackendStats(
                requests=stat.requests - base.requests, responses_5xx=stat.responses_5xx - base.responses_5xx,
                avg_response_ms=stat.avg_response_ms, current_sessions=stat.current_sessions,
                status=stat.status, connect_errors=stat.connect_errors - base.connect_errors,
                retries=stat.retries - base.retries)
        return out

    async def drained(self, instance_id: str) -> bool:
        """True once a draining (or removed) instance has no request in flight."""
        s = self._record.assignment.get(instance_id)
        if s is None:
            return True
        if not s.backend.drain:
            return False  # still taking new requests
        stat = (await self.process.api.servers(BACKEND)).get(slot_name(s.index))
        # Status may also read DOWN (checks fail) or MAINT: only what is in flight matters.
        return stat is None or stat.current_sessions == 0

    async def wait_drained(self, instance_ids: Sequence[str], timeout: float,
                           poll: float = 0.1) -> bool:
        """Wait until every instance in `instance_ids` is drained; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        pending = list(instance_ids)
        while True:
            pending = [i for i in pending if not await self.drained(i)]
            if not pending:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(poll)

    async def stop(self) -> None:
        """Stop HAProxy (by its PID) and forget the slots: the application is gone."""
        async with self._lock:
            await self.process.stop()
            self.files.slots.unlink(missing_ok=True)


def _write(path: Path, text: str) -> None:
    """Replace a file atomically, readable by its owner only."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _app_files(settings: EndpointSettings, app: str) -> Files:
    files = Files(Path(settings.run_dir).absolute() / app)
    files.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return files


def _write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    _write(path, text)
    return True
