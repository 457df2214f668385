"""Dragonfly's NATS connection read in bursts (services/pacedreads.py): a stream of small messages
from many publishers comes several per socket read, nothing waits much longer than the tick, and
a backlog is read at full speed, not one tick's worth per tick."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg

from services.pacedreads import pace_reads
from tests.support.nats import Nats, subscribed

TICK_S = 0.05


async def connect(nats: Nats, name: str, every_s: float = 0.0) -> Client:
    nc = Client()
    pace_reads(nc, every_s)
    await nc.connect(nats.url, name=name, **nats.harness_creds.client_options())
    return nc


def count_reads(nc: Client) -> Callable[[], int]:
    """How many socket reads the client handed to its parser since."""
    reads = 0
    parse: Callable[[bytes], Awaitable[None]] = nc._ps.parse

    async def counted(data: bytes) -> None:
        nonlocal reads
        reads += 1
        await parse(data)

    nc._ps.parse = counted  # type: ignore[method-assign,assignment]
    return lambda: reads


async def test_a_steady_stream_comes_many_messages_a_read_and_none_waits_long(nats_process: Nats) -> None:
    subject = f"paced.{uuid.uuid4().hex[:8]}"
    reader = await connect(nats_process, "reader", TICK_S)
    reads = count_reads(reader)
    publishers = [await connect(nats_process, f"pub-{i}") for i in range(20)]
    delays: list[float] = []

    async def heard(msg: Msg) -> None:
        delays.append(time.time() - float(msg.data))

    try:
        await subscribed(reader, subject, cb=heard)
        before = reads()
        # 20 publishers, one message each every 10 ms between them: 100 a second, as agents do.
        for _ in range(50):
            for pub in publishers:
                await pub.publish(subject, str(time.time()).encode())
                await pub.flush()
                await asyncio.sleep(0.01 / len(publishers))
        for _ in range(100):
            if len(delays) == 1000:
                break
            await asyncio.sleep(0.02)
        assert len(delays) == 1000
        # One read per message unpaced; paced, about one per tick (the test's 0.5 s span: ~10).
        assert reads() - before < 100
        assert max(delays) < TICK_S + 0.5  # the tick, and a loaded machine's slack
    finally:
        for nc in (reader, *publishers):
            await nc.close()


async def test_a_backlog_is_read_at_full_speed(nats_process: Nats) -> None:
    subject = f"paced.{uuid.uuid4().hex[:8]}"
    # A long tick: were a read of asyncio's (at most 256 KiB) all a tick took, 20 MB would need 40 s.
    reader = await connect(nats_process, "reader", 0.5)
    pub = await connect(nats_process, "pub")
    got = 0
    done = asyncio.Event()

    async def heard(msg: Msg) -> None:
        nonlocal got
        got += 1
        if got == 20_000:
            done.set()

    try:
        await subscribed(reader, subject, cb=heard, pending_msgs_limit=100_000)
        body = b"x" * 1000
        started = time.monotonic()
        for _ in range(20_000):  # 20 MB at once
            await pub.publish(subject, body)
        await pub.flush()
        await asyncio.wait_for(done.wait(), 30)
        assert time.monotonic() - started < 15
    finally:
        await reader.close()
        await pub.close()
