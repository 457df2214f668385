"""Images (the image pool's volumes), specs (the region's flavors), region and zones."""

from __future__ import annotations

import re

import libvirt

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from spider.drivers import base
from spider.drivers.libvirt import volumes as V
from spider.drivers.libvirt.client import LibvirtClient
from spider.drivers.libvirt.host import HostFacts
from spider.drivers.libvirt.settings import LibvirtSettings

_ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64", "i686": "i686",
           "i386": "i686", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
_EXTENSIONS = (".qcow2", ".img", ".raw", ".iso", ".vmdk")
_ARCH_WORD = re.compile(r"(?:^|[-_.])(" + "|".join(_ARCHES) + r")(?=$|[-_.])", re.IGNORECASE)


def describe_image(name: str, capacity: int, host_arch: str) -> pb.Image:
    """An image from its volume name, e.g. `ubuntu-22.04-x86_64.qcow2` → Ubuntu 22.04 on x86_64."""
    stem = name
    for ext in _EXTENSIONS:
        stem = stem.removesuffix(ext)
    found = _ARCH_WORD.search(stem)
    arch = _ARCHES[found.group(1).lower()] if found else host_arch
    words = [w for w in re.split(r"[-_ ]+", _ARCH_WORD.sub(" ", stem)) if w]
    distro = words[0].capitalize() if words else stem
    version = next((w for w in words[1:] if w[0].isdigit()), "")
    size = V.VolumeView(name, "", "", capacity, "").size_gib
    return pb.Image(name=name, display_name=stem, os=f"{distro} {version}".strip(), architecture=arch, size_gib=size)


class LibvirtImages(base.ImageHandler):
    """Every volume of the image pool that spider did not make is an image."""

    def __init__(self, client: LibvirtClient, settings: LibvirtSettings, host: HostFacts) -> None:
        self.client, self.settings, self.host = client, settings, host

    async def list_images(self) -> list[pb.Image]:
        def volumes(conn: libvirt.virConnect) -> list[tuple[str, int]]:
            pool = conn.storagePoolLookupByName(self.settings.image_pool)
            return [(v.name(), v.info()[1]) for v in pool.listAllVolumes(0)]

        found = await self.client.call("virStoragePoolListAllVolumes", volumes, "image", self.settings.image_pool)
        return sorted((describe_image(n, cap, self.host.arch) for n, cap in found if not V.is_spiders(n)),
                      key=lambda i: i.name)

    async def get_image(self, name: str) -> pb.Image:
        if V.is_spiders(name):
            raise errors.NotFound(f"image {name!r} not found: it is a volume spider made, not an image")

        def info(conn: libvirt.virConnect) -> int:
            vol = conn.storagePoolLookupByName(self.settings.image_pool).storageVolLookupByName(name)
            return int(vol.info()[1])

        return describe_image(name, await self.client.call("virStorageVolGetInfo", info, "image", name), self.host.arch)


class LibvirtSpecs(base.SpecHandler):
    """The region's flavors (libvirt has no catalog of sizes)."""

    def __init__(self, settings: LibvirtSettings, host: HostFacts) -> None:
        self.settings, self.host = settings, host

    async def list_specs(self) -> list[pb.Spec]:
        return [pb.Spec(name=f.name, vcpu=f.vcpu, memory_gib=f.memory_gib, architecture=f.architecture or self.host.arch,
                        gpu_count=f.gpu_count, family=f.family) for f in self.settings.flavors]

    async def get_spec(self, name: str) -> pb.Spec:
        for spec in await self.list_specs():
            if spec.name == name:
                return spec
        known = ", ".join(f.name for f in self.settings.flavors)
        raise errors.NotFound(f"spec {name!r} is not a flavor of this region (flavors: {known})")


class LibvirtRegionZones(base.RegionZoneHandler):
    """One region (the host) with the zones the region settings name."""

    def __init__(self, region: str, settings: LibvirtSettings) -> None:
        self.region, self.settings = region, settings

    async def list_region_zones(self) -> list[pb.RegionZone]:
        where = common.Location(display=self.settings.location) if self.settings.location else None
        return [pb.RegionZone(region=self.region, zones=list(self.settings.zones), location=where)]
