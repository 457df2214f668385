"""The agent: registers, sends a metric batch every interval, answers reads, commands and benchmarks.

Batches are published with the agent's ack subject as reply; a collector acknowledges what it
stored, cumulatively, every ack period (protocol/acks.py), so a batch leaves the backlog only
when it is safe: while NATS or every collector is away, batches wait in the bounded backlog and
go again, oldest first. The batches carry the agent's health (seq, backlog, dropped) to the
replica that stores them; a heartbeat, which every replica hears, goes only every
HEARTBEAT_EVERY_INTERVALS intervals, so the other replicas still know the agent is alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nats import errors as nats_errors
from nats.aio.client import Client, Server
from nats.aio.msg import Msg

from dragonfly.agent import benchmarks
from dragonfly.agent.backlog import Backlog
from dragonfly.agent.commands import Runner
from dragonfly.agent.sources import Source
from dragonfly.agent.supervisor import Supervisor
from dragonfly.protocol import wire
from dragonfly.protocol.acks import Ack
from dragonfly.protocol.config import AgentConfig
from dragonfly.protocol.replies import BUSY, INVALID, NOT_FOUND, LiveMetrics, Refusal, WorkloadLogs, WorkloadsSet
from dragonfly.protocol.wire import dumps
from dragonfly.protocol.workspec import SpecError, parse_set
from services.bus import HANDSHAKE_S, servers

log = logging.getLogger("cb-agent")

VERSION = "0.1.0"
# How long a registration may take to be answered.
ACK_TIMEOUT_S = 2.0
# A batch not acknowledged this long after it was sent goes again (collectors acknowledge right
# after each storage write, tens of milliseconds after a batch arrives).
RESEND_AFTER_S = 5.0
# At most this many of the oldest batches are in flight at once (the rest wait their turn).
SEND_WINDOW = 32
# A heartbeat (heard by every replica) goes every this many intervals; the batches between
# tell the replica that stores them.
HEARTBEAT_EVERY_INTERVALS = 5
# Workload statuses are reported on every change (changes within this long go together) and
# at least this often, so a dragonfly replica that missed one learns the truth soon after.
STATUS_DEBOUNCE_S = 0.1
STATUS_EVERY_S = 15.0
# Lines of each stream a logs request may ask for.
MAX_TAIL_LINES = 10_000


class ConnectPacer:
    """Spreads the NATS (re)connects of the agents of one process.

    Every connect costs the server a JWT check within its authentication deadline (`HANDSHAKE_S`) and the
    client a handshake on its one event loop. Thousands of agents starting, or reconnecting after
    NATS came back, all at once miss that deadline together and retry in a loop; paced, they
    connect at a steady `rate` per second with at most `concurrency` handshakes in flight. Each turn
    is jittered, and an agent that keeps failing backs off (up to `max_backoff_s`) without holding
    up the others. A real VM's agent has a pacer of its own: then only the jitter and the backoff
    matter, so a fleet of hosts does not reconnect in one instant either.
    """

    def __init__(self, rate: float = 200.0, concurrency: int = 50, jitter_s: float = 0.5,
                 max_backoff_s: float = 2.0) -> None:
        self.spacing_s = 1.0 / rate
        self.jitter_s = jitter_s
        self.max_backoff_s = max_backoff_s
        self._next = 0.0
        self._gate = asyncio.Semaphore(concurrency)

    def delay(self, failures: int = 0) -> float:
        """Seconds to wait before the next attempt of an agent that failed `failures` times in a row.
        Every attempt, first or retry, takes its own turn, so the process never tries more than
        `rate` a second; an agent that failed also waits its backoff."""
        now = time.monotonic()
        backoff = min(self.max_backoff_s, 0.25 * 2 ** failures) * random.uniform(0.5, 1.0) if failures else 0.0
        self._next = max(self._next + self.spacing_s, now + backoff)
        return self._next - now + random.uniform(0.0, self.jitter_s)

    @contextlib.asynccontextmanager
    async def turn(self, failures: int = 0) -> AsyncIterator[None]:
        await asyncio.sleep(self.delay(failures))
        async with self._gate:
            yield

    def reconnect_handler(self, servers: list[Server], info: dict[str, Any]) -> tuple[Server | None, float]:
        """For nats-py: the server to reconnect to and how long to wait first.

        The one that failed least: nats-py shuffles the pool once per reconnect and asks again after
        each failure, so always taking the first would try a dead node of a cluster forever."""
        if not servers:
            return None, self.delay()
        pick = min(servers, key=lambda s: s.reconnects)
        return pick, self.delay(pick.reconnects)


class Agent:
    """One VM's agent over its own NATS connection and credential."""

    def __init__(self, config: AgentConfig, source: Source, runner: Runner, bench: benchmarks.Benchmarker,
                 pacer: ConnectPacer | None = None) -> None:
        self.config = config
        # Shared by the agents of one process (CloudTwin guests); a lone agent has its own.
        self.pacer = pacer or ConnectPacer()
        self.source = source
        self.runner = runner
        self.bench = bench
        self.kind = bench.kind
        # One benchmark request at a time: two would measure each other.
        self._benching = asyncio.Lock()
        self.vm = config.vm
        self.interval_s = config.interval_s
        self.backlog = Backlog(config.backlog_max)
        self.boot = uuid.uuid4().hex[:12]
        self.seq = 0
        self.sent = 0
        self.registered = False
        self._beat_at_seq = -HEARTBEAT_EVERY_INTERVALS
        self.nc: Client | None = None
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._workloads_changed = asyncio.Event()
        self.status_seq = 0
        self.supervisor = Supervisor(workloads_root(config), host_ip(config), runner.env,
                                     self._workloads_changed.set)

    # -- life -----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: connect (retrying), sample every interval, send what is due, supervise
        the workloads (the persisted sets start at once, NATS or not)."""
        await self.supervisor.start()
        workers = [asyncio.create_task(self._connect_forever(stop)), asyncio.create_task(self._sample_forever(stop)),
                   asyncio.create_task(self._send_forever(stop)), asyncio.create_task(self._report_forever(stop))]
        try:
            await stop.wait()
        finally:
            await self.supervisor.stop_all()
            for task in [*workers, *self._tasks]:
                task.cancel()
            for task in [*workers, *self._tasks]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self.nc is not None:
                with contextlib.suppress(Exception):
                    await self.nc.close()

    async def _connect_forever(self, stop: asyncio.Event) -> None:
        """The first connection may take long (NATS not up yet); nats-py then reconnects by itself,
        each attempt paced and jittered by the pacer."""
        failures = 0
        while not stop.is_set():
            nc = Client()
            try:
                async with self.pacer.turn(failures):
                    await nc.connect(servers(self.config.nats_url), name=f"cb-agent {self.vm.key}",
                                     inbox_prefix=self.vm.inbox_prefix.encode(), allow_reconnect=True,
                                     max_reconnect_attempts=-1, reconnect_time_wait=0.5,  # type: ignore[arg-type]
                                     connect_timeout=HANDSHAKE_S, reconnect_to_server_handler=self.pacer.reconnect_handler,
                                     error_cb=self._on_error, reconnected_cb=self._on_reconnect,
                                     **self.config.creds.client_options())
            except (nats_errors.Error, OSError, TimeoutError) as err:
                log.info("nats not reachable yet", extra={"vm": self.vm.key, "error": str(err)})
                with contextlib.suppress(Exception):
                    await nc.close()
                failures += 1
                continue
            self.nc = nc
            await nc.subscribe(self.vm.requests, cb=self._on_request)
            await nc.subscribe(self.vm.acks, cb=self._on_ack)
            await nc.subscribe(self.vm.mcis_config, cb=self._on_config)
            self._wake.set()
            return

    async def _on_error(self, err: Exception) -> None:
        log.warning("nats error", extra={"vm": self.vm.key, "error": str(err)})

    async def _on_reconnect(self) -> None:
        # Register again: dragonfly may have changed the interval while we were away.
        self.registered = False
        # What was in flight may be lost with the old connection: send it again now.
        self.backlog.unsend()
        self._beat_at_seq = -HEARTBEAT_EVERY_INTERVALS
        self._wake.set()
        self._workloads_changed.set()

    async def _report_forever(self, stop: asyncio.Event) -> None:
        """Workload statuses to dragonfly on change and every STATUS_EVERY_S (plain publishes:
        one missed is made good by the next)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._workloads_changed.wait(), STATUS_EVERY_S)
            await asyncio.sleep(STATUS_DEBOUNCE_S)
            self._workloads_changed.clear()
            if self.connected and self.nc is not None:
                self.status_seq += 1
                report = {"vm": self.vm.key, "boot": self.boot, "seq": self.status_seq, "time": time.time(),
                          "statuses": self.supervisor.statuses()}
                with contextlib.suppress(nats_errors.Error, OSError):
                    await self.nc.publish(self.vm.workloads, dumps(report))

    async def _sample_forever(self, stop: asyncio.Event) -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            self._sample_once()
            next_at += self.interval_s
            # After a long stall, start again from now instead of catching up in a burst.
            next_at = max(next_at, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())

    def _sample_once(self) -> None:
        self.seq += 1
        batch = {"vm": self.vm.key, "boot": self.boot, "seq": self.seq, "time": time.time(),
                 "interval_s": self.interval_s, "backlog": len(self.backlog), "dropped": self.backlog.dropped,
                 "groups": self.source.sample()}
        self.backlog.push(dumps(batch), self.seq)
        self._wake.set()

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    # -- sending --------------------------------------------------------------

    async def _send_forever(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Woken by a new batch, an acknowledgement or a reconnect; else in time to resend.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RESEND_AFTER_S)
            self._wake.clear()
            if not self.connected:
                continue
            if self.seq - self._beat_at_seq >= HEARTBEAT_EVERY_INTERVALS:
                self._beat_at_seq = self.seq
                await self._heartbeat()
            if not self.registered:
                await self._register()
            await self._drain()

    async def _drain(self) -> None:
        """Publish what is due among the oldest batches; they stay in the backlog until acknowledged."""
        assert self.nc is not None
        for item in self.backlog.due(time.monotonic(), SEND_WINDOW, RESEND_AFTER_S):
            try:
                await self.nc.publish(self.vm.metrics, item, reply=self.vm.acks)
            except (nats_errors.Error, OSError):
                self.backlog.unsend()
                return

    async def _on_ack(self, msg: Msg) -> None:
        try:
            ack = Ack.decode(msg.data)
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        if ack.boot != self.boot:
            return
        taken = self.backlog.ack(ack.ranges)
        self.sent += taken
        if taken and self.backlog:
            self._wake.set()  # room in the window: the next of the backlog may go

    async def _heartbeat(self) -> None:
        assert self.nc is not None
        beat = {"vm": self.vm.key, "boot": self.boot, "seq": self.seq, "time": time.time(),
                "interval_s": self.interval_s, "backlog": len(self.backlog), "dropped": self.backlog.dropped,
                "kind": self.kind, "beat_every_s": HEARTBEAT_EVERY_INTERVALS * self.interval_s}
        with contextlib.suppress(nats_errors.Error, OSError):
            await self.nc.publish(self.vm.heartbeat, dumps(beat))

    async def _register(self) -> None:
        """Say who we are; dragonfly answers with the MCIS's interval."""
        assert self.nc is not None
        twin = self.config.twin
        info = {"vm": self.vm.key, "boot": self.boot, "kind": self.kind, "version": VERSION,
                "hostname": socket.gethostname() if twin is None else self.vm.vm,
                "ip": twin.ip if twin else "", "interval_s": self.interval_s,
                "vcpu": twin.vcpu if twin else 0, "memory_bytes": twin.memory_bytes if twin else 0}
        try:
            reply = await self.nc.request(self.vm.register, dumps(info), timeout=ACK_TIMEOUT_S)
        except (nats_errors.Error, OSError, TimeoutError):
            return
        self.registered = True
        self._apply(reply.data)

    # -- answering --------------------------------------------------------------

    async def _on_config(self, msg: Msg) -> None:
        self._apply(msg.data)

    def _apply(self, data: bytes) -> None:
        try:
            interval = float(wire.loads(data or b"{}").get("interval_s", 0))
        except (ValueError, AttributeError):
            return
        if 0.1 <= interval <= 3600 and interval != self.interval_s:
            log.info("interval changed", extra={"vm": self.vm.key, "interval_s": interval})
            self.interval_s = interval

    async def _on_request(self, msg: Msg) -> None:
        verb = msg.subject.rsplit(".", 1)[-1]
        if verb == "metrics":
            await self._respond(msg, LiveMetrics(self.vm.key, time.time(), self.source.sample()).to_wire())
        elif verb in ("cmd", "bench", "workloads"):
            # In tasks of their own: the subscription must not wait for a command, benchmark or set to end.
            task = asyncio.create_task(self._command(msg) if verb == "cmd" else
                                       self._benchmark(msg) if verb == "bench" else self._set_workloads(msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif verb == "status":
            await self._respond(msg, {"vm": self.vm.key, "boot": self.boot, "seq": self.seq, "sent": self.sent,
                                      "backlog": len(self.backlog), "dropped": self.backlog.dropped,
                                      "interval_s": self.interval_s})
        elif verb == "logs":
            await self._logs(msg)
        else:
            await self._respond(msg, Refusal(f"unknown request {verb!r}").to_wire())

    async def _set_workloads(self, msg: Msg) -> None:
        """Replace one app's set; answer with its statuses, or refuse the whole body."""
        try:
            app, specs = parse_set(wire.loads(msg.data))
            statuses = await self.supervisor.set(app, specs)
        except (SpecError, ValueError) as err:
            await self._respond(msg, Refusal(f"bad workloads request: {err}", INVALID).to_wire())
            return
        await self._respond(msg, WorkloadsSet(time.time(), statuses).to_wire())

    async def _logs(self, msg: Msg) -> None:
        try:
            req = wire.loads(msg.data)
            workload_id, tail = req["id"], req.get("tail_lines") or 100
            if not isinstance(workload_id, str) or isinstance(tail, bool) or not isinstance(tail, int) or tail < 0:
                raise TypeError("id must be a string and tail_lines a whole number >= 0")
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            await self._respond(msg, Refusal(f"bad logs request: {err}", INVALID).to_wire())
            return
        found = self.supervisor.logs(workload_id, min(tail, MAX_TAIL_LINES))
        if found is None:
            await self._respond(msg, Refusal(f"no workload {workload_id[:80]!r} on this VM", NOT_FOUND).to_wire())
            return
        await self._respond(msg, WorkloadLogs(found[0], found[1]).to_wire())

    async def _command(self, msg: Msg) -> None:
        try:
            req = wire.loads(msg.data)
            command = req["command"]
            if not isinstance(command, str) or not command.strip():
                raise TypeError("command must be a non-empty string")
            timeout = min(float(req.get("timeout_s") or 60.0), self.config.command_timeout_max_s)
            limit = min(int(req.get("output_limit_bytes") or self.config.output_limit_bytes),
                        self.config.output_limit_bytes)
        except (ValueError, KeyError, TypeError) as err:
            await self._respond(msg, Refusal(f"bad command request: {err}").to_wire())
            return
        result = await self.runner.run(command, max(0.01, timeout), max(0, limit))
        await self._respond(msg, result.to_wire())

    async def _benchmark(self, msg: Msg) -> None:
        try:
            request = benchmarks.BenchRequest.from_wire(wire.loads(msg.data), self.config.bench_budget_max_s)
        except (ValueError, TypeError, AttributeError) as err:
            await self._respond(msg, Refusal(f"bad benchmark request: {err}", INVALID).to_wire())
            return
        if self._benching.locked():
            await self._respond(msg, Refusal("a benchmark is already running on this VM", BUSY).to_wire())
            return
        async with self._benching:
            report = await benchmarks.run(request, self.bench)
        await self._respond(msg, report.to_wire())

    async def _respond(self, msg: Msg, body: dict[str, Any]) -> None:
        if not msg.reply:
            return
        with contextlib.suppress(nats_errors.Error, OSError):
            await msg.respond(dumps(body))




def workloads_root(config: AgentConfig) -> Path:
    """Where the supervisor keeps its sets and its workloads' directories: the configured work
    directory, else a twin's sandbox, else the agent's working directory."""
    base = config.work_dir or (config.twin.sandbox if config.twin else os.getcwd())
    return Path(base) / "cb-workloads"


def host_ip(config: AgentConfig) -> str:
    """The VM's IP that workloads serve on: a twin's own address, the configured `ip`, else the
    address this host reaches NATS from (no packet is sent: a UDP socket only picks its route)."""
    if config.twin is not None:
        return config.twin.ip
    if config.ip:
        return config.ip
    host = urlsplit(servers(config.nats_url)[0]).hostname or "127.0.0.1"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((host, 4222))
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
