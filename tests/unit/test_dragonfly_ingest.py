"""The ingest protocol without NATS: cumulative acknowledgements, the collector's duplicate
window, the agent's backlog in flight, and health from batches."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from nats.aio.msg import Msg

from cbapi.dragonfly.v1 import dragonfly_pb2 as pb
from dragonfly.agent.backlog import Backlog
from dragonfly.agents import Agents
from dragonfly.collector import SEEN_WINDOW, Collector, Seen
from dragonfly.protocol.acks import Ack, ranges_of
from dragonfly.protocol.subjects import VmId
from dragonfly.storage.memory import MemoryBackend

VM = VmId("ns1", "web", "vm-1")


class RecordingBus:
    """Stands in for the bus: records what the collector publishes."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, subject: str, data: bytes) -> None:
        self.published.append((subject, data))


def batch_msg(seq: int, boot: str = "b1", reply: str = VM.acks) -> Msg:
    body = {"vm": VM.key, "boot": boot, "seq": seq, "time": time.time(), "interval_s": 1.0, "backlog": 0,
            "dropped": 0, "groups": {"cpu": {"utilization_percent": 1.0}}}
    return Msg(None, VM.metrics, reply, orjson.dumps(body))  # type: ignore[arg-type]


def test_ranges_and_ack_round_trip() -> None:
    assert ranges_of([5, 3, 4, 9, 7, 8, 1]) == [(1, 1), (3, 5), (7, 9)]
    ack = Ack("b1", ranges_of(range(1, 11)))
    assert Ack.decode(ack.encode()) == Ack("b1", [(1, 10)])


def test_backlog_keeps_batches_in_flight_until_acknowledged_and_resends_late_ones() -> None:
    backlog = Backlog(100)
    for seq in range(1, 6):
        backlog.push(bytes([seq]), seq)
    assert backlog.due(100.0, 3, 5.0) == [b"\x01", b"\x02", b"\x03"]  # only the window goes
    assert backlog.due(101.0, 3, 5.0) == []  # in flight, not late yet
    assert backlog.ack([(1, 2)]) == 2 and len(backlog) == 3
    assert backlog.due(102.0, 3, 5.0) == [b"\x04", b"\x05"]
    assert backlog.due(105.0, 3, 5.0) == [b"\x03"]  # unacknowledged for 5 s: sent again
    backlog.unsend()
    assert backlog.due(105.5, 3, 5.0) == [b"\x03", b"\x04", b"\x05"]  # a reconnect sends all again
    assert backlog.ack([(3, 5), (40, 41)]) == 3 and len(backlog) == 0


def test_duplicate_window_tells_a_resent_batch_from_a_late_first_one() -> None:
    seen = Seen("b1", 10)
    assert seen.add(12) and seen.add(11)  # 11 arrives after 12 (another batch in flight): stored
    assert not seen.add(11) and not seen.add(10) and not seen.add(12)
    seen.discard(11)  # its write failed: the copy sent again must be stored
    assert seen.add(11)
    assert seen.add(12 + SEEN_WINDOW) and seen.add(12)  # beyond the window: stored rather than lost


@pytest.mark.asyncio
async def test_collector_acknowledges_many_batches_in_one_message_as_soon_as_they_are_stored() -> None:
    bus, backend = RecordingBus(), MemoryBackend(memory_mb=16)
    heard: list[dict[str, Any]] = []
    collector = Collector(bus, backend, "q", 10_000, 60.0,  # type: ignore[arg-type]
                          heard=lambda vm, batch: heard.append(batch))
    for seq in (1, 2, 3, 5, 4):
        collector.admit(batch_msg(seq))
    collector.admit(batch_msg(2))  # sent again after a lost acknowledgement
    assert bus.published == []  # nothing stored yet: nothing acknowledged
    await collector.collect()  # the write itself acknowledges, with no timer to wait for (lag)
    assert len(bus.published) == 1
    subject, data = bus.published[0]
    assert subject == VM.acks and Ack.decode(data) == Ack("b1", [(1, 5)])
    assert collector.counts.batches == 5 and collector.counts.duplicates == 1 and len(heard) == 6


