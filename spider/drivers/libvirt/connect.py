"""Opening a libvirt connection: check the settings, reach the host, learn it, hand out the handlers."""

from __future__ import annotations

import libvirt

from services import errors
from spider.drivers import base
from spider.drivers.libvirt import settings as S
from spider.drivers.libvirt.catalog import LibvirtImages, LibvirtRegionZones, LibvirtSpecs
from spider.drivers.libvirt.client import LibvirtClient
from spider.drivers.libvirt.disks import LibvirtDisks
from spider.drivers.libvirt.host import has_nwfilter, probe
from spider.drivers.libvirt.keypairs import Keyring, LibvirtKeyPairs
from spider.drivers.libvirt.security_groups import LibvirtSecurityGroups
from spider.drivers.libvirt.vms import LibvirtVms
from spider.drivers.libvirt.vpcs import LibvirtVpcs


async def _check_pools(client: LibvirtClient, settings: S.LibvirtSettings) -> None:
    for key, pool in (("pool", settings.pool), ("image_pool", settings.image_pool)):
        def lookup(conn: libvirt.virConnect, name: str = pool) -> str:
            return str(conn.storagePoolLookupByName(name).name())

        try:
            await client.call("virStoragePoolLookupByName", lookup, "storage_pool", pool)
        except errors.NotFound as err:
            raise errors.InvalidArgument.field(f"region.settings.{key}", f"storage pool {pool!r} is not on the "
                                               f"host {settings.uri}: {err.message}") from err


async def _filters(client: LibvirtClient, settings: S.LibvirtSettings, caller: base.Caller,
                   hypervisor_has_them: bool) -> LibvirtClient | None:
    if hypervisor_has_them:
        return client
    if not settings.nwfilter_uri:
        return None
    filters = LibvirtClient(settings.nwfilter_uri, caller, min(settings.threads, 4), settings.username,
                            settings.password)
    if not await filters.call("virConnectListAllNWFilters", has_nwfilter, "connection", settings.nwfilter_uri):
        await filters.close()
        raise errors.InvalidArgument.field("region.settings.nwfilter_uri",
                                           f"{settings.nwfilter_uri} serves no nwfilters")
    return filters


async def open_connection(info: base.ConnectionInfo, caller: base.Caller) -> base.CloudConnection:
    settings = S.parse(info)
    client = LibvirtClient(settings.uri, caller, settings.threads, settings.username, settings.password)
    try:
        await client.open()
        host = await client.call("virConnectGetCapabilities", probe, "connection", settings.uri)
        await _check_pools(client, settings)
        filters = await _filters(client, settings, caller, host.nwfilter)
    except BaseException:
        await client.close()
        raise

    async def close() -> None:
        await client.close()
        if filters is not None and filters is not client:
            await filters.close()

    specs = LibvirtSpecs(settings, host)
    keys = LibvirtKeyPairs(client, Keyring(settings, host))
    return base.CloudConnection(
        provider="libvirt", region=info.region, image=LibvirtImages(client, settings, host), spec=specs,
        region_zone=LibvirtRegionZones(info.region, settings), price=None, vpc=LibvirtVpcs(client, settings),
        security_group=LibvirtSecurityGroups(filters, client) if filters is not None else None, key_pair=keys,
        vm=LibvirtVms(client, filters, settings, host, specs, keys), disk=LibvirtDisks(client, settings),
        close=close,
    )


