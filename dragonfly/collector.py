"""Collectors: every replica joins one NATS queue group on `cb.metrics.>`, so each batch
reaches one replica; batches are written to storage in groups and acknowledged only once
written, so an agent keeps what was not stored and sends it again. Batches are not handled one
by one as they arrive: every `flush_s` the replica takes all that NATS delivered meanwhile,
admits it, writes it in one call and acknowledges it. Acknowledgements are
cumulative (protocol/acks.py): right after each write, one message per agent names every seq
that write stored, instead of one reply per batch (a draining backlog's many batches share one)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from dragonfly.guard import AgentGuard
from dragonfly.protocol import wire
from dragonfly.protocol.acks import Ack, ranges_of
from dragonfly.protocol.metrics import GROUPS
from dragonfly.protocol.subjects import METRICS_ALL, VmId
from dragonfly.storage import Backend, Sample
from services.bus import Bus

log = logging.getLogger("dragonfly.collector")

# How many seqs below the newest one each VM's duplicate window remembers. A batch sent again
# comes within RESEND_AFTER_S of the first send, far fewer intervals back than this; one older
# than the window is stored (at least once rather than lost).
SEEN_WINDOW = 256
# What NATS may queue for this replica between two writes before it drops (a slow consumer; the
# agents keep what is not acknowledged): at 10,000 batches a second a write comes every 50 ms.
PENDING_MSGS = 200_000
PENDING_BYTES = 256 * 1024 * 1024


@dataclass
class Seen:
    """The seqs of one boot of one VM this replica stored (or is storing): the newest, and a
    bitmask of the SEEN_WINDOW below it (bit k = newest - k), as an anti-replay window does."""

    boot: str
    newest: int
    mask: int = 1

    def add(self, seq: int) -> bool:
        """Record `seq`; False if it was already there (a batch sent again)."""
        if seq > self.newest:
            self.mask = ((self.mask << (seq - self.newest)) | 1) & ((1 << SEEN_WINDOW) - 1)
            self.newest = seq
            return True
        back = self.newest - seq
        if back >= SEEN_WINDOW:
            return True
        bit = 1 << back
        if self.mask & bit:
            return False
        self.mask |= bit
        return True

    def discard(self, seq: int) -> None:
        back = self.newest - seq
        if 0 <= back < SEEN_WINDOW:
            self.mask &= ~(1 << back)


@dataclass(slots=True)
class Pending:
    """A batch received and not yet acknowledged: its samples go to storage with the next write
    (none for a batch sent again, which is acknowledged once the write it waits for is done)."""

    vm: str
    reply: str
    boot: str
    seq: int
    samples: list[Sample]
    fresh: bool


@dataclass
class Counts:
    batches: int = 0
    samples: int = 0
    duplicates: int = 0
    malformed: int = 0


def samples_of(vm: str, data: bytes) -> tuple[dict[str, Any], str, int, list[Sample]]:
    """(batch, boot, seq, samples) of one batch of the VM keyed `vm`; the subject, which the server
    vouches for, names the VM, never the payload."""
    batch = wire.loads(data)
    t = float(batch["time"])
    groups = batch["groups"]
    samples = [Sample(vm, g, t, _numbers(groups[g])) for g in GROUPS if g in groups]
    return batch, str(batch.get("boot", "")), int(batch["seq"]), samples


_NUMBER_TYPES = frozenset((float, int))


def _numbers(values: dict[str, float]) -> dict[str, float]:
    """The group's values as they came, once each is known to be a number (not a bool, not text)."""
    # One pass in C over the value types; the loop below only runs to name the culprit.
    if not _NUMBER_TYPES.issuperset(map(type, values.values())):
        for v in values.values():
            if type(v) is not float and type(v) is not int:
                raise TypeError(f"{v!r} is not a number")
    return values