@pytest.mark.asyncio
async def test_batches_whose_write_failed_are_stored_when_sent_again() -> None:
    class Failing(MemoryBackend):
        fail = True

        async def write(self, samples: Any) -> None:  # type: ignore[override]
            if self.fail:
                raise OSError("disk away")
            await super().write(samples)

    bus, backend = RecordingBus(), Failing(memory_mb=16)
    collector = Collector(bus, backend, "q", 10_000, 60.0)  # type: ignore[arg-type]
    collector.admit(batch_msg(1))
    with pytest.raises(OSError):
        await collector.collect()
    backend.fail = False
    collector.admit(batch_msg(2))
    collector.admit(batch_msg(1))  # sent again after no acknowledgement came
    await collector.collect()
    assert collector.counts.batches == 2 and collector.counts.duplicates == 0
    assert [Ack.decode(d) for _, d in bus.published] == [Ack("b1", [(1, 2)])]


class NoStore:
    pass


def test_health_from_batches_is_strict_and_from_heartbeats_alone_is_the_heartbeat_period() -> None:
    agents = Agents(NoStore(), NoStore(), 1.0)  # type: ignore[arg-type]
    record = pb.Agent(ns=VM.ns, mcis=VM.mcis, vm=VM.vm)
    for seq in (1, 2):
        agents.heard_batch(VM, {"seq": seq, "boot": "b1", "time": time.time(), "interval_s": 1.0, "backlog": 3})
    beat = agents.beats[VM.key]
    assert beat.allow_s == 2.5 and beat.seq == 2 and beat.backlog == 3
    assert agents.with_health(record).health == pb.HEALTHY
    beat.at -= 3.0  # three intervals without a batch: unhealthy in the replica that stores them
    assert agents.with_health(record).health == pb.UNHEALTHY
    # Another replica that hears only the heartbeat (every 5 s) allows 2.5 heartbeat periods.
    other = Agents(NoStore(), NoStore(), 1.0)  # type: ignore[arg-type]
    hb = {"seq": 2, "boot": "b1", "time": time.time(), "interval_s": 1.0, "beat_every_s": 5.0}
    asyncio.run(other._on_heartbeat(Msg(None, VM.heartbeat, "", orjson.dumps(hb))))  # type: ignore[arg-type]
    theirs = other.beats[VM.key]
    assert theirs.allow_s == 12.5
    theirs.at -= 10.0
    assert other.with_health(record).health == pb.HEALTHY
    # Seqs with gaps (a share of the stream, or batches sent again) allow the heartbeat period too.
    other.heard_batch(VM, {"seq": 5, "boot": "b1", "time": time.time(), "interval_s": 1.0})
    assert other.beats[VM.key].allow_s == 12.5


def test_an_agent_that_boots_again_is_held_to_its_interval_from_its_first_batch() -> None:
    agents = Agents(NoStore(), NoStore(), 1.0)  # type: ignore[arg-type]
    for seq in (40, 41):
        agents.heard_batch(VM, {"seq": seq, "boot": "b1", "time": time.time(), "interval_s": 1.0})
    # The new boot's heartbeat comes first (its agent beats on connecting), then its first batch.
    hb = {"seq": 1, "boot": "b2", "time": time.time(), "interval_s": 1.0, "beat_every_s": 5.0}
    asyncio.run(agents._on_heartbeat(Msg(None, VM.heartbeat, "", orjson.dumps(hb))))  # type: ignore[arg-type]
    agents.heard_batch(VM, {"seq": 1, "boot": "b2", "time": time.time(), "interval_s": 1.0})
    assert agents.beats[VM.key].allow_s == 2.5
