"""The NATS bus against a real nats-server: publish/subscribe, queue groups,
request/reply, and reconnecting after the server restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from nats.aio.msg import Msg

from services import errors
from services import processes as procs
from services.bus import Bus


@pytest_asyncio.fixture(loop_scope="session")
async def nats_server(tmp_path: Path) -> AsyncIterator[tuple[procs.Proc, int]]:
    port = procs.free_port()
    proc = procs.nats(tmp_path, port)
    await procs.start_tcp(proc, port)
    yield proc, port
    proc.stop()


async def test_publish_subscribe_and_queue_groups(nats_server: tuple[procs.Proc, int]) -> None:
    url = f"nats://127.0.0.1:{nats_server[1]}"
    bus = Bus(url, "test")
    await bus.connect()
    plain: list[bytes] = []
    grouped: dict[str, int] = {"a": 0, "b": 0}

    async def on_plain(msg: Msg) -> None:
        plain.append(msg.data)

    def member(name: str):  # type: ignore[no-untyped-def]
        async def on_msg(msg: Msg) -> None:
            grouped[name] += 1
        return on_msg

    await bus.subscribe("cb.test.events", on_plain)
    await bus.subscribe("cb.test.events", member("a"), queue="workers")
    await bus.subscribe("cb.test.events", member("b"), queue="workers")
    for i in range(50):
        await bus.publish("cb.test.events", str(i).encode())
    await bus.nc.flush()
    await asyncio.sleep(0.2)
    assert len(plain) == 50
    assert grouped["a"] + grouped["b"] == 50  # each message to exactly one member of the group
    await bus.close()


async def test_request_reply_and_errors(nats_server: tuple[procs.Proc, int]) -> None:
    bus = Bus(f"nats://127.0.0.1:{nats_server[1]}", "test")
    await bus.connect()

    async def echo(msg: Msg) -> None:
        await msg.respond(msg.data.upper())

    await bus.subscribe("cb.test.echo", echo)
    assert await bus.request("cb.test.echo", b"hello") == b"HELLO"
    with pytest.raises(errors.Unavailable):
        await bus.request("cb.test.nobody", b"x", timeout=0.5)
    await bus.close()


async def test_unreachable_server_is_unavailable() -> None:
    bus = Bus(f"nats://127.0.0.1:{procs.free_port()}", "test", first_connect_s=1.0)
    with pytest.raises(errors.Unavailable) as caught:
        await bus.connect()
    assert "NATS" in caught.value.message


async def test_reconnects_after_a_server_restart(nats_server: tuple[procs.Proc, int]) -> None:
    proc, port = nats_server
    bus = Bus(f"nats://127.0.0.1:{port}", "test")
    await bus.connect()
    got: list[bytes] = []

    async def on_msg(msg: Msg) -> None:
        got.append(msg.data)

    await bus.subscribe("cb.test.after", on_msg)
    proc.stop()
    proc.popen = None
    await procs.start_tcp(proc, port)
    for _ in range(100):
        if bus.nc.is_connected:
            break
        await asyncio.sleep(0.1)
    assert bus.nc.is_connected
    await bus.publish("cb.test.after", b"again")
    await bus.nc.flush()
    await asyncio.sleep(0.2)
    assert got == [b"again"]  # the subscription came back with the connection
    await bus.close()
