"""The `mock` driver: a cloud played by CloudTwin, reached over its gRPC API."""

from __future__ import annotations

from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from spider.drivers import base
from spider.drivers.mock import handlers as h
from spider.drivers.mock.client import TwinClient

DEFAULT_ENDPOINT = "127.0.0.1:7000"


class MockDriver(base.Driver):
    """Every handler, over CloudTwin. Region settings: `endpoint` (host:port) and `provider`."""

    name = "mock"
    description = "CloudTwin, the suite's cloud emulator"
    credential_keys = ("access_key", "secret_key")
    name_rules = base.NameRules(max_length=63)

    def capabilities(self) -> pb.Capabilities:
        return pb.Capabilities(images=True, specs=True, region_zones=True, prices=True, vpc=True, subnet=True,
                               security_group=True, key_pair=True, key_pair_import=True, vm=True,
                               vm_suspend=True, vm_reboot=True, disk=True, disk_resize=True, register=True)

    async def connect(self, info: base.ConnectionInfo, caller: base.Caller) -> base.CloudConnection:
        provider = info.settings.get("provider", "")
        if not provider:
            raise errors.InvalidArgument.field("region.settings.provider", "the CloudTwin provider is required")
        for key in self.credential_keys:
            if not info.credential.get(key):
                raise errors.InvalidArgument.field(f"credential.values.{key}", "is required by the mock driver")
        twin = TwinClient(info.settings.get("endpoint", DEFAULT_ENDPOINT), provider, info.region,
                          info.credential["access_key"], info.credential["secret_key"], caller)
        # Fail now, with the twin's own words, if the provider or region does not exist.
        zones = await h.TwinRegionZones(twin).list_region_zones()
        if not any(rz.region == info.region for rz in zones):
            raise errors.InvalidArgument.field("region.region",
                                               f"provider {provider!r} has no region {info.region!r}")
        specs = h.TwinSpecs(twin)
        return base.CloudConnection(
            provider=provider, region=info.region, image=h.TwinImages(twin), spec=specs,
            region_zone=h.TwinRegionZones(twin), price=specs, vpc=h.TwinVpcs(twin),
            security_group=h.TwinSecurityGroups(twin), key_pair=h.TwinKeyPairs(twin), vm=h.TwinVms(twin),
            disk=h.TwinDisks(twin),
        )
