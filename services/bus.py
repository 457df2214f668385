"""The event bus over NATS: connect with reconnect, publish, subscribe, request/reply."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ConnectionClosedError, NoRespondersError, NoServersError, TimeoutError

from services import errors

log = logging.getLogger("bus")


class Bus:
    """One NATS connection per process; reconnects forever and buffers while away."""

    def __init__(self, url: str, name: str, user: str = "", password: str = "") -> None:
        self.url = url
        self.name = name
        self._user = user
        self._password = password
        self._nc: Client | None = None

    async def connect(self) -> None:
        async def on_disconnect() -> None:
            log.warning("nats disconnected", extra={"url": self.url})

        async def on_reconnect() -> None:
            log.info("nats reconnected", extra={"url": self.url})

        async def on_error(err: Exception) -> None:
            log.warning("nats error", extra={"error": str(err)})

        try:
            self._nc = await nats.connect(
                self.url, name=self.name, user=self._user or None, password=self._password or None,
                max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=2,
                disconnected_cb=on_disconnect, reconnected_cb=on_reconnect, error_cb=on_error,
                allow_reconnect=True, pending_size=64 * 1024 * 1024,
            )
        except (NoServersError, OSError) as err:
            raise errors.Unavailable(f"the bus (NATS at {self.url}) is unavailable: {err}") from err

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise errors.Unavailable("the bus is not connected")
        return self._nc

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.drain()

    async def publish(self, subject: str, data: bytes) -> None:
        try:
            await self.nc.publish(subject, data)
        except ConnectionClosedError as err:
            raise errors.Unavailable(f"the bus is closed: {err}") from err

    async def subscribe(self, subject: str, handler: Callable[[Msg], Awaitable[None]], queue: str = "") -> Subscription:
        return await self.nc.subscribe(subject, queue=queue, cb=handler)

    async def request(self, subject: str, data: bytes, timeout: float = 5.0) -> bytes:
        try:
            msg = await self.nc.request(subject, data, timeout=timeout)
        except NoRespondersError as err:
            raise errors.Unavailable(f"nobody answers on {subject}") from err
        except TimeoutError as err:
            raise errors.DeadlineExceeded(f"no answer on {subject} within {timeout:g}s") from err
        return bytes(msg.data)
