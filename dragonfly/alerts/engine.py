"""Evaluating alert rules, on every replica.

Metric rules are evaluated in the collector path, on the points this replica receives:
collectors form a queue group, so with several replicas each sees a share of a VM's points
and judges its rules on that share (the for-duration is measured in the time of the points it
sees). Agent-health rules are evaluated by every replica on a timer (every replica hears every
heartbeat). Transitions go through etcd with compare-and-swap on one key per (rule, VM), so an
alert fires once and resolves once however many replicas saw it: the replica that wins the
swap stores the event, publishes it on NATS and calls the webhook."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Sequence

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from cbapi.dragonfly.v1 import dragonfly_pb2 as pb
from dragonfly import keyspace
from dragonfly.agents import UNHEALTHY_AFTER_INTERVALS, Agents, stamp
from dragonfly.alerts.rules import AGENT_UNHEALTHY, METRIC, Compiled, Window, compile_rule
from dragonfly.alerts.webhook import WebhookSink
from dragonfly.protocol.subjects import VmId, alerts
from dragonfly.storage import Sample
from services import errors
from services.bus import Bus
from services.store import Entry, Informer, Store

log = logging.getLogger("dragonfly.alerts")


def _decode_rule(key: str, raw: bytes) -> Message | None:
    return pb.AlertRule.FromString(raw)


def _decode_event(key: str, raw: bytes) -> Message | None:
    return pb.AlertEvent.FromString(raw)


class AlertEngine:
    """One replica's evaluation of every rule, and the events it emits."""

    def __init__(self, store: Store, bus: Bus, agents: Agents, sink: WebhookSink, events_max: int,
                 tick_s: float) -> None:
        self.store = store
        self.bus = bus
        self.agents = agents
        self.sink = sink
        self.events_max = events_max
        self.tick_s = tick_s
        self.rules = Informer(store, keyspace.alert_rules(), _decode_rule, self._rules_changed)
        self.firing = Informer(store, keyspace.alert_firing(), _decode_event, lambda _key: None)
        # Metric rules by (ns, group): the collector path looks up only the rules a sample can match.
        self._metric: dict[tuple[str, str], list[Compiled]] = {}
        self._health: list[Compiled] = []
        self._windows: dict[tuple[str, str], Window] = {}
        self._busy: set[str] = set()  # firing keys with a transition under way
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.sink.start()
        await self.rules.start()
        await self.firing.start()
        self._rules_changed("")
        self._ticker = asyncio.create_task(self._tick_forever())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
        await self.rules.stop()
        await self.firing.stop()
        await self.sink.stop()

    def _rules_changed(self, key: str) -> None:
        metric: dict[tuple[str, str], list[Compiled]] = {}
        health: list[Compiled] = []
        for rule_key, entry in self.rules.under(keyspace.alert_rules()):
            assert isinstance(entry.value, pb.AlertRule)
            compiled = compile_rule(rule_key, entry.value)
            if entry.value.kind == AGENT_UNHEALTHY:
                health.append(compiled)
            elif entry.value.kind == METRIC:
                metric.setdefault((entry.value.ns, compiled.group), []).append(compiled)
        self._metric, self._health = metric, health
        if key:  # a changed rule starts its windows afresh
            self._windows = {k: w for k, w in self._windows.items() if k[0] != key}

    # -- evaluation -----------------------------------------------------------

    def observe(self, samples: Sequence[Sample]) -> None:
        """The collector's hook: judge the metric rules on a batch (no I/O unless a state changes)."""
        if not self._metric:
            return
        for sample in samples:
            rules = self._metric.get((sample.vm.split(".", 1)[0], sample.group))
            for rule in rules or ():
                value = sample.values.get(rule.field)
                if value is None or not rule.covers(sample.vm):
                    continue
                window = self._windows.setdefault((rule.key, sample.vm), Window())
                self._judge(rule, sample.vm, window.see(rule.holds(value), sample.time, rule.rule.for_s), value)

    def check_health(self) -> None:
        """Judge agent-health rules on the heartbeats this replica heard."""
        for rule in self._health:
            for vm_key, beat in list(self.agents.beats.items()):
                if not rule.covers(vm_key):
                    continue
                limit = UNHEALTHY_AFTER_INTERVALS * beat.interval_s
                silent = time.monotonic() - beat.at
                # Unhealthy from the moment the silence passed the limit; fire once that lasted for_s.
                verdict = False if silent <= limit else (True if silent - limit >= rule.rule.for_s else None)
                self._judge(rule, vm_key, verdict, silent)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.check_health()

    def _judge(self, rule: Compiled, vm_key: str, verdict: bool | None, value: float) -> None:
        firing_key = keyspace.alert_firing(rule.rule.ns, rule.rule.name, vm_key)
        if verdict is None or firing_key in self._busy or (firing_key in self.firing.cache) == verdict:
            return
        self._busy.add(firing_key)
        work = self._fire(rule.rule, vm_key, firing_key, value) if verdict else self._resolve(
            rule.rule, firing_key, value, "the condition no longer holds")
        task = asyncio.create_task(work)
        self._tasks.add(task)
        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            self._busy.discard(firing_key)

        task.add_done_callback(done)

    # -- transitions ----------------------------------------------------------

    async def _fire(self, rule: pb.AlertRule, vm_key: str, firing_key: str, value: float) -> None:
        vm = VmId.from_key(vm_key)
        event = pb.AlertEvent(id=f"{time.time_ns():020d}-{secrets.token_hex(3)}", ns=vm.ns, mcis=vm.mcis, vm=vm.vm,
                              rule=rule.name, kind=rule.kind, state=pb.FIRING, severity=rule.severity,
                              metric=rule.metric, value=value, threshold=rule.threshold,
                              message=describe(rule, vm_key, value), time=stamp(time.time()))
        try:
            revision = await self.store.create(firing_key, event)
        except errors.AlreadyExists:
            return  # another replica fired it first
        except errors.DomainError as err:
            log.warning("alert not fired", extra={"key": firing_key, "error": err.message})
            return
        self.firing.cache.setdefault(firing_key, Entry(event, revision))
        await self._emit(rule, event)

    async def _resolve(self, rule: pb.AlertRule, firing_key: str, value: float, why: str) -> None:
        entry = self.firing.cache.get(firing_key)
        if entry is None:
            return
        assert isinstance(entry.value, pb.AlertEvent)
        try:
            await self.store.delete(firing_key, entry.mod_revision)
        except errors.DomainError:
            return  # another replica resolved it (or it changed): theirs is the event
        self.firing.cache.pop(firing_key, None)
        event = pb.AlertEvent()
        event.CopyFrom(entry.value)
        event.id = f"{time.time_ns():020d}-{secrets.token_hex(3)}"
        event.state, event.value, event.message = pb.RESOLVED, value, f"resolved: {why}"
        event.time.CopyFrom(stamp(time.time()))
        await self._emit(rule, event)

    async def retire(self, ns: str, rule_name: str, why: str) -> None:
        """Resolve everything a rule has firing (it was deleted or replaced)."""
        prefix = keyspace.alert_firing(ns, rule_name)
        for item in await self.store.list_all(prefix, pb.AlertEvent):
            firing = item.value
            try:
                await self.store.delete(item.key, item.mod_revision)
            except errors.Aborted:
                continue
            self.firing.cache.pop(item.key, None)
            event = pb.AlertEvent()
            event.CopyFrom(firing)
            event.id = f"{time.time_ns():020d}-{secrets.token_hex(3)}"
            event.state, event.message = pb.RESOLVED, f"resolved: {why}"
            event.time.CopyFrom(stamp(time.time()))
            rule = pb.AlertRule(name=rule_name, ns=ns)
            await self._emit(rule, event)

    async def forget(self, ns: str, mcis: str = "", vm: str = "", gone_vm: str = "") -> int:
        """Delete the rules scoped to what is gone (a VM, an MCIS with its VMs, a namespace with all
        of it) and resolve what they had firing, and drop what fires for the gone VM `gone_vm`
        (`ns.mcis.vm`) under wider rules; the number of rules deleted."""
        gone = 0
        for item in await self.store.list_all(keyspace.alert_rules(ns), pb.AlertRule):
            rule = item.value
            if (mcis and rule.mcis != mcis) or (vm and rule.vm != vm):
                continue
            if await self.store.delete(item.key):
                gone += 1
                await self.retire(ns, rule.name, "what it watched was removed")
        if gone_vm:
            for entry in await self.store.list_all(keyspace.alert_firing(ns), pb.AlertEvent):
                if entry.key.endswith("/" + gone_vm):
                    await self.store.delete(entry.key)
                    self.firing.cache.pop(entry.key, None)
        return gone

    async def _emit(self, rule: pb.AlertRule, event: pb.AlertEvent) -> None:
        """Store the event (keeping the newest `events_max` per namespace), publish it, call the webhook."""
        body = json.dumps(MessageToDict(event, preserving_proto_field_name=True)).encode()
        if rule.webhook_url:
            self.sink.send(rule.webhook_url, body)
        try:
            await self.bus.publish(alerts(event.ns, event.mcis), body)
        except errors.Unavailable as err:
            log.warning("alert event not published", extra={"event": event.id, "error": err.message})
        log.info("alert", extra={"rule": event.rule, "vm": event.vm, "state": pb.AlertState.Name(event.state)})
        try:
            await self.store.put(keyspace.alert_events(event.ns) + event.id, event)
            await self._trim(event.ns)
        except errors.DomainError as err:
            log.warning("alert event not stored", extra={"event": event.id, "error": err.message})

    async def _trim(self, ns: str) -> None:
        prefix = keyspace.alert_events(ns)
        excess = await self.store.count(prefix) - self.events_max
        if excess > 0:
            # Ids start with the time, so the first keys are the oldest.
            for item in (await self.store.page(prefix, pb.AlertEvent, excess)).items:
                await self.store.delete(item.key)


def describe(rule: pb.AlertRule, vm_key: str, value: float) -> str:
    if rule.kind == AGENT_UNHEALTHY:
        return f"the agent of {vm_key} has been silent for {value:.1f}s"
    return f"{rule.metric} of {vm_key} is {value:g} ({rule.operator} {rule.threshold:g} for {rule.for_s:g}s)"

