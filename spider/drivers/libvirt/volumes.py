"""Storage volume XML and the names spider gives the volumes it makes.

Images and spider's volumes may share one pool, so spider's volumes are told apart
by a suffix: `<vm>.root` (a VM's root disk, a copy-on-write overlay of its image),
`<vm>.seed` (its cloud-init seed, on hosts reached remotely) and `<disk>.disk` (a
data disk). Every other volume of the image pool is an image.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from spider.drivers.libvirt import xmltools as X

GIB = 1024**3
ROOT, SEED, DISK = ".root", ".seed", ".disk"
SPIDER_SUFFIXES = (ROOT, SEED, DISK)


@dataclass(frozen=True)
class VolumeView:
    name: str
    key: str
    path: str
    capacity: int
    format: str

    @property
    def size_gib(self) -> int:
        return max(1, math.ceil(self.capacity / GIB)) if self.capacity else 0


def is_spiders(name: str) -> bool:
    return name.endswith(SPIDER_SUFFIXES)


def build(name: str, capacity: int, fmt: str, backing: VolumeView | None = None) -> str:
    root = ET.Element("volume")
    X.sub(root, "name", name)
    X.sub(root, "capacity", str(capacity), unit="bytes")
    X.sub(X.sub(root, "target"), "format", type=fmt)
    if backing is not None:
        store = X.sub(root, "backingStore")
        X.sub(store, "path", backing.path)
        X.sub(store, "format", type=backing.format or "raw")
    return X.tostring(root)


def parse(text: str) -> VolumeView:
    root = X.parse(text)
    return VolumeView(name=X.text(root, "name"), key=X.text(root, "key"), path=X.text(root, "target/path"),
                      capacity=int(X.text(root, "capacity", "0")), format=X.attr(root, "target/format", "type"))
