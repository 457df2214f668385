"""The emulated clouds' catalog: providers, regions, zones, specs, prices, images
and the hidden true performance of every spec. Everything follows from the seed.

Each random choice draws from its own generator seeded by a hash of what it is
about (seed, provider, region, spec), so one provider's catalog does not change
when another is added, and the result never depends on Python's hash salt.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as pb
from cbapi.common.v1 import common_pb2

from . import faults
from .geography import CITIES, SKY_WORDS, City

MIN_REGIONS, MAX_REGIONS = 3, 6


def stable_rng(*parts: object) -> random.Random:
    """A generator seeded by the parts' text, the same in every process."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def stable_hex(*parts: object, length: int = 16) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class Family:
    """An instance family: shape, list price per vCPU and how fast it really is."""

    name: str
    code: str
    architecture: str
    gib_per_vcpu: float
    price_per_vcpu: float
    # Single-thread speed relative to `general`, and memory bandwidth factor.
    single: float
    memory_bw: float
    # (size name, vCPUs, GPUs)
    sizes: tuple[tuple[str, int, int], ...]
    # Probability that a region offers the family.
    presence: float


_STD_SIZES = (("large", 2, 0), ("xlarge", 4, 0), ("2xlarge", 8, 0), ("4xlarge", 16, 0))

FAMILIES: tuple[Family, ...] = (
    Family("general", "g", "x86_64", 4.0, 0.024, 1.00, 1.00, (("medium", 1, 0), *_STD_SIZES), 1.0),
    Family("compute", "c", "x86_64", 2.0, 0.021, 1.20, 0.95, (*_STD_SIZES, ("8xlarge", 32, 0)), 1.0),
    Family("memory", "m", "x86_64", 8.0, 0.032, 0.95, 1.30, _STD_SIZES, 1.0),
    Family("arm64", "a", "arm64", 4.0, 0.019, 0.85, 1.10, (("medium", 1, 0), *_STD_SIZES), 0.8),
    Family("gpu", "p", "x86_64", 8.0, 0.050, 1.05, 1.15,
           (("xlarge", 4, 1), ("2xlarge", 8, 1), ("4xlarge", 16, 2), ("8xlarge", 32, 4)), 0.5),
)
GPU_PRICE_PER_HOUR = 0.85

# (os, version, root disk GiB)
OPERATING_SYSTEMS: tuple[tuple[str, str, int], ...] = (
    ("ubuntu", "22.04", 8), ("ubuntu", "24.04", 8), ("debian", "11", 8),
    ("debian", "12", 8), ("rocky", "8", 10), ("rocky", "9", 10),
)
ARCHITECTURES = ("x86_64", "arm64")


@dataclass(frozen=True)
class SpecInfo:
    """An instance type as the cloud lists it."""

    name: str
    family: str
    vcpu: int
    memory_gib: float
    architecture: str
    gpu_count: int
    price_per_hour: float

    def to_proto(self) -> pb.Spec:
        return pb.Spec(name=self.name, vcpu=self.vcpu, memory_gib=self.memory_gib,
                       architecture=self.architecture, gpu_count=self.gpu_count,
                       price_per_hour=self.price_per_hour, family=self.family)


@dataclass(frozen=True)
class ImageInfo:
    """A machine image offered in one region."""

    id: str
    name: str
    os: str
    architecture: str
    size_gib: int

    def to_proto(self) -> pb.Image:
        return pb.Image(id=self.id, name=self.name, os=self.os, architecture=self.architecture,
                        size_gib=self.size_gib)


@dataclass(frozen=True)
class ProviderTraits:
    """Hidden per-provider factors; price and performance are drawn independently."""

    price: float
    perf: float
    storage: float
    generation: int
    # Multi-core scaling efficiency per family.
    scaling: dict[str, float]


@dataclass
class RegionCatalog:
    """What one region of one provider offers."""

    provider: str
    name: str
    city: City
    zones: tuple[str, ...]
    specs: dict[str, SpecInfo]
    images: dict[str, ImageInfo]
    # Hidden: how fast this region's hardware is, relative to the provider's.
    perf: float
    storage: float

    def to_proto(self) -> pb.Region:
        location = common_pb2.Location(display=self.city.display, latitude=self.city.latitude,
                                       longitude=self.city.longitude)
        return pb.Region(name=self.name, location=location, zones=list(self.zones))

    @cached_property
    def specs_response(self) -> pb.DescribeSpecsResponse:
        return pb.DescribeSpecsResponse(specs=[s.to_proto() for s in self.specs.values()])

    @cached_property
    def images_response(self) -> pb.DescribeImagesResponse:
        return pb.DescribeImagesResponse(images=[i.to_proto() for i in self.images.values()])


@dataclass
class ProviderCatalog:
    """One emulated provider and its regions."""

    name: str
    traits: ProviderTraits
    regions: dict[str, RegionCatalog] = field(default_factory=dict)

    def to_proto(self) -> pb.Provider:
        return pb.Provider(name=self.name, regions=list(self.regions))

    @cached_property
    def regions_response(self) -> pb.DescribeRegionsResponse:
        return pb.DescribeRegionsResponse(regions=[r.to_proto() for r in self.regions.values()])


def provider_names(seed: int, count: int) -> list[str]:
    """`count` readable names: the sky words in a seeded order, then numbered ones."""
    words = list(SKY_WORDS)
    stable_rng(seed, "provider-names").shuffle(words)
    return [words[i % len(words)] + (f"-{i // len(words) + 1}" if i >= len(words) else "")
            for i in range(count)]


