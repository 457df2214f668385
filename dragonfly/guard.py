"""What dragonfly lets an agent's message do: how often it may send, where an answer may go,
and how loudly a malformed message is reported.

An agent may publish only on its own subjects (the NATS server enforces it), but it chooses
the *reply* subject of each message, and dragonfly answers with its own credential. So an
answer goes only to a reply subject in the inbox of the VM the subject names
(`_INBOX.{ns}.{mcis}.{vm}.…`, the only inbox that agent may subscribe to); a message
with any other reply is dropped and counted, never acted on. Each agent has a token bucket
(excess dropped and counted: a batch not acknowledged stays in the agent's backlog, so
nothing legitimate is lost, only delayed), and a malformed message is logged at most once
per agent per `warn_every_s`, with the number seen since, so a flood cannot fill the log.

Counters are plain integers read by Prometheus at scrape time (`register`): the hot path
pays one dict lookup and a little arithmetic per message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, CollectorRegistry

from dragonfly.protocol.subjects import VmId, vm_of

log = logging.getLogger("dragonfly.guard")

# An error text in a log line is cut to this many characters (a payload may be echoed in it).
MAX_ERROR_CHARS = 200


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class _Warned:
    """When an agent's last warning of a kind was logged, and how many went unlogged since."""

    at: float
    unlogged: int = 0


@dataclass
class GuardCounts:
    """What the guard dropped, by reason (the Prometheus counters)."""

    rate_limited: dict[str, int] = field(default_factory=dict)
    foreign_reply: dict[str, int] = field(default_factory=dict)
    malformed: dict[str, int] = field(default_factory=dict)


class AgentGuard:
    """Per-agent admission of messages, checking of reply subjects, and rate-limited warnings."""

    def __init__(self, rate_per_s: float = 50.0, burst: float = 200.0, warn_every_s: float = 60.0) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.warn_every_s = warn_every_s
        self.counts = GuardCounts()
        self._buckets: dict[str, _Bucket] = {}
        self._warned: dict[tuple[str, str], _Warned] = {}
        # Subject -> VM: parsing and checking the names costs more than the rest of the admission,
        # and every agent sends on the same few subjects (bounded: cleared when it grows past this).
        self._vms: dict[str, VmId] = {}
        self.max_cached_subjects = 100_000

    def admit(self, msg: Msg, kind: str) -> VmId | None:
        """The VM `msg` comes from if it may be handled: its subject names a VM, its reply (if any)
        is that VM's inbox, and the VM is within its rate. Otherwise None (counted, and warned
        about at most once per agent per `warn_every_s`)."""
        vm = self._vms.get(msg.subject)
        if vm is None:
            try:
                vm = vm_of(msg.subject)
            except ValueError as err:
                self.malformed(msg.subject, kind, err)
                return None
            if len(self._vms) >= self.max_cached_subjects:
                self._vms.clear()
            self._vms[msg.subject] = vm
        if not self._take(vm.key):
            self._count(self.counts.rate_limited, kind)
            self._warn(vm.key, "rate", f"agent exceeds {self.rate_per_s:g} messages/s (burst {self.burst:g}); "
                                       "excess dropped")
            return None
        if msg.reply and not reply_belongs(vm, msg.reply):
            self._count(self.counts.foreign_reply, kind)
            self._warn(vm.key, "reply", f"{kind} with a reply subject outside the agent's inbox dropped",
                       reply=msg.reply[:MAX_ERROR_CHARS])
            return None
        return vm

    def malformed(self, who: str, kind: str, err: Exception) -> None:
        """Count a malformed message; log it unless this agent was warned of one within `warn_every_s`."""
        self._count(self.counts.malformed, kind)
        self._warn(who, f"malformed {kind}", f"malformed {kind}", error=str(err)[:MAX_ERROR_CHARS])

    def forget(self, vm_key: str) -> None:
        """Drop what is kept about an agent whose VM is gone."""
        self._buckets.pop(vm_key, None)
        for kind in ("metrics", "heartbeat", "register", "workloads"):
            self._vms.pop(f"cb.{kind}.{vm_key}", None)
        for key in [k for k in self._warned if k[0] == vm_key]:
            del self._warned[key]

    # -- internals --------------------------------------------------------------

    def _take(self, key: str) -> bool:
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            self._buckets[key] = _Bucket(self.burst - 1.0, now)
            return True
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate_per_s)
        bucket.at = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    @staticmethod
    def _count(counter: dict[str, int], kind: str) -> None:
        counter[kind] = counter.get(kind, 0) + 1

    def _warn(self, who: str, what: str, message: str, **extra: str) -> None:
        now = time.monotonic()
        warned = self._warned.get((who, what))
        if warned is not None and now - warned.at < self.warn_every_s:
            warned.unlogged += 1
            return
        unlogged = warned.unlogged if warned is not None else 0
        self._warned[(who, what)] = _Warned(now)
        log.warning(message, extra={"agent": who[:MAX_ERROR_CHARS], "unlogged_since_last": unlogged, **extra})


def reply_belongs(vm: VmId, reply: str) -> bool:
    """Whether `reply` lies in the VM's own inbox, the only one its agent may subscribe to."""
    return reply.startswith(vm.inbox_prefix + ".")


class GuardMetrics:
    """A Prometheus collector that reads a guard's counters when scraped."""

    def __init__(self, guard: AgentGuard) -> None:
        self.guard = guard

    def collect(self) -> Iterator[Metric]:
        counts = self.guard.counts
        dropped = CounterMetricFamily("cb_dragonfly_agent_messages_dropped",
                                      "Agents' messages dropped before being handled, by reason and kind",
                                      labels=["reason", "kind"])
        for reason, counter in (("rate_limited", counts.rate_limited), ("foreign_reply", counts.foreign_reply),
                                ("malformed", counts.malformed)):
            for kind, value in sorted(counter.items()):
                dropped.add_metric([reason, kind], value)
        yield dropped
        yield GaugeMetricFamily("cb_dragonfly_agent_buckets", "Agents with a rate-limit bucket in this replica",
                                value=len(self.guard._buckets))


def register(guard: AgentGuard, registry: CollectorRegistry = REGISTRY) -> GuardMetrics:
    metrics = GuardMetrics(guard)
    registry.register(metrics)
    return metrics


def unregister(metrics: GuardMetrics, registry: CollectorRegistry = REGISTRY) -> None:
    registry.unregister(metrics)
