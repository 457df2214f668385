"""Alert rules and events as etcd keeps them: create, read, list, replace and delete a rule, and
list a namespace's events.

The rule book writes rules; the engine (`dragonfly.alerts.engine`) hears of them through its
informer and judges them, so the two share only the store. A changed or deleted rule is retired
in the engine at once, so what it had firing resolves.
"""

from __future__ import annotations

import time

from cbapi.dragonfly.v1 import dragonfly_pb2 as pb
from dragonfly import keyspace
from dragonfly.agents import Agents, stamp
from dragonfly.alerts.engine import AlertEngine
from dragonfly.alerts.rules import validate
from services import errors
from services.names import check_name
from services.store import Page, Store


class RuleBook:
    """Every namespace's alert rules and events."""

    def __init__(self, store: Store, agents: Agents, engine: AlertEngine) -> None:
        self.store = store
        self.agents = agents
        self.engine = engine

    async def create(self, ns: str, body: pb.AlertRule) -> pb.AlertRule:
        """Store a new rule; ALREADY_EXISTS if the namespace has one by its name."""
        rule = validate(ns, body)
        await self._check_scope(rule)
        rule.created_time.CopyFrom(stamp(time.time()))
        try:
            await self.store.create(keyspace.alert_rule(rule.ns, rule.name), rule)
        except errors.AlreadyExists as err:
            raise errors.AlreadyExists(f"alert rule {rule.name!r} already exists in namespace {rule.ns!r}") from err
        return rule

    async def get(self, ns: str, name: str) -> pb.AlertRule:
        check_name(ns, "ns")
        found = await self.store.must_get(keyspace.alert_rule(ns, name), pb.AlertRule, f"alert rule {name!r}")
        return found.value

    async def page(self, ns: str, size: int, token: str) -> Page[pb.AlertRule]:
        check_name(ns, "ns")
        return await self.store.page(keyspace.alert_rules(ns), pb.AlertRule, size, token)

    async def replace(self, ns: str, name: str, body: pb.AlertRule) -> pb.AlertRule:
        """Replace a rule (its creation time kept) and retire what it had firing."""
        if body.name and body.name != name:
            raise errors.InvalidArgument.field("rule.name", "a rule cannot be renamed")
        new = pb.AlertRule()
        new.CopyFrom(body)
        new.name = name
        rule = validate(ns, new)
        await self._check_scope(rule)

        def keep_created(cur: pb.AlertRule) -> pb.AlertRule:
            rule.created_time.CopyFrom(cur.created_time)
            return rule

        updated = await self.store.modify(keyspace.alert_rule(rule.ns, rule.name), pb.AlertRule, keep_created,
                                          f"alert rule {rule.name!r}")
        await self.engine.retire(rule.ns, rule.name, "the rule was changed")
        return updated

    async def delete(self, ns: str, name: str) -> None:
        """Delete a rule and retire what it had firing; NOT_FOUND if there is none."""
        check_name(ns, "ns")
        if not await self.store.delete(keyspace.alert_rule(ns, name)):
            raise errors.NotFound(f"alert rule {name!r} not found")
        await self.engine.retire(ns, name, "the rule was deleted")

    async def events(self, ns: str, size: int, token: str) -> Page[pb.AlertEvent]:
        check_name(ns, "ns")
        return await self.store.page(keyspace.alert_events(ns), pb.AlertEvent, size, token)

    async def _check_scope(self, rule: pb.AlertRule) -> None:
        """NOT_FOUND unless dragonfly monitors something in the rule's scope: an agent credential
        issued (and not revoked) or an agent registered in that namespace, MCIS or VM."""
        if not await self.agents.monitors(rule.ns, rule.mcis, rule.vm):
            scope = ("VM " + ".".join((rule.ns, rule.mcis, rule.vm)) if rule.vm else
                     f"MCIS {rule.mcis!r} of namespace {rule.ns!r}" if rule.mcis else f"namespace {rule.ns!r}")
            raise errors.NotFound(f"dragonfly monitors no {scope}: no agent was installed there (or it was removed)")