class Collector:
    """One replica's share of the metric stream."""

    def __init__(self, bus: Bus, backend: Backend, queue: str, batch_samples: int, flush_s: float,
                 observe: Callable[[Sequence[Sample]], None] | None = None, guard: AgentGuard | None = None,
                 heard: Callable[[VmId, dict[str, Any]], None] | None = None) -> None:
        self.bus = bus
        # Rate, reply subjects and warnings per agent (shared with the registry of this replica).
        self.guard = guard or AgentGuard()
        # Sees every new batch as it arrives (the alert rules); must be cheap and never block.
        self.observe = observe
        self.backend = backend
        self.queue = queue
        self.batch_samples = batch_samples
        self.flush_s = flush_s
        # Each batch's header (seq, backlog, dropped, interval) tells the registry the agent is alive.
        self.heard = heard
        self.counts = Counts()
        # Seqs stored per VM: a batch sent again after a lost acknowledgement is not stored twice.
        self._seen: dict[str, Seen] = {}
        self._pending: list[Pending] = []
        self._pending_samples = 0
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        # No callback: nats-py queues what arrives, and the collecting loop takes all of it at each
        # write (see `_arrived`), so a batch costs no task wake-up or callback of its own.
        self._sub = await self.bus.nc.subscribe(METRICS_ALL, queue=self.queue,
                                                pending_msgs_limit=PENDING_MSGS, pending_bytes_limit=PENDING_BYTES)
        self._tasks = [asyncio.create_task(self._collect_forever())]

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._flush()

    def _arrived(self) -> list[Msg]:
        """Every batch NATS delivered since the last call, taken at once."""
        sub = self._sub
        if sub is None:
            return []
        # nats-py (2.x) has no bulk read: `next_msg` makes a task per message and a callback
        # subscription wakes a task per message; its pending queue is an asyncio.Queue, which
        # this drains without waiting, keeping the subscription's byte count as next_msg does.
        queue = sub._pending_queue
        out = [queue.get_nowait() for _ in range(queue.qsize())]
        sub._pending_size -= sum(len(m.data) for m in out)
        for _ in out:
            queue.task_done()
        return out

    async def _collect_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                await self.collect()
            except Exception:  # a failing backend must not stop collection; nothing is acknowledged
                log.exception("storage write failed")
                await asyncio.sleep(1.0)

    async def collect(self) -> None:
        """Admit what arrived, write it (every `batch_samples` samples, and what is left) and
        acknowledge each write; malformed batches are answered after."""
        refusals: list[tuple[str, bytes]] = []
        for msg in self._arrived():
            refusal = self.admit(msg)
            if refusal is not None:
                refusals.append(refusal)
            if self._pending_samples >= self.batch_samples:
                await self._flush()
        await self._flush()
        for reply, body in refusals:
            with contextlib.suppress(Exception):
                await self.bus.publish(reply, body)

    def admit(self, msg: Msg) -> tuple[str, bytes] | None:
        """Take one batch in: checked, decoded, seen by health and the alert rules, and queued for
        the next write. A malformed one is answered (the reply and answer returned)."""
        who: VmId | None = self.guard.admit(msg, "metrics")
        if who is None:
            return None  # not acknowledged: a real agent keeps the batch and sends it again
        vm = who.key
        try:
            batch, boot, seq, samples = samples_of(vm, msg.data)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            self.counts.malformed += 1
            self.guard.malformed(vm, "metrics", err)
            return (msg.reply, wire.dumps({"error": f"malformed batch: {str(err)[:200]}"})) if msg.reply else None
        seen = self._seen.get(vm)
        if seen is None or seen.boot != boot:
            seen = self._seen[vm] = Seen(boot, seq)
            fresh = True
        else:
            fresh = seen.add(seq)
        if self.heard is not None:
            self.heard(who, batch)
        if not fresh:
            # Acknowledged with the next write: the first copy may still be waiting for it.
            self.counts.duplicates += 1
            self._pending.append(Pending(vm, msg.reply, boot, seq, [], False))
            return None
        if self.observe is not None:
            try:
                self.observe(samples)
            except Exception:  # a faulty rule must not stop collection
                log.exception("alert evaluation failed")
        self._pending.append(Pending(vm, msg.reply, boot, seq, samples, True))
        self._pending_samples += len(samples)
        return None

    async def _flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending, self._pending_samples = self._pending, [], 0
        try:
            await self.backend.write([s for p in pending for s in p.samples])
        except Exception:
            # Unacknowledged: the agents keep these batches and send them again; forget their seqs.
            for p in pending:
                seen = self._seen.get(p.vm)
                if p.fresh and seen is not None and seen.boot == p.boot:
                    seen.discard(p.seq)
            raise
        # Acknowledged at once: waiting for a timer would add its period to every batch's lag
        # (and keep batches in the agents' backlogs longer) for no fewer messages, since at an
        # interval of a second or more an agent has one batch per write anyway.
        stored: dict[str, tuple[str, list[int]]] = {}
        for p in pending:
            if p.fresh:
                self.counts.batches += 1
                self.counts.samples += len(p.samples)
            if not p.reply:
                continue
            acked = stored.get(p.reply)
            if acked is None or acked[0] != p.boot:
                stored[p.reply] = (p.boot, [p.seq])
            else:
                acked[1].append(p.seq)
        for reply, (boot, seqs) in stored.items():
            with contextlib.suppress(Exception):
                await self.bus.publish(reply, Ack(boot, ranges_of(seqs)).encode())

    def forget(self, vm_key: str) -> None:
        """Drop the duplicate window of a VM that is gone."""
        self._seen.pop(vm_key, None)
