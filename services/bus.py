"""The event bus over NATS: connect with reconnect, publish, subscribe, request/reply."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from nats import errors as nats_errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from services import errors
from services.pacedreads import pace_reads

# How long a client has to open its connection and authenticate (the server's side of it is
# `authorization.timeout`, services/natsauth/authority.py): the same on both sides. 2 s (the
# server's default is less) was missed by handshakes on a machine saturated by a reporting fleet:
# the server closed them ("Authentication Timeout") and each was tried again, more work for the
# same starved loops (docs/ARCHITECTURE.md, "Booting a fleet").
HANDSHAKE_S = 5  # seconds (an int: nats-py types connect_timeout so)

log = logging.getLogger("bus")


def servers(url: str) -> list[str]:
    """The NATS servers of `CB_NATS_URL`: one URL, or the nodes of a cluster separated by commas."""
    return [u.strip() for u in url.split(",") if u.strip()]


class Bus:
    """One NATS connection per process; reconnects forever and buffers while away."""

    def __init__(self, url: str, name: str, options: Mapping[str, Any] | None = None,
                 first_connect_s: float = 5.0, read_every_s: float = 0.0) -> None:
        self.url = url
        self.name = name
        # How this process proves who it is (e.g. a user JWT and its signature, see services.natsauth).
        self._options = dict(options or {})
        # Once connected, reconnecting never gives up; the first connect does, with a clear error.
        self._first_connect_s = first_connect_s
        # Socket reads at most this often while the connection keeps up (services/pacedreads.py).
        self._read_every_s = read_every_s
        self._nc: Client | None = None

    async def connect(self) -> None:
        async def on_disconnect() -> None:
            log.warning("nats disconnected", extra={"url": self.url})

        async def on_reconnect() -> None:
            log.info("nats reconnected", extra={"url": self.url})

        async def on_error(err: Exception) -> None:
            log.warning("nats error", extra={"error": str(err)})

        nc = Client()
        pace_reads(nc, self._read_every_s)
        try:
            await asyncio.wait_for(nc.connect(
                servers(self.url), name=self.name, **self._options,
                max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=HANDSHAKE_S,  # type: ignore[arg-type]
                disconnected_cb=on_disconnect, reconnected_cb=on_reconnect, error_cb=on_error,
                allow_reconnect=True, pending_size=64 * 1024 * 1024,
            ), timeout=self._first_connect_s)
        except (nats_errors.NoServersError, OSError, TimeoutError) as err:
            await nc.close()
            raise errors.Unavailable(f"the bus (NATS at {self.url}) is unavailable: "
                                     f"no answer within {self._first_connect_s:g}s") from err
        self._nc = nc

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise errors.Unavailable("the bus is not connected")
        return self._nc

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            try:
                await self._nc.drain()
            except (nats_errors.ConnectionReconnectingError, nats_errors.ConnectionClosedError):
                # Away from the server (e.g. it restarts): nothing to drain to, so stop reconnecting.
                await self._nc.close()

    async def publish(self, subject: str, data: bytes) -> None:
        try:
            await self.nc.publish(subject, data)
        except nats_errors.ConnectionClosedError as err:
            raise errors.Unavailable(f"the bus is closed: {err}") from err

    async def subscribe(self, subject: str, handler: Callable[[Msg], Awaitable[None]], queue: str = "") -> Subscription:
        return await self.nc.subscribe(subject, queue=queue, cb=handler)

    async def request(self, subject: str, data: bytes, timeout: float = 5.0) -> bytes:
        try:
            msg = await self.nc.request(subject, data, timeout=timeout)
        except nats_errors.NoRespondersError as err:
            raise errors.Unavailable(f"nobody answers on {subject}") from err
        except nats_errors.TimeoutError as err:
            raise errors.DeadlineExceeded(f"no answer on {subject} within {timeout:g}s") from err
        return bytes(msg.data)
