"""The spider service process (`cb-spider`)."""

from __future__ import annotations

import asyncio
import logging
import uuid

from cbapi.common.v1 import common_pb2
from cbapi.spider.v1 import spider_pb2_grpc
from services import errors
from services.rpc.server import Binding, run
from services.secrets import Sealer, load_key
from services.settings import CommonSettings
from services.store import Election, Lease, Store
from services.tasks import cancel_tasks
from spider import keyspace
from spider.calllog import CallLog
from spider.connections import Connections
from spider.resources import Resources
from spider.servicer import SpiderServicer
from spider.settings import SpiderSettings

log = logging.getLogger("spider")

SERVICE_NAME = "cbapi.spider.v1.Spider"


class SpiderApp:
    """Spider: the servicer, its connections and resources, and the recovery reconciler."""

    name = "spider"

    def __init__(self, settings: SpiderSettings, common: CommonSettings) -> None:
        self.settings = settings
        self.common = common
        self.identity = f"spider-{uuid.uuid4().hex[:12]}"
        self.store = Store.from_endpoints(common.etcd_endpoints)
        self.call_log = CallLog(settings.call_log_file)
        sealer = Sealer(load_key(common.secret_key, common.secret_key_file))
        self.connections = Connections(self.store, sealer, settings, self.call_log)
        self.resources = Resources(self.store, self.connections, self.identity, settings.settle_s)
        self.servicer = SpiderServicer(self.connections, self.resources, self.call_log)
        self._tasks: list[asyncio.Task[None]] = []
        self._lease: Lease | None = None

    def bindings(self) -> list[Binding]:
        return [Binding(SERVICE_NAME, self.servicer, spider_pb2_grpc.add_SpiderServicer_to_server)]

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._keep_instance()))
        election = Election(self.store, "spider", self.identity, ttl=self.settings.instance_ttl_s)
        self._tasks.append(asyncio.create_task(election.run(self._recover_forever)))

    async def stop(self) -> None:
        await cancel_tasks(self._tasks)
        await self.resources.close()
        if self._lease is not None:
            await self._lease.revoke()
        self.call_log.close()
        await self.store.close()

    async def _keep_instance(self) -> None:
        """Hold `/cb/spider/instances/{id}` on a lease: our intents are ours while it lives."""
        while True:
            try:
                self._lease = await self.store.grant_lease(self.settings.instance_ttl_s)
                await self.store.put(keyspace.instance(self.identity), common_pb2.KeyValue(key="instance",
                                                                                           value=self.identity),
                                     lease=self._lease)
                await self._lease.lost.wait()
                log.warning("instance lease lost; renewing")
            except errors.Unavailable:
                await asyncio.sleep(1)

    async def _recover_forever(self) -> None:
        """As leader: resolve intents of dead spider instances, every few seconds."""
        while True:
            try:
                alive = {i.value.value for i in await self.store.list_all(keyspace.instance(), common_pb2.KeyValue)}
                alive.discard("")
                count = await self.resources.recover(alive)
                if count:
                    log.info("recovery pass", extra={"resolved": count})
            except errors.DomainError as err:
                log.warning("recovery pass failed", extra={"error": err.message})
            await asyncio.sleep(self.settings.recovery_interval_s)


def main() -> None:
    settings = SpiderSettings()
    common = CommonSettings()
    run(lambda: SpiderApp(settings, common), settings, common)


if __name__ == "__main__":
    main()
