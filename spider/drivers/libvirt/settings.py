"""A libvirt region's settings, read once from the region record and checked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from services import errors
from spider.drivers.base import ConnectionInfo

DEFAULT_SEED_DIR = "/var/lib/libvirt/cb-spider/seeds"
DEFAULT_KEYRING = "cb-spider-keyring"
FORWARD_MODES = ("nat", "route", "open", "none")


@dataclass(frozen=True)
class Flavor:
    """A VM size offered by the host (libvirt has no catalog of its own)."""

    name: str
    vcpu: int
    memory_gib: float
    architecture: str = ""
    gpu_count: int = 0
    family: str = ""


# Sizes in the common 1:2 → 1:4 vCPU:GiB shapes; a region replaces them with `flavors`.
DEFAULT_FLAVORS = (
    Flavor("tiny", 1, 0.5, family="general"),
    Flavor("small", 1, 2, family="general"),
    Flavor("medium", 2, 4, family="general"),
    Flavor("large", 4, 8, family="general"),
    Flavor("xlarge", 8, 16, family="general"),
)


@dataclass(frozen=True)
class LibvirtSettings:
    uri: str
    pool: str
    image_pool: str
    network: str
    forward: str
    flavors: tuple[Flavor, ...]
    zones: tuple[str, ...]
    location: str
    seed_dir: Path
    nwfilter_uri: str
    keyring: str
    threads: int
    username: str = ""
    password: str = ""

    @property
    def local(self) -> bool:
        """True when the URI names no host: spider and the hypervisor share a file system."""
        return not urlsplit(self.uri).hostname


def _field(key: str, why: str) -> errors.InvalidArgument:
    return errors.InvalidArgument.field(f"region.settings.{key}", why)


def _flavors(raw: str) -> tuple[Flavor, ...]:
    if not raw:
        return DEFAULT_FLAVORS
    try:
        items = json.loads(raw)
        flavors = tuple(Flavor(name=str(i["name"]), vcpu=int(i["vcpu"]), memory_gib=float(i["memory_gib"]),
                               architecture=str(i.get("architecture", "")), gpu_count=int(i.get("gpu_count", 0)),
                               family=str(i.get("family", ""))) for i in items)
    except (ValueError, TypeError, KeyError) as err:
        raise _field("flavors", 'must be a JSON list like [{"name": "m1", "vcpu": 2, "memory_gib": 4}]: '
                                f"{err}") from err
    bad = [f.name for f in flavors if not f.name or f.vcpu <= 0 or f.memory_gib <= 0]
    if bad or not flavors:
        raise _field("flavors", f"every flavor needs a name, vcpu > 0 and memory_gib > 0 (bad: {bad})")
    return flavors


def _int(settings: dict[str, str], key: str, default: int, low: int, high: int) -> int:
    try:
        value = int(settings.get(key) or default)
    except ValueError as err:
        raise _field(key, f"must be a whole number, not {settings[key]!r}") from err
    if not low <= value <= high:
        raise _field(key, f"must be between {low} and {high}")
    return value


def parse(info: ConnectionInfo) -> LibvirtSettings:
    """The settings of `info`, or InvalidArgument naming the setting that is wrong."""
    s = dict(info.settings)
    uri = s.get("uri") or info.region
    if "://" not in uri:
        raise _field("uri", f"a libvirt URI is required (e.g. qemu:///system, test:///default); "
                            f"region.region {info.region!r} is not one")
    forward = s.get("forward", "nat")
    if forward not in FORWARD_MODES:
        raise _field("forward", f"must be one of {', '.join(FORWARD_MODES)}")
    pool = s.get("pool", "default")
    zones = tuple(z.strip() for z in s.get("zones", "").split(",") if z.strip()) or (info.zone or "default",)
    return LibvirtSettings(
        uri=uri, pool=pool, image_pool=s.get("image_pool", pool), network=s.get("network", "default"),
        forward=forward, flavors=_flavors(s.get("flavors", "")), zones=zones, location=s.get("location", ""),
        seed_dir=Path(s.get("seed_dir", DEFAULT_SEED_DIR)), nwfilter_uri=s.get("nwfilter_uri", ""),
        keyring=s.get("keyring", DEFAULT_KEYRING), threads=_int(s, "threads", 8, 1, 64),
        username=info.credential.get("username", ""), password=info.credential.get("password", ""),
    )
