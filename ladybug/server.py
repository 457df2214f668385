"""The ladybug service process (`cb-ladybug`)."""

from __future__ import annotations

import asyncio
import logging
import uuid

from cbapi.ladybug.v1 import ladybug_pb2_grpc
from ladybug.balancer import Balancers
from ladybug.clients import Dragonfly, Tumblebug
from ladybug.controller import AppController
from ladybug.records import Records
from ladybug.servicer import LadybugServicer
from ladybug.settings import LadybugSettings
from services.rpc.server import Binding, run
from services.settings import CommonSettings
from services.store import Election, Store
from services.tasks import cancel_tasks

log = logging.getLogger("ladybug")

SERVICE_NAME = "cbapi.ladybug.v1.Ladybug"


class LadybugApp:
    """Ladybug: every replica serves the API; the elected leader also runs the controller."""

    name = "ladybug"

    def __init__(self, settings: LadybugSettings, common: CommonSettings) -> None:
        self.settings = settings
        self.identity = f"ladybug-{uuid.uuid4().hex[:12]}"
        self.store = Store.from_endpoints(common.etcd_endpoints)
        self.records = Records(self.store, settings.events_max, settings.revisions_max)
        self.tumblebug = Tumblebug(settings.tumblebug_addr, settings.call_timeout_s)
        self.dragonfly = Dragonfly(settings.dragonfly_addr, settings.call_timeout_s)
        endpoints = Balancers() if Balancers.available() else None
        if endpoints is None:
            log.warning("haproxy is not installed (make setup): applications run without an endpoint")
        self.controller = AppController(self.records, self.tumblebug, self.dragonfly, endpoints, settings)
        self.servicer = LadybugServicer(self.records, self.tumblebug, self.dragonfly)
        self.election = Election(self.store, "ladybug", self.identity, ttl=settings.leader_ttl_s)
        self._tasks: list[asyncio.Task[None]] = []

    def bindings(self) -> list[Binding]:
        return [Binding(SERVICE_NAME, self.servicer, ladybug_pb2_grpc.add_LadybugServicer_to_server)]

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self.controller.run(self.election)))

    async def stop(self) -> None:
        await cancel_tasks(self._tasks)
        await self.controller.close()
        await self.tumblebug.close()
        await self.dragonfly.close()
        await self.store.close()


def main() -> None:
    settings = LadybugSettings()
    common = CommonSettings()
    run(lambda: LadybugApp(settings, common), settings, common)


if __name__ == "__main__":
    main()
