"""Reading a busy NATS connection in bursts: at most one socket read per tick while it keeps up.

A process that hears thousands of small messages a second from as many publishers (dragonfly:
one metric batch per agent per interval) gets most of them one per socket read, since the
server forwards each publisher's message as it comes. Every read is a loop wake-up, an epoll
round, a `recv` and a pass of nats-py's parser: per message, not per byte. Pausing the socket for
a short tick after a read that drained everything lets the kernel gather what arrives meanwhile,
so one read takes a tick's worth of messages (measured in docs/ARCHITECTURE.md, "Dragonfly
reads its NATS socket in bursts"). A read that did not drain the buffer is followed at once, so
a backlog is read at full speed; nothing waits longer than one tick.

nats-py (2.x) has no option for it: its read loop hands each read to `Client._ps.parse`, which this
wraps for one client; the pause is the asyncio transport's own `pause_reading`.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import termios
import time
from array import array
from collections.abc import Awaitable, Callable

from nats.aio.client import DEFAULT_BUFFER_SIZE, Client

log = logging.getLogger("services.pacedreads")

# What the kernel may hold for the socket and still be left there for a tick.
BACKLOG_BYTES = 64 * 1024


def pace_reads(nc: Client, every_s: float) -> None:
    """Make `nc` read its socket at most once per `every_s` while it keeps up (0: as it comes)."""
    if every_s <= 0:
        return
    parser = getattr(nc, "_ps", None)
    if parser is None or not callable(getattr(parser, "parse", None)):
        # Another nats-py than the one this was written for: read as it comes, and say so.
        log.warning("NATS reads are not paced: nats-py has no parser to wrap", extra={"every_s": every_s})
        return
    parse: Callable[[bytes], Awaitable[None]] = parser.parse

    async def paced(data: bytes) -> None:
        started = time.monotonic()
        await parse(data)
        # A full read means more waits in the stream's buffer: go on at once.
        if len(data) >= DEFAULT_BUFFER_SIZE:
            return
        wait = started + every_s - time.monotonic()
        if wait > 0:
            await _paused(nc, wait)

    parser.parse = paced


async def _paused(nc: Client, seconds: float) -> None:
    """Leave what arrives in the kernel's buffer for `seconds` (the socket out of the selector),
    unless the kernel already holds a backlog: asyncio takes at most 256 KiB a read, so pausing
    then would cap the connection at that much per tick."""
    writer = getattr(nc._transport, "_io_writer", None)
    transport = writer.transport if writer is not None else None
    if transport is None or transport.is_closing() or _queued(transport) >= BACKLOG_BYTES:
        return
    transport.pause_reading()
    try:
        await asyncio.sleep(seconds)
    finally:
        # A reconnect replaces the transport; the old one is closed and resuming it is a no-op.
        if not transport.is_closing():
            transport.resume_reading()


def _queued(transport: asyncio.BaseTransport) -> int:
    """Bytes the kernel holds for the socket, not read yet (0 if it cannot say)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    out = array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, out)
    except OSError:
        return 0
    return out[0]
