"""Agents: registrations (kept in etcd), health (from the batches this replica stores and from
heartbeats, which every replica hears), and each MCIS's monitoring settings (the interval),
announced to its agents."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.msg import Msg

from cbapi.dragonfly.v1 import dragonfly_pb2 as pb
from dragonfly import keyspace
from dragonfly.guard import AgentGuard
from dragonfly.protocol import wire
from dragonfly.protocol.subjects import HEARTBEAT_ALL, REGISTER_ALL, VmId, mcis_config
from services import errors
from services.bus import Bus
from services.store import Store
from services.store.etcd import TXN_OPS_MAX
from services.tasks import cancel_tasks

log = logging.getLogger("dragonfly.agents")

# Silent for longer than this many intervals = unhealthy (so it shows within 3 intervals), in
# the replica that stores the agent's batches. A replica that hears only its heartbeats (sent
# every few intervals, `beat_every_s`) allows this many heartbeat periods instead.
UNHEALTHY_AFTER_INTERVALS = 2.5
# An agent that does not say how often it beats (an older one) beats every interval.
DEFAULT_BEATS_EVERY_INTERVALS = 1.0
# Registrations written in one etcd transaction, with their MCISes' settings read in the same one
# (at most one read per registration: together within etcd's operations per transaction).
REGISTRATIONS_PER_TXN = TXN_OPS_MAX // 2


@dataclass
class Beat:
    """The latest heartbeat of one agent, as this replica heard it."""

    at: float  # time.monotonic() when last heard (a heartbeat or a batch)
    wall: float
    interval_s: float
    seq: int
    backlog: int
    dropped: int
    boot: str
    # How long a silence is still healthy: 2.5 intervals while this replica hears every batch of
    # the agent, 2.5 heartbeat periods while it hears only heartbeats or a part of the batches.
    allow_s: float = 0.0
    beat_every_s: float = 0.0
    batch_at: float = 0.0  # time.monotonic() of the last batch heard
    batch_seq: int = 0  # and its seq


@dataclass
class Registration:
    """An agent's latest registration waiting to be recorded, and every request it answers (an
    agent that timed out asked again; one record answers them all)."""

    vm: VmId
    record: pb.Agent
    replies: list[str] = field(default_factory=list)


def stamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


class Agents:
    """What dragonfly knows about agents."""

    def __init__(self, store: Store, bus: Bus, default_interval_s: float, guard: AgentGuard | None = None) -> None:
        self.store = store
        self.bus = bus
        # Rate, reply subjects and warnings per agent: a registration is answered only in its agent's inbox.
        self.guard = guard or AgentGuard()
        self.default_interval_s = default_interval_s
        self.beats: dict[str, Beat] = {}
        # Called with a VM's key when it is forgotten (the collector's duplicate window).
        self.on_forget: list[Callable[[str], None]] = []
        # Registrations received and not yet recorded, by VM key (see `_record_forever`).
        self._waiting: dict[str, Registration] = {}
        self._arrived = asyncio.Event()
        self._recorder: asyncio.Task[None] | None = None
        self.registrations_recorded = 0

    async def start(self) -> None:
        await self.bus.subscribe(HEARTBEAT_ALL, self._on_heartbeat)
        self.start_recorder()
        # One replica records each registration.
        await self.bus.subscribe(REGISTER_ALL, self._on_register, queue="dragonfly-registry")

    def start_recorder(self) -> None:
        self._recorder = asyncio.create_task(self._record_forever())

    async def stop(self) -> None:
        if self._recorder is not None:
            await cancel_tasks([self._recorder])

    async def _on_heartbeat(self, msg: Msg) -> None:
        vm = self.guard.admit(msg, "heartbeat")
        if vm is None:
            return
        try:
            beat = wire.loads(msg.data)
            interval = float(beat["interval_s"])
            if not 0.1 <= interval <= 3600:
                raise ValueError(f"interval_s {interval!r} is not between 0.1 and 3600")
            beat_every = float(beat.get("beat_every_s") or DEFAULT_BEATS_EVERY_INTERVALS * interval)
            now = time.monotonic()
            old = self.beats.get(vm.key)
            boot = str(beat.get("boot", ""))
            # A new boot starts its seqs afresh: its first batch follows seq 0.
            batch_at, batch_seq = (old.batch_at, old.batch_seq) if old is not None and old.boot == boot else (0.0, 0)
            # While this replica stores the agent's batches (one heard within two intervals) they
            # keep the strict allowance; otherwise heartbeats are all it hears of the agent.
            streaming = old is not None and now - batch_at <= 2 * interval
            allow = old.allow_s if streaming and old is not None else UNHEALTHY_AFTER_INTERVALS * beat_every
            self.beats[vm.key] = Beat(now, float(beat["time"]), interval,
                                      int(beat["seq"]), int(beat.get("backlog", 0)), int(beat.get("dropped", 0)),
                                      boot, allow, beat_every, batch_at, batch_seq)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            self.guard.malformed(vm.key, "heartbeat", err)

    def heard_batch(self, vm: VmId, batch: dict[str, Any]) -> None:
        """A batch this replica received (already decoded by the collector): the agent is alive, and
        its header carries what a heartbeat would (seq, backlog, dropped, interval)."""
        try:
            interval = float(batch.get("interval_s") or 0)
            if not 0.1 <= interval <= 3600:
                return
            seq, boot = int(batch["seq"]), str(batch.get("boot", ""))
            now = time.monotonic()
            old = self.beats.get(vm.key)
            if old is None or old.boot != boot:
                beat_every = DEFAULT_BEATS_EVERY_INTERVALS * interval if old is None else old.beat_every_s
                self.beats[vm.key] = Beat(now, float(batch["time"]), interval, seq, int(batch.get("backlog", 0)),
                                          int(batch.get("dropped", 0)), boot, UNHEALTHY_AFTER_INTERVALS * interval,
                                          beat_every, now, seq)
                return
            # Consecutive seqs: this replica hears the whole stream, so a silence of 2.5 intervals
            # means trouble; a gap (another replica takes a share, or a batch sent again) allows
            # the heartbeat period.
            whole = seq == old.batch_seq + 1
            old.at, old.batch_at, old.batch_seq = now, now, seq
            old.allow_s = UNHEALTHY_AFTER_INTERVALS * (interval if whole else max(interval, old.beat_every_s))
            if seq > old.seq:
                old.wall, old.interval_s, old.seq = float(batch["time"]), interval, seq
                old.backlog, old.dropped = int(batch.get("backlog", 0)), int(batch.get("dropped", 0))
        except (ValueError, KeyError, TypeError):
            return  # the collector already judged the batch; its header is only a hint here

    async def _on_register(self, msg: Msg) -> None:
        vm = self.guard.admit(msg, "register")
        if vm is None:
            return
        try:
            info = wire.loads(msg.data)
            if not isinstance(info, dict):
                raise TypeError("a registration is a JSON object")
            record = pb.Agent(ns=vm.ns, mcis=vm.mcis, vm=vm.vm, kind=str(info.get("kind", "")),
                              version=str(info.get("version", "")), hostname=str(info.get("hostname", "")),
                              ip=str(info.get("ip", "")), boot=str(info.get("boot", "")),
                              registered_time=stamp(time.time()), interval_s=float(info.get("interval_s", 0)))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            self.guard.malformed(vm.key, "register", err)
            return
        # Recorded by `_record_forever`, not here: the subscription's callbacks run one at a time,
        # and two etcd round trips each capped a booting fleet at a few hundred registrations a
        # second, past which the agents' requests timed out and came again, to a queue that only grew.
        waiting = self._waiting.get(vm.key)
        if waiting is None:
            waiting = self._waiting[vm.key] = Registration(vm, record)
        else:
            waiting.record = record  # the newest says what the agent is now
        if msg.reply:
            waiting.replies.append(msg.reply)
        self._arrived.set()

    async def _record_forever(self) -> None:
        """Record the registrations that arrived meanwhile, many per etcd transaction, and answer each."""
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            waiting, self._waiting = list(self._waiting.values()), {}
            for i in range(0, len(waiting), REGISTRATIONS_PER_TXN):
                chunk = waiting[i:i + REGISTRATIONS_PER_TXN]
                try:
                    await self._record(chunk)
                except errors.DomainError as err:
                    # No answer: the agents register again at their next interval.
                    log.warning("registrations not recorded", extra={"agents": len(chunk), "error": err.message})
                except Exception:  # the recorder must outlive any one failure; those agents ask again
                    log.exception("registrations not recorded", extra={"agents": len(chunk)})

    async def _record(self, registrations: list[Registration]) -> None:
        """One transaction writes the agents' records and reads their MCISes' settings; then each
        request is answered with its MCIS's interval."""
        configs = sorted({keyspace.mcis_config(r.vm.ns, r.vm.mcis) for r in registrations})
        _, found = await self.store.put_and_get([(keyspace.agent(r.vm), r.record) for r in registrations], configs,
                                                pb.MonitoringConfig)
        self.registrations_recorded += len(registrations)
        for r in registrations:
            config = found.get(keyspace.mcis_config(r.vm.ns, r.vm.mcis))
            interval = config.value.interval_s if config is not None and config.value.interval_s \
                else self.default_interval_s
            body = json.dumps({"interval_s": interval}).encode()
            for reply in r.replies:
                with contextlib.suppress(errors.Unavailable):
                    await self.bus.publish(reply, body)

    # -- health ---------------------------------------------------------------

    def with_health(self, record: pb.Agent) -> pb.Agent:
        out = pb.Agent()
        out.CopyFrom(record)
        beat = self.beats.get(f"{record.ns}.{record.mcis}.{record.vm}")
        if beat is None:
            out.health = pb.UNHEALTHY
            return out
        silent = time.monotonic() - beat.at
        allow = beat.allow_s or UNHEALTHY_AFTER_INTERVALS * beat.interval_s
        out.health = pb.HEALTHY if silent <= allow else pb.UNHEALTHY
        out.last_heartbeat_time.CopyFrom(stamp(time.time() - silent))
        out.interval_s, out.seq, out.backlog, out.dropped = beat.interval_s, beat.seq, beat.backlog, beat.dropped
        if beat.boot:
            out.boot = beat.boot
        return out

    async def why_unreachable(self, vm: VmId) -> errors.DomainError:
        """Why nobody answers on the VM's subjects, as the client should hear it: NOT_FOUND for a VM
        dragonfly knows nothing of (no agent registered, no credential issued), FAILED_PRECONDITION
        naming the agent's state for one that exists but is not connected."""
        found = await self.store.get(keyspace.agent(vm), pb.Agent)
        if found is not None:
            agent = self.with_health(found.value)
            heard = (f"last heartbeat {time.time() - agent.last_heartbeat_time.ToNanoseconds() / 1e9:.0f}s ago"
                     if agent.HasField("last_heartbeat_time") else "no heartbeat heard by this replica")
            return errors.FailedPrecondition(f"the agent of VM {vm.key} is not connected "
                                             f"(state {pb.Health.Name(agent.health)}, {heard}); retry when it is back")
        issued = await self.store.list_all(keyspace.credentials(vm), pb.IssuedCredential)
        if any(not c.value.HasField("revoked_time") for c in issued):
            return errors.FailedPrecondition(f"the agent of VM {vm.key} has not registered yet (state STARTING: "
                                             "its credential is issued, the VM may still be booting); retry shortly")
        return errors.NotFound(f"VM {vm.key} has no agent: none registered and none was issued a credential")

    # -- what is monitored, and forgetting what is gone -------------------------

    async def monitors(self, ns: str, mcis: str = "", vm: str = "") -> bool:
        """Whether dragonfly monitors anything in this scope (a namespace, an MCIS, a VM): an agent
        registered there, or a credential issued there and not revoked."""
        cred_prefix = keyspace.CREDENTIALS + "/".join(p for p in (ns, mcis, vm) if p) + "/"
        agent_prefix = keyspace.agent(VmId(ns, mcis, vm)) if vm else keyspace.agents(ns, mcis)
        if vm:
            if await self.store.get(agent_prefix, pb.Agent) is not None:
                return True
        elif (await self.store.page(agent_prefix, pb.Agent, 1)).items:
            return True
        after = ""
        while True:
            page = await self.store.page(cred_prefix, pb.IssuedCredential, 500, after)
            if any(not c.value.HasField("revoked_time") for c in page.items):
                return True
            if not page.next_key:
                return False
            after = page.next_key

    async def forget(self, vm: VmId) -> tuple[bool, bool, bool]:
        """Drop the records of a VM whose credentials are all revoked (a VM of the same name that
        holds a live one keeps its record), and its MCIS's settings once nothing of the MCIS is
        monitored. Which of (VM, MCIS, namespace) are now gone from dragonfly's view."""
        vm_gone = not await self.monitors_credential(vm)
        if vm_gone:
            await self.store.delete(keyspace.agent(vm))
            # Its workloads' statuses go with it (a VM of that name later starts with none).
            await self.store.delete(keyspace.workloads(vm))
            self.beats.pop(vm.key, None)
            self.guard.forget(vm.key)
            for forget in self.on_forget:
                forget(vm.key)
        mcis_gone = vm_gone and not await self.monitors(vm.ns, vm.mcis)
        if mcis_gone:
            await self.store.delete(keyspace.mcis_config(vm.ns, vm.mcis))
        return vm_gone, mcis_gone, mcis_gone and not await self.monitors(vm.ns)

    async def monitors_credential(self, vm: VmId) -> bool:
        found = await self.store.list_all(keyspace.credentials(vm), pb.IssuedCredential)
        return any(not c.value.HasField("revoked_time") for c in found)

    async def get(self, vm: VmId) -> pb.Agent:
        found = await self.store.must_get(keyspace.agent(vm), pb.Agent, f"agent of VM {vm.key}")
        return self.with_health(found.value)

    async def page(self, ns: str, mcis: str, size: int, after: str) -> tuple[list[pb.Agent], str]:
        page = await self.store.page(keyspace.agents(ns, mcis), pb.Agent, size, after)
        return [self.with_health(v.value) for v in page.items], page.next_key

    # -- settings -------------------------------------------------------------

    async def interval(self, ns: str, mcis: str) -> float:
        found = await self.store.get(keyspace.mcis_config(ns, mcis), pb.MonitoringConfig)
        return found.value.interval_s if found is not None and found.value.interval_s else self.default_interval_s

    async def set_interval(self, ns: str, mcis: str, interval_s: float) -> pb.MonitoringConfig:
        config = pb.MonitoringConfig(interval_s=interval_s)
        await self.store.put(keyspace.mcis_config(ns, mcis), config)
        # Agents hear it at once; an agent that was away reads it when it registers again.
        await self.bus.publish(mcis_config(ns, mcis), json.dumps({"interval_s": interval_s}).encode())
        return config
