"""Workloads on dragonfly's side: the set request an agent gets, and the statuses agents report.

Agents publish their statuses on `cb.workloads.{ns}.{mcis}.{vm}` when something changes and
every few seconds; one replica (queue group "dragonfly-workloads") checks each report, like every
agent message, and writes it to etcd (`/cb/dragonfly/ns/{ns}/workloads/{mcis}/{vm}`, one
`VmWorkloads` per VM) only when the statuses changed or the stored copy is older than
`REFRESH_S`, so every replica answers ListWorkloads alike and a quiet fleet writes little (a VM
that runs no workload and has none stored gets no record at all, nor a refresh). A
report older than the stored one (the agent's own clock; reports may reach different replicas
out of order) is dropped. The answer to a SetWorkloads is merged in at once, so a ListWorkloads
right after it sees the new set.

Most reports change nothing (an agent repeats its statuses every few seconds), so each replica
keeps what etcd holds for every VM, filled by its reads and writes and kept current by a watch
on the records (whichever replica wrote them): a report equal to the stored statuses and within
`REFRESH_S` of them is dropped without asking etcd. Only a change, a refresh or a VM this replica
has not seen yet costs an etcd read.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg

from cbapi.dragonfly.v1 import workloads_pb2 as wpb
from dragonfly import keyspace
from dragonfly.agents import stamp
from dragonfly.guard import AgentGuard
from dragonfly.protocol import wire
from dragonfly.protocol.subjects import WORKLOADS_ALL, VmId
from dragonfly.protocol.workspec import SpecError, parse_set
from services import errors
from services.bus import Bus
from services.store import Store

log = logging.getLogger("dragonfly.workloads")

QUEUE = "dragonfly-workloads"
# A stored report unchanged for this long is written again (its report_time says the agent is still there).
REFRESH_S = 60.0
_PROBES = {"http_path": "http", "tcp": "tcp", "command": "command"}
_STATUS_INTS = ("revision", "restarts", "last_exit_code", "pid")


def set_body(request: wpb.SetWorkloadsRequest) -> dict[str, Any]:
    """The agent's set request for `request`, checked as the agent will check it (INVALID_ARGUMENT
    names what is wrong): one app's whole set, file contents once each in `blobs`."""
    blobs: dict[str, str] = {}
    workloads = []
    for w in request.workloads:
        files = {}
        for path, content in w.files.items():
            digest = hashlib.sha256(content).hexdigest()
            blobs[digest] = _b64(content)
            files[path] = digest
        h = w.health
        kind = _PROBES.get(h.WhichOneof("probe") or "", "none")
        workloads.append({
            "id": w.id, "app": w.app or request.app, "revision": w.revision, "command": w.command,
            "env": dict(w.env), "files": files, "ports": list(w.ports),
            "health": {"kind": kind, "http_path": h.http_path, "command": h.command, "port": h.port,
                       "interval_s": h.interval_s, "timeout_s": h.timeout_s,
                       "healthy_threshold": h.healthy_threshold, "unhealthy_threshold": h.unhealthy_threshold},
            "restart": {"initial_backoff_s": w.restart.initial_backoff_s, "max_backoff_s": w.restart.max_backoff_s,
                        "crash_loop_restarts": w.restart.crash_loop_restarts,
                        "crash_loop_window_s": w.restart.crash_loop_window_s},
            "stop_grace_s": w.stop_grace_s})
    body = {"app": request.app, "blobs": blobs, "workloads": workloads}
    try:
        parse_set(body)
    except SpecError as err:
        raise errors.InvalidArgument.field("workloads" if request.app else "app", str(err)) from err
    return body


def _b64(content: bytes) -> str:
    return base64.b64encode(content).decode()


def to_status(body: dict[str, Any]) -> wpb.WorkloadStatus:
    """A status as an agent sends it (ValueError, KeyError or TypeError if it is not one)."""
    if not isinstance(body, dict):
        raise TypeError("a status is an object")
    out = wpb.WorkloadStatus(id=str(body["id"]), app=str(body["app"]), healthy=bool(body["healthy"]),
                             message=str(body.get("message", ""))[:1024], ip=str(body.get("ip", "")),
                             ports=[int(p) for p in body.get("ports", [])])
    # ValueError for a state the contract does not know.
    out.state = wpb.WorkloadState.Value("WORKLOAD_" + str(body["state"]))  # type: ignore[assignment]
    for name in _STATUS_INTS:
        value = body.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be a whole number")
        setattr(out, name, value)
    for name in ("started_time", "healthy_time", "update_time"):
        seconds = float(body.get(name) or 0)
        if seconds > 0:
            getattr(out, name).CopyFrom(stamp(seconds))
    return out


@dataclass(frozen=True)
class Stored:
    """What etcd holds for one VM, as this replica last read, wrote or watched it."""

    revision: int
    report_time: float
    statuses: list[wpb.WorkloadStatus]

    @classmethod
    def of(cls, revision: int, record: wpb.VmWorkloads) -> Stored:
        return cls(revision, record.report_time.ToNanoseconds() / 1e9, list(record.statuses))


