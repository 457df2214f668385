"""Where a VM's cloud-init seed goes: a file beside spider on local hosts, an uploaded volume on remote ones.

As virt-install does: when the URI names no host, spider and the hypervisor share a
file system and the seed ISO is a file in the region setting `seed_dir`; otherwise it
is a raw volume `<vm>.seed` in the pool, filled by virStorageVolUpload.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import libvirt

from services import errors
from spider.drivers.libvirt import domains as D
from spider.drivers.libvirt import lookups as L
from spider.drivers.libvirt import volumes as V
from spider.drivers.libvirt.client import LibvirtClient
from spider.drivers.libvirt.settings import LibvirtSettings

_CHUNK = 256 * 1024


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_bytes(data)
    os.chmod(partial, 0o644)  # the hypervisor's user reads it
    os.replace(partial, path)


def _upload(conn: libvirt.virConnect, pool: str, name: str, data: bytes) -> None:
    vol = L.volume_or_none(conn, pool, name)
    if vol is None:
        vol = conn.storagePoolLookupByName(pool).createXML(V.build(name, len(data), "raw"), 0)
    stream = conn.newStream(0)
    vol.upload(stream, 0, len(data), 0)
    try:
        for start in range(0, len(data), _CHUNK):
            stream.send(data[start:start + _CHUNK])
        stream.finish()
    except libvirt.libvirtError:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise


class Seeds:
    def __init__(self, client: LibvirtClient, settings: LibvirtSettings) -> None:
        self.client, self.settings = client, settings

    async def put(self, vm: str, data: bytes) -> D.Disk:
        """Store the seed of VM `vm`; returns the cdrom that carries it."""
        if self.settings.local:
            path = self.settings.seed_dir / f"{vm}{V.SEED}.iso"
            try:
                await asyncio.to_thread(_write, path, data)
            except OSError as err:
                raise errors.FailedPrecondition(f"cannot write the cloud-init seed to {path}: {err}; "
                                                "set the region setting seed_dir to a writable directory") from err
            return D.Disk(device="cdrom", target="sda", file=str(path), format="raw")
        name = f"{vm}{V.SEED}"
        await self.client.call("virStorageVolUpload", lambda c: _upload(c, self.settings.pool, name, data),
                               "vm", vm)
        return D.Disk(device="cdrom", target="sda", pool=self.settings.pool, volume=name, format="raw")

    async def remove(self, vm: str, where: str) -> None:
        """Remove a seed recorded as `where` (a file path or a volume name); gone already is fine."""
        if not where:
            return
        if where.startswith("/"):
            await asyncio.to_thread(lambda: Path(where).unlink(missing_ok=True))
            return

        def delete(conn: libvirt.virConnect) -> None:
            vol = L.volume_or_none(conn, self.settings.pool, where)
            if vol is not None:
                vol.delete(0)

        await self.client.call("virStorageVolDelete", delete, "vm", vm)
