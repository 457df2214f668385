"""The shared bus (`services.bus.Bus`) connected with this process's NATS credential."""

from __future__ import annotations

import asyncio
import logging

from nats import errors as nats_errors
from nats.aio.client import Client

from services import errors
from services.bus import Bus
from services.natsauth import Creds

log = logging.getLogger("bus")


class CredentialedBus(Bus):
    """Bus.connect with the `.creds` of this service.

    `services.bus.Bus` takes only a user and password, which NATS in operator
    mode does not accept; this override adds the credential and is otherwise
    the same connection (reconnect forever, clear first-connect error).
    """

    def __init__(self, url: str, name: str, creds: Creds, first_connect_s: float = 5.0) -> None:
        super().__init__(url, name, first_connect_s=first_connect_s)
        self.creds = creds

    async def connect(self) -> None:
        async def on_error(err: Exception) -> None:
            log.warning("nats error", extra={"error": str(err)})

        nc = Client()
        try:
            await asyncio.wait_for(nc.connect(
                self.url, name=self.name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,  # type: ignore[arg-type]
                connect_timeout=2, error_cb=on_error, allow_reconnect=True, pending_size=64 * 1024 * 1024,
                **self.creds.client_options()), timeout=self._first_connect_s)
        except (nats_errors.NoServersError, OSError, TimeoutError) as err:
            await nc.close()
            raise errors.Unavailable(f"the bus (NATS at {self.url}) is unavailable: "
                                     f"no answer within {self._first_connect_s:g}s") from err
        self._nc = nc
