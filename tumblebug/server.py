"""The tumblebug service process (`cb-tumblebug`)."""

from __future__ import annotations

import asyncio
import logging
import uuid

from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services.rpc.server import Binding, run
from services.secrets import Sealer, load_key
from services.settings import CommonSettings
from services.store import Election, Store
from services.tasks import cancel_tasks
from tumblebug.benchmarks import Benchmarker, BenchmarkStore
from tumblebug.campaigns import Campaigns
from tumblebug.catalog import Catalog
from tumblebug.keyring import Keyring
from tumblebug.mcis.reconciler import Reconciler
from tumblebug.mcis.remote import RemoteCommands, SshLimits
from tumblebug.mcis.service import McisService
from tumblebug.mcis.summaries import McisSummaries
from tumblebug.monitoring import Monitoring
from tumblebug.namespaces import Namespaces
from tumblebug.placement_rpcs import PlacementParts
from tumblebug.placement_service import PlacementService
from tumblebug.quotas import Defaults, Quotas
from tumblebug.resources import Resources
from tumblebug.servicer import TumblebugServicer
from tumblebug.settings import TumblebugSettings
from tumblebug.spider_client import Spider

log = logging.getLogger("tumblebug")

SERVICE_NAME = "cbapi.tumblebug.v1.Tumblebug"


class TumblebugApp:
    """Tumblebug: every replica serves the API; the elected leader also runs the reconciler. A replica
    with `controller` off serves the API only and never runs for leader."""

    name = "tumblebug"

    def __init__(self, settings: TumblebugSettings, common: CommonSettings) -> None:
        self.settings = settings
        self.identity = f"tumblebug-{uuid.uuid4().hex[:12]}"
        self.store = Store.from_endpoints(common.etcd_endpoints)
        self.spider = Spider(settings.spider_addr)
        self.monitoring = Monitoring(settings.dragonfly_addr)
        namespaces = Namespaces(self.store)
        # Private keys of SSH keys are sealed with the suite's secret key, as spider seals credentials.
        keyring = Keyring(self.store, Sealer(load_key(common.secret_key, common.secret_key_file)))
        self.resources = Resources(self.store, self.spider, namespaces, keyring)
        self.catalog = Catalog(self.spider, settings.catalog_refresh_s)
        limits = SshLimits(settings.ssh_connect_timeout_s, settings.ssh_parallel)
        remote = RemoteCommands(self.store, keyring, self.monitoring, limits)
        quotas = Quotas(self.store, Defaults(settings.quota_vms, settings.quota_vcpus, settings.quota_mcis))
        self.mcis = mcis = McisService(self.store, self.spider, namespaces, self.resources, self.monitoring, remote,
                                       quotas)
        # The reconciler's own client of etcd (or, on an API-only replica, its MCIS watch's): its
        # stream of writes and events does not queue the API's calls, and the API's `written`
        # revision counts the API's writes only (see McisReads.get).
        self.reconciler_store = Store.from_endpoints(common.etcd_endpoints)
        self.servicer = TumblebugServicer(namespaces, self.resources, mcis, self.catalog, quotas)
        # placement: recommendation, plan, benchmarks and campaigns (tumblebug/placement_rpcs.py)
        results = BenchmarkStore(self.store)
        placement = PlacementService(self.catalog, results)
        benchmarker = Benchmarker(results, self.monitoring, mcis.get)
        self.placement = placement
        self.campaigns = Campaigns(self.store, namespaces, mcis, placement, benchmarker, self.catalog)
        self.servicer.parts = PlacementParts(placement, results, benchmarker, self.campaigns)
        self.election = Election(self.store, "tumblebug", self.identity, ttl=settings.leader_ttl_s)
        self._tasks: list[asyncio.Task[None]] = []

    def bindings(self) -> list[Binding]:
        return [Binding(SERVICE_NAME, self.servicer, tumblebug_pb2_grpc.add_TumblebugServicer_to_server)]

    async def start(self) -> None:
        if not self.settings.controller:
            # GetMcis from a watched copy of the MCIS records, never from a reconciler.
            summaries = McisSummaries(self.reconciler_store)
            self.mcis.reads.view = summaries
            self._tasks.append(asyncio.create_task(summaries.run()))
            log.info("serving the API only", extra={"identity": self.identity})
            return
        self._tasks.append(asyncio.create_task(self.election.run(self._lead)))

    async def _lead(self) -> None:
        """The leader's work: finish resources a stopped replica left half made, then reconcile MCIS."""
        log.info("leading", extra={"identity": self.identity})
        await self.resources.resume_pending()
        # placement: the reconciler fails VMs over by their MCIS's placement request
        reconciler = Reconciler(self.reconciler_store, self.spider, self.settings, self.monitoring, self.placement,
                                self.resources)
        self.mcis.reads.view = reconciler  # GetMcis from the leader's cache
        try:
            await asyncio.gather(reconciler.run(),
                                 self.campaigns.run())  # placement: campaigns run in the leader
        finally:
            self.mcis.reads.view = None

    async def stop(self) -> None:
        await cancel_tasks(self._tasks)
        await self.spider.close()
        await self.monitoring.close()
        await self.reconciler_store.close()
        await self.store.close()


# The cyclic collector's thresholds (default 700, 10, 10). The leader's heap is mostly long-lived (the
# informer's records, one per VM, and the operations in flight), so a full collection scans all of it
# to find nearly nothing: over a 10,000-VM build, 5-6 full collections of 50-80 ms CPU each, each
# collecting 0-13 objects. A full collection may now run after 300 middle-generation collections,
# not 10 (none during such a build). The middle generation is collected after every 3 young
# collections, not 10: it then holds fewer survivors, and its pause (the longest left, up to 40 ms
# CPU with 10) stays near 20 ms. The young generation still collects what dies young.
GC_THRESHOLDS = (700, 3, 300)


def main() -> None:
    settings = TumblebugSettings()
    common = CommonSettings()
    run(lambda: TumblebugApp(settings, common), settings, common, gc_thresholds=GC_THRESHOLDS)


if __name__ == "__main__":
    main()
