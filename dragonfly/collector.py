"""Collectors: every replica joins one NATS queue group on `cb.metrics.>`, so each batch
reaches one replica; batches are written to storage in groups and each is acknowledged
only once written, so an agent keeps what was not stored and sends it again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from dragonfly.guard import AgentGuard
from dragonfly.protocol import wire
from dragonfly.protocol.metrics import GROUPS
from dragonfly.protocol.subjects import METRICS_ALL, VmId, vm_of
from dragonfly.storage import Backend, Sample
from services.bus import Bus

log = logging.getLogger("dragonfly.collector")

# The acknowledgements, encoded once: one goes back for every batch.
ACK_OK = wire.dumps({"ok": True})
ACK_DUPLICATE = wire.dumps({"ok": True, "duplicate": True})


@dataclass
class Counts:
    batches: int = 0
    samples: int = 0
    duplicates: int = 0
    malformed: int = 0


def samples_of(vm: str, data: bytes) -> tuple[str, int, list[Sample]]:
    """(boot, seq, samples) of one batch of the VM keyed `vm`; the subject, which the server
    vouches for, names the VM, never the payload."""
    batch = wire.loads(data)
    t = float(batch["time"])
    groups = batch["groups"]
    samples = [Sample(vm, g, t, _numbers(groups[g])) for g in GROUPS if g in groups]
    return str(batch.get("boot", "")), int(batch["seq"]), samples


def _numbers(values: dict[str, float]) -> dict[str, float]:
    """The group's values as they came, once each is known to be a number (not a bool, not text)."""
    for v in values.values():
        if type(v) is not float and type(v) is not int:
            raise TypeError(f"{v!r} is not a number")
    return values


class Collector:
    """One replica's share of the metric stream."""

    def __init__(self, bus: Bus, backend: Backend, queue: str, batch_samples: int, flush_s: float,
                 observe: Callable[[Sequence[Sample]], None] | None = None, guard: AgentGuard | None = None) -> None:
        self.bus = bus
        # Rate, reply subjects and warnings per agent (shared with the registry of this replica).
        self.guard = guard or AgentGuard()
        # Sees every new batch as it arrives (the alert rules); must be cheap and never block.
        self.observe = observe
        self.backend = backend
        self.queue = queue
        self.batch_samples = batch_samples
        self.flush_s = flush_s
        self.counts = Counts()
        # Newest (boot, seq) stored per VM: a batch sent again after a lost acknowledgement is not stored twice.
        self._last: dict[str, tuple[str, int]] = {}
        self._pending: list[tuple[Msg, list[Sample]]] = []
        self._pending_samples = 0
        self._due = asyncio.Event()
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sub = await self.bus.subscribe(METRICS_ALL, self._on_batch, queue=self.queue)
        self._task = asyncio.create_task(self._flush_forever())

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._flush()

    async def _on_batch(self, msg: Msg) -> None:
        who: VmId | None = self.guard.admit(msg, "metrics")
        if who is None:
            return  # not acknowledged: a real agent keeps the batch and sends it again
        vm = who.key
        try:
            boot, seq, samples = samples_of(vm, msg.data)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            self.counts.malformed += 1
            self.guard.malformed(vm, "metrics", err)
            await self._ack(msg, wire.dumps({"error": f"malformed batch: {str(err)[:200]}"}))
            return
        last = self._last.get(vm)
        if last is not None and last[0] == boot and seq <= last[1]:
            self.counts.duplicates += 1
            await self._ack(msg, ACK_DUPLICATE)
            return
        self._last[vm] = (boot, seq)
        if self.observe is not None:
            try:
                self.observe(samples)
            except Exception:  # a faulty rule must not stop collection
                log.exception("alert evaluation failed")
        self._pending.append((msg, samples))
        self._pending_samples += len(samples)
        if self._pending_samples >= self.batch_samples:
            self._due.set()

    async def _flush_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), self.flush_s)
            self._due.clear()
            try:
                await self._flush()
            except Exception:  # a failing backend must not stop collection; nothing is acknowledged
                log.exception("storage write failed")
                await asyncio.sleep(1.0)

    async def _flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending, self._pending_samples = self._pending, [], 0
        try:
            await self.backend.write([s for _, batch in pending for s in batch])
        except Exception:
            # Unacknowledged: the agents keep these batches and send them again; forget their seqs.
            for msg, _ in pending:
                self._last.pop(vm_of(msg.subject).key, None)
            raise
        self.counts.batches += len(pending)
        self.counts.samples += sum(len(b) for _, b in pending)
        for msg, _ in pending:
            await self._ack(msg, ACK_OK)

    async def _ack(self, msg: Msg, body: bytes) -> None:
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(body)
