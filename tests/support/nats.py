"""NATS for tests: the suite's server in operator mode with its credentials, and subscribing so that
a message another connection publishes next is sure to be delivered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import DEFAULT_SUB_PENDING_MSGS_LIMIT, Subscription

from services import natsauth
from services import processes as procs


@dataclass
class Nats:
    """A NATS server that admits only JWT users of its authority."""

    proc: procs.Proc
    port: int
    files: natsauth.AuthFiles

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def dragonfly_creds(self) -> natsauth.Creds:
        """Dragonfly's own user (least privilege)."""
        return natsauth.Creds.parse(self.files.dragonfly_creds.read_text())

    @property
    def harness_creds(self) -> natsauth.Creds:
        """An unrestricted user of the CB account, for tests that watch or drive the bus
        (the suite itself has none)."""
        return self.signer.issue("test-harness", natsauth.Permissions(unrestricted=True))

    @property
    def signer(self) -> natsauth.Signer:
        return natsauth.Signer.load(self.files.signer.read_text())

    async def restart(self) -> None:
        self.proc.popen = None
        await procs.start_tcp(self.proc, self.port)


async def start_nats(run_dir: Path) -> Nats:
    files = natsauth.write_suite_auth(run_dir / "auth")
    port = procs.free_port()
    proc = procs.nats(run_dir, port, files.server_config)
    await procs.start_tcp(proc, port)
    return Nats(proc, port, files)


# Why a flush after a subscribe is not enough: nats-py (2.16) queues the SUB in its pending buffer
# for its flusher task, but writes a flush's PING straight to the socket, so the PING may go out
# ahead of the SUB and its PONG come back before the server has read the SUB. A message another
# connection publishes meanwhile reaches no one (core NATS keeps nothing for later subscribers).


async def server_has_read(nc: Client) -> None:
    """Returns once the server has read every command `nc` sent before the call.

    The server reads one connection's commands in order and answers a PING after everything before
    it, so the PONG to a PING written after those commands proves it. Nothing is published: this
    works whatever the connection may publish or subscribe to (a refused SUB has been refused by
    then, its error sent before the PONG)."""
    while True:
        # Nothing left in the client's buffer: all sent so far is on the socket, ahead of the next PING.
        on_socket = nc.pending_data_size == 0
        await nc.flush()  # also has the flusher write the buffer
        if on_socket:
            return


async def subscribed(nc: Client, subject: str, cb: Callable[[Msg], Awaitable[None]] | None = None,
                     queue: str = "", pending_msgs_limit: int = DEFAULT_SUB_PENDING_MSGS_LIMIT) -> Subscription:
    """A subscription the server holds: a message published after this returns, on any connection,
    is delivered to it."""
    sub = await nc.subscribe(subject, queue=queue, cb=cb, pending_msgs_limit=pending_msgs_limit)
    await server_has_read(nc)
    return sub
