"""Data disks as storage volumes (`<name>.disk` in the pool), attached to domains as virtio disks.

Whether a disk is attached is read from the domains that name it (live or persistent
definition), so a disk is never "attached" to a domain that no longer exists. The
cloud ID of a disk is its volume name.

Attach and detach hot-plug the disk (virDomainAttachDeviceFlags, live and persistent).
A host without device hot-plug (libvirt's test driver) answers VIR_ERR_NO_SUPPORT; the
disk is then attached to the domain's persistent definition alone (virDomainDefineXML),
which a running VM sees from its next start, as `virsh attach-disk --config` does.
"""

from __future__ import annotations

import libvirt

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from spider.drivers import base
from spider.drivers.libvirt import domains as D
from spider.drivers.libvirt import lookups as L
from spider.drivers.libvirt import volumes as V
from spider.drivers.libvirt import xmltools as X
from spider.drivers.libvirt.client import LibvirtClient
from spider.drivers.libvirt.errors import not_found
from spider.drivers.libvirt.settings import LibvirtSettings

FORMATS = ("qcow2", "raw")


def holders(conn: libvirt.virConnect, pool: str) -> dict[str, str]:
    """Volume name → name of the domain it is attached to, for the volumes of `pool`."""
    return {d.volume: v.name for v, _, _ in L.domain_views(conn) for d in v.disks if d.pool == pool}


def _redefine(conn: libvirt.virConnect, dom: libvirt.virDomain, disk: D.Disk, attach: bool) -> None:
    """Attach or detach `disk` in the persistent definition only (hosts without hot-plug)."""
    root = X.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    devices = root.find("devices")
    if devices is None:
        devices = X.sub(root, "devices")
    if attach:
        devices.append(D.disk_xml(disk))
    else:
        for elem in devices.findall("disk"):
            if X.attr(elem, "source", "volume") == disk.volume and X.attr(elem, "source", "pool") == disk.pool:
                devices.remove(elem)
    conn.defineXML(X.tostring(root))


def _plug(conn: libvirt.virConnect, dom: libvirt.virDomain, disk: D.Disk, attach: bool) -> None:
    xml = X.tostring(D.disk_xml(disk))
    try:
        if attach:
            dom.attachDeviceFlags(xml, L.device_flags(dom))
        else:
            dom.detachDeviceFlags(xml, L.device_flags(dom))
    except libvirt.libvirtError as err:
        if err.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT or not dom.isPersistent():
            raise
        _redefine(conn, dom, disk, attach)


class LibvirtDisks(base.DiskHandler):
    def __init__(self, client: LibvirtClient, settings: LibvirtSettings) -> None:
        self.client, self.settings = client, settings

    def _disk(self, vol: V.VolumeView, holder: str) -> pb.Disk:
        return pb.Disk(iid=common.IID(csp_name=vol.name.removesuffix(V.DISK), csp_id=vol.name), size_gib=vol.size_gib,
                       disk_type=vol.format, zone=self.settings.zones[0], status="attached" if holder else "available")

    def _read(self, conn: libvirt.virConnect, csp_id: str) -> tuple[V.VolumeView, str]:
        if not csp_id.endswith(V.DISK):
            raise not_found("VIR_ERR_NO_STORAGE_VOL", f"Storage volume not found: {csp_id!r} is not a data disk "
                                                      f"(spider's disks are named <name>{V.DISK})")
        vol = V.parse(L.volume(conn, self.settings.pool, csp_id).XMLDesc(0))
        return vol, holders(conn, self.settings.pool).get(csp_id, "")

    async def create_disk(self, disk: pb.Disk, token: str) -> pb.Disk:
        fmt = disk.disk_type or "qcow2"
        if fmt not in FORMATS:
            raise errors.InvalidArgument.field("disk.disk_type", f"must be one of {', '.join(FORMATS)} on libvirt")
        name = f"{disk.iid.csp_name}{V.DISK}"

        def create(conn: libvirt.virConnect) -> V.VolumeView:
            # The volume name is the idempotency token: a repeated create finds the volume made.
            vol = L.volume_or_none(conn, self.settings.pool, name)
            if vol is None:
                xml = V.build(name, disk.size_gib * V.GIB, fmt)
                vol = conn.storagePoolLookupByName(self.settings.pool).createXML(xml, 0)
            return V.parse(vol.XMLDesc(0))

        return self._disk(await self.client.call("virStorageVolCreateXML", create, "disk", disk.iid.name), "")

    async def get_disk(self, csp_id: str) -> pb.Disk:
        return self._disk(*await self.client.call("virStorageVolGetXMLDesc", lambda c: self._read(c, csp_id),
                                                  "disk", csp_id))

    async def list_disks(self) -> list[pb.Disk]:
        def read(conn: libvirt.virConnect) -> list[tuple[V.VolumeView, str]]:
            held = holders(conn, self.settings.pool)
            vols = conn.storagePoolLookupByName(self.settings.pool).listAllVolumes(0)
            return [(V.parse(v.XMLDesc(0)), held.get(v.name(), "")) for v in vols if v.name().endswith(V.DISK)]

        return [self._disk(v, h) for v, h in await self.client.call("virStoragePoolListAllVolumes", read, "disk")]

    async def delete_disk(self, csp_id: str) -> None:
        def delete(conn: libvirt.virConnect) -> None:
            _, holder = self._read(conn, csp_id)
            if holder:
                raise base.CloudError(errors.FailedPrecondition, f"volume {csp_id!r} is attached to domain {holder!r}")
            L.volume(conn, self.settings.pool, csp_id).delete(0)

        await self.client.call("virStorageVolDelete", delete, "disk", csp_id)

    async def attach_disk(self, csp_id: str, vm_csp_id: str) -> pb.Disk:
        def attach(conn: libvirt.virConnect) -> None:
            vol, holder = self._read(conn, csp_id)
            dom, view = L.vm_domain(conn, vm_csp_id)
            if holder == view.name:
                return  # attached already: a repeated request
            if holder:
                raise base.CloudError(errors.FailedPrecondition, f"volume {csp_id!r} is attached to domain {holder!r}")
            disk = D.Disk(device="disk", target=D.next_target(view), pool=self.settings.pool, volume=vol.name,
                          format=vol.format)
            _plug(conn, dom, disk, attach=True)

        await self.client.call("virDomainAttachDeviceFlags", attach, "disk", csp_id)
        return await self.get_disk(csp_id)

    async def detach_disk(self, csp_id: str, vm_csp_id: str) -> pb.Disk:
        def detach(conn: libvirt.virConnect) -> None:
            dom, view = L.vm_domain(conn, vm_csp_id)
            disk = next((d for d in view.disks if d.pool == self.settings.pool and d.volume == csp_id), None)
            if disk is None:
                return  # not attached to this VM: nothing to do
            _plug(conn, dom, disk, attach=False)

        await self.client.call("virDomainDetachDeviceFlags", detach, "disk", csp_id)
        return await self.get_disk(csp_id)

    async def resize_disk(self, csp_id: str, size_gib: int) -> pb.Disk:
        def resize(conn: libvirt.virConnect) -> None:
            self._read(conn, csp_id)
            L.volume(conn, self.settings.pool, csp_id).resize(size_gib * V.GIB, 0)

        await self.client.call("virStorageVolResize", resize, "disk", csp_id)
        return await self.get_disk(csp_id)