class WorkloadStatuses:
    """The latest statuses of every VM's workloads, as the agents reported them, kept in etcd."""

    def __init__(self, store: Store, bus: Bus, guard: AgentGuard, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.bus = bus
        self.guard = guard
        self.clock = clock
        self.writes = 0
        # etcd key -> what it holds (see the module's note); reports equal to it need no etcd read.
        self.stored: dict[str, Stored] = {}
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # The watch first, so no write after this point is missed by the cache.
        self._watch = asyncio.create_task(self._follow(await self.store.revision() + 1))
        await self.bus.subscribe(WORKLOADS_ALL, self._on_report, queue=QUEUE)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch

    async def _follow(self, revision: int) -> None:
        """Keep `stored` current with every replica's writes (and deletions: a forgotten VM)."""
        prefix = f"{keyspace.ROOT}/ns/"
        while True:
            try:
                async for ev in self.store.watch(prefix, revision):
                    revision = ev.revision + 1
                    if "/workloads/" not in ev.key:
                        continue
                    if ev.value is None:
                        self.stored.pop(ev.key, None)
                    else:
                        self._remember(ev.key, ev.revision, wpb.VmWorkloads.FromString(ev.value))
            except errors.Aborted:
                # Compacted past where the watch was: what is known may be stale; read afresh.
                self.stored.clear()
                revision = await self.store.revision() + 1

    def _remember(self, key: str, revision: int, record: wpb.VmWorkloads) -> None:
        known = self.stored.get(key)
        if known is None or revision > known.revision:
            self.stored[key] = Stored.of(revision, record)

    def _unchanged(self, key: str, statuses: list[wpb.WorkloadStatus], at: float) -> bool:
        """Whether a full report at `at` would change nothing etcd holds, as far as this replica knows."""
        known = self.stored.get(key)
        if known is not None and not statuses and not known.statuses:
            return True  # none running, none stored: nothing to refresh either
        return known is not None and (at < known.report_time or (
            at - known.report_time < REFRESH_S and known.statuses == sorted(statuses, key=lambda s: s.id)))

    async def _on_report(self, msg: Msg) -> None:
        vm = self.guard.admit(msg, "workloads")
        if vm is None:
            return
        try:
            report = wire.loads(msg.data)
            if not isinstance(report, dict) or not isinstance(report.get("statuses"), list):
                raise TypeError("a workloads report is an object with a list of statuses")
            at = float(report["time"])
            statuses = [to_status(s) for s in report["statuses"]]
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            self.guard.malformed(vm.key, "workloads", err)
            return
        try:
            await self.record(vm, statuses, at)
        except (errors.Unavailable, errors.Aborted) as err:
            # The agent reports again within seconds.
            log.warning("workload statuses not recorded", extra={"vm": vm.key, "error": err.message})

    async def record(self, vm: VmId, statuses: list[wpb.WorkloadStatus], at: float, app: str | None = None) -> None:
        """Store what the agent reported at `at` (its clock): every app's statuses, or with `app`
        only that app's (the answer to a set). Written only if newer and changed (or due a refresh)."""
        key = keyspace.workloads(vm)
        if app is None and self._unchanged(key, statuses, at):
            return
        for _ in range(5):
            found = await self.store.get(key, wpb.VmWorkloads)
            if found is not None:
                self._remember(key, found.mod_revision, found.value)
            if app is None and not statuses and (found is None or not found.value.statuses):
                # Nothing runs there and nothing is stored as running: no record to write or
                # refresh (most VMs run no workload; their reports must cost etcd nothing).
                if found is None:
                    self.stored.setdefault(key, Stored(0, 0.0, []))
                return
            new = wpb.VmWorkloads(vm=vm.vm, report_time=stamp(at))
            if app is not None:
                kept = [s for s in found.value.statuses if s.app != app] if found is not None else []
                new.statuses.extend(sorted([*kept, *statuses], key=lambda s: s.id))
            else:
                new.statuses.extend(sorted(statuses, key=lambda s: s.id))
            if found is not None:
                stored_at = found.value.report_time.ToNanoseconds() / 1e9
                if at < stored_at:
                    return
                if list(found.value.statuses) == list(new.statuses) and at - stored_at < REFRESH_S:
                    return
            try:
                if found is None:
                    revision = await self.store.create(key, new)
                else:
                    revision = await self.store.update(key, new, found.mod_revision)
            except (errors.Aborted, errors.AlreadyExists):
                continue
            self._remember(key, revision, new)
            self.writes += 1
            return

    async def list(self, ns: str, mcis: str, vm: str = "", app: str = "") -> list[wpb.VmWorkloads]:
        out = []
        if vm:
            found = await self.store.get(keyspace.workloads(VmId(ns, mcis, vm)), wpb.VmWorkloads)
            records = [found.value] if found is not None else []
        else:
            records = [v.value for v in await self.store.list_all(keyspace.workloads_of(ns, mcis), wpb.VmWorkloads)]
        for record in records:
            if app:
                kept = [s for s in record.statuses if s.app == app]
                del record.statuses[:]
                record.statuses.extend(kept)
            out.append(record)
        return out
