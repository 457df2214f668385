"""The CloudTwin process: `python -m spider.cloudtwin.server` (console script `cb-cloudtwin`)."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as pb
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as pb_grpc
from services.rpc.server import Binding, run
from services.settings import CommonSettings

from .catalog import Catalog
from .cloud import TwinCloud
from .guests import Guests
from .knobs import KnobTable, parse_entries
from .persistence import Housekeeper, StateFile
from .servicer import CloudTwinServicer
from .settings import CloudTwinSettings
from .ssh_hosts import SshHosts
from .store import Store

log = logging.getLogger("cloudtwin")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["CloudTwin"].full_name


def default_knobs(s: CloudTwinSettings) -> pb.Knobs:
    """The knobs every region starts from, as the settings give them."""
    def lat(median: float) -> pb.Latency:
        return pb.Latency(median_s=median, sigma=s.latency_sigma)

    return pb.Knobs(create_latency=lat(s.create_latency), boot_latency=lat(s.boot_latency),
                    action_latency=lat(s.action_latency), failure_rate=s.failure_rate,
                    quota_vms=s.quota_vms, quota_vcpus=s.quota_vcpus, api_rate=s.api_rate,
                    api_burst=s.api_burst)


class CloudTwinApp:
    """The emulator as an App of the shared server runtime."""

    name = "cloudtwin"

    def __init__(self, settings: CloudTwinSettings) -> None:
        self.settings = settings
        catalog = Catalog(settings.seed, settings.providers)
        knobs = KnobTable(catalog, default_knobs(settings), parse_entries(settings.knobs_json))
        self.store = Store(retention_s=settings.terminated_retention_s)
        # Latencies and injected failures draw from the seed too, so a run can be replayed.
        self.cloud = TwinCloud(catalog, knobs, self.store, random.Random(settings.seed), ssh_port=settings.ssh_port)
        self.file = StateFile(Path(settings.state_file)) if settings.state_file else None
        self.keeper = Housekeeper(self.store, self.file, self.cloud.snapshot)
        self.servicer = CloudTwinServicer(self.cloud)
        self.guests = Guests(self.store, catalog, settings.guest_dir, settings.guest_shards) if settings.guests else None
        # SSH servers share the guests' directory, so a VM's commands run in one sandbox either way.
        self.ssh = SshHosts(self.store, catalog, str(self.guests.root) if self.guests else settings.guest_dir) \
            if settings.ssh_port else None

    def bindings(self) -> Sequence[Binding]:
        return [Binding(SERVICE_NAME, self.servicer, pb_grpc.add_CloudTwinServicer_to_server)]

    async def start(self) -> None:
        """Take over the state file, if any, and start housekeeping."""
        if self.file is not None:
            state = self.file.load()
            if state is not None:
                self.cloud.restore(state)
                log.info("state loaded", extra={"path": str(self.file.path), "resources": len(state.resources)})
        self.keeper.start()
        if self.guests is not None:
            # After a restart, the running VMs loaded above get their agents back.
            self.guests.start()
        if self.ssh is not None:
            self.ssh.start()
        log.info("cloudtwin ready", extra={"seed": self.settings.seed,
                                           "providers": len(self.cloud.catalog.providers),
                                           "regions": self.cloud.catalog.region_count()})

    async def stop(self) -> None:
        """Halt the guests and SSH servers, stop housekeeping and save the state one last time."""
        if self.ssh is not None:
            await self.ssh.stop()
        if self.guests is not None:
            await self.guests.stop()
        await self.keeper.stop()


def main() -> None:
    settings = CloudTwinSettings()
    run(lambda: CloudTwinApp(settings), settings, CommonSettings())


if __name__ == "__main__":
    main()
