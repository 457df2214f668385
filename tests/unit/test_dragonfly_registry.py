"""Registrations are recorded many per etcd transaction, and every request is answered."""

from __future__ import annotations

import asyncio
import json

import orjson
from google.protobuf.message import Message
from nats.aio.msg import Msg

from cbapi.dragonfly.v1 import dragonfly_pb2 as pb
from dragonfly import keyspace
from dragonfly.agents import Agents
from dragonfly.protocol.subjects import VmId
from services import errors
from services.store import Versioned


class TxnStore:
    """Records each transaction: what it wrote and which settings it read."""

    def __init__(self, intervals: dict[str, float]) -> None:
        self.intervals = intervals
        self.txns: list[tuple[list[str], list[str]]] = []
        self.records: dict[str, Message] = {}
        self.fail = False

    async def put_and_get(self, puts: list[tuple[str, Message]], gets: list[str],
                          cls: type[pb.MonitoringConfig]) -> tuple[int, dict[str, Versioned[pb.MonitoringConfig]]]:
        if self.fail:
            raise errors.Unavailable("etcd away")
        assert len({k for k, _ in puts}) == len(puts), "a key written twice in one transaction"
        self.txns.append(([k for k, _ in puts], list(gets)))
        self.records.update(puts)
        found = {k: Versioned(k, pb.MonitoringConfig(interval_s=self.intervals[k]), 1)
                 for k in gets if k in self.intervals}
        return len(self.txns), found


class Replies:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, subject: str, data: bytes) -> None:
        self.published.append((subject, data))


def registration(vm: VmId, n: int, boot: str = "b1") -> Msg:
    body = {"vm": vm.key, "boot": boot, "kind": "twin", "version": "0.1.0", "interval_s": 5.0}
    return Msg(None, vm.register, f"{vm.inbox_prefix}.r{n}", orjson.dumps(body))  # type: ignore[arg-type]


async def register_all(agents: Agents, msgs: list[Msg]) -> None:
    agents.start_recorder()
    for msg in msgs:
        await agents._on_register(msg)
    for _ in range(50):
        await asyncio.sleep(0)
        if not agents._waiting and not agents._arrived.is_set():
            break
    await agents.stop()


def test_a_burst_of_registrations_takes_few_transactions_and_answers_every_request() -> None:
    vms = [VmId("ns", f"m{i % 3}", f"vm-{i}") for i in range(150)]
    store = TxnStore({keyspace.mcis_config("ns", "m1"): 30.0})
    bus = Replies()
    agents = Agents(store, bus, 1.0)  # type: ignore[arg-type]
    # vm-0 asked twice (its first request timed out): one record, both requests answered.
    msgs = [registration(vm, 0) for vm in vms] + [registration(vms[0], 1, boot="b2")]
    asyncio.run(register_all(agents, msgs))
    assert len(store.txns) == 3  # 150 agents, 64 a transaction (etcd takes 128 operations)
    assert all(len(puts) + len(gets) <= 128 for puts, gets in store.txns)
    assert all(sorted(gets) == sorted({keyspace.mcis_config("ns", k.split("/")[-2]) for k in puts})
               for puts, gets in store.txns)
    assert len(store.records) == 150 and agents.registrations_recorded == 150
    first = store.records[keyspace.agent(vms[0])]
    assert isinstance(first, pb.Agent) and first.boot == "b2"  # the newest registration is what is kept
    answered = {subject: json.loads(data)["interval_s"] for subject, data in bus.published}
    assert len(bus.published) == 151
    assert answered[f"{vms[1].inbox_prefix}.r0"] == 30.0  # m1's own interval
    assert answered[f"{vms[0].inbox_prefix}.r0"] == answered[f"{vms[0].inbox_prefix}.r1"] == 1.0  # the default


def test_registrations_etcd_did_not_take_are_not_answered() -> None:
    store = TxnStore({})
    store.fail = True
    bus = Replies()
    agents = Agents(store, bus, 1.0)  # type: ignore[arg-type]
    asyncio.run(register_all(agents, [registration(VmId("ns", "m", "vm-1"), 0)]))
    # No answer: the agent times out and registers again.
    assert bus.published == [] and agents.registrations_recorded == 0


def test_a_registration_from_another_inbox_is_dropped() -> None:
    vm = VmId("ns", "m", "vm-1")
    body = orjson.dumps({"vm": vm.key, "boot": "b1", "interval_s": 5.0})
    msg = Msg(None, vm.register, "_INBOX.ns.m.vm-2.r0", body)  # type: ignore[arg-type]
    store, bus = TxnStore({}), Replies()
    agents = Agents(store, bus, 1.0)  # type: ignore[arg-type]
    asyncio.run(register_all(agents, [msg]))
    assert store.records == {} and bus.published == []