def _traits(seed: int, provider: str) -> ProviderTraits:
    rng = stable_rng(seed, "traits", provider)
    return ProviderTraits(
        price=round(rng.uniform(0.80, 1.25), 3),
        perf=rng.uniform(0.75, 1.30),
        storage=rng.uniform(0.6, 1.6),
        generation=rng.randint(2, 7),
        scaling={f.name: rng.uniform(0.78, 0.97) for f in FAMILIES},
    )


def _specs(seed: int, provider: str, traits: ProviderTraits, region: str, region_price: float
           ) -> dict[str, SpecInfo]:
    rng = stable_rng(seed, "families", provider, region)
    specs: dict[str, SpecInfo] = {}
    for fam in FAMILIES:
        if rng.random() >= fam.presence:
            continue
        for size, vcpu, gpus in fam.sizes:
            name = f"{fam.code}{traits.generation}.{size}"
            price = (vcpu * fam.price_per_vcpu + gpus * GPU_PRICE_PER_HOUR) * traits.price * region_price
            specs[name] = SpecInfo(name=name, family=fam.name, vcpu=vcpu, memory_gib=vcpu * fam.gib_per_vcpu,
                                   architecture=fam.architecture, gpu_count=gpus,
                                   price_per_hour=round(price, 4))
    return specs


def _images(seed: int, provider: str, region: str) -> dict[str, ImageInfo]:
    rng = stable_rng(seed, "images", provider, region)
    images: dict[str, ImageInfo] = {}
    for os_name, version, size in OPERATING_SYSTEMS:
        build = f"2024{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        for arch in ARCHITECTURES:
            image_id = "img-" + stable_hex(seed, "image", provider, region, os_name, version, arch)
            images[image_id] = ImageInfo(id=image_id, name=f"{os_name}-{version}-{arch}-{build}", os=os_name,
                                         architecture=arch, size_gib=size)
    return images


def _region(seed: int, provider: str, traits: ProviderTraits, city: City) -> RegionCatalog:
    rng = stable_rng(seed, "region", provider, city.region)
    price = rng.uniform(0.90, 1.35)
    return RegionCatalog(
        provider=provider, name=city.region, city=city,
        zones=tuple(f"{city.region}-{z}" for z in "abc"),
        specs=_specs(seed, provider, traits, city.region, price),
        images=_images(seed, provider, city.region),
        perf=rng.uniform(0.90, 1.10), storage=rng.uniform(0.8, 1.2),
    )


class Catalog:
    """Every provider the emulator plays, built from `seed`."""

    def __init__(self, seed: int, providers: int) -> None:
        self.seed = seed
        self.providers: dict[str, ProviderCatalog] = {}
        for name in provider_names(seed, providers):
            traits = _traits(seed, name)
            prov = ProviderCatalog(name=name, traits=traits)
            count = stable_rng(seed, "region-count", name).randint(MIN_REGIONS, MAX_REGIONS)
            for city in stable_rng(seed, "cities", name).sample(CITIES, count):
                prov.regions[city.region] = _region(seed, name, traits, city)
            self.providers[name] = prov

    def provider(self, name: str) -> ProviderCatalog:
        """The provider called `name`, else NOT_FOUND naming it."""
        prov = self.providers.get(name)
        if prov is None:
            raise faults.invalid_region(f"provider {name!r} does not exist")
        return prov

    def region(self, provider: str, region: str) -> RegionCatalog:
        """One region of one provider, else NOT_FOUND naming what is missing."""
        found = self.provider(provider).regions.get(region)
        if found is None:
            raise faults.invalid_region(f"region {region!r} does not exist in provider {provider}")
        return found

    def regions(self) -> Iterator[RegionCatalog]:
        for prov in self.providers.values():
            yield from prov.regions.values()

    def region_count(self) -> int:
        return sum(len(p.regions) for p in self.providers.values())

    def truth(self, provider: str, region: str, spec: str) -> pb.SpecTruth:
        """The hidden true performance of `spec` in this region.

        Not proportional to price: it multiplies the provider's and the region's
        own performance factors (drawn apart from their price factors), the
        family's speed, multi-core scaling, and a per-spec noise.
        """
        reg = self.region(provider, region)
        info = reg.specs.get(spec)
        if info is None:
            raise faults.invalid_instance_type(spec, region)
        traits = self.providers[provider].traits
        fam = next(f for f in FAMILIES if f.name == info.family)
        rng = stable_rng(self.seed, "truth", provider, region, spec)
        single = 1000.0 * traits.perf * reg.perf * fam.single * rng.uniform(0.93, 1.07)
        multi = single * info.vcpu * traits.scaling[fam.name] * rng.uniform(0.97, 1.03)
        mem_read = 12.0 * fam.memory_bw * traits.perf ** 0.5 * min(info.vcpu, 16) ** 0.35 * rng.uniform(0.9, 1.1)
        disk_read = 180.0 * traits.storage * reg.storage * min(info.vcpu, 8) ** 0.3 * rng.uniform(0.9, 1.1)
        return pb.SpecTruth(
            cpu_single=round(single, 2), cpu_multi=round(multi, 2),
            mem_read=round(mem_read, 2), mem_write=round(mem_read * rng.uniform(0.65, 0.85), 2),
            disk_read=round(disk_read, 2), disk_write=round(disk_read * rng.uniform(0.6, 0.9), 2),
        )
