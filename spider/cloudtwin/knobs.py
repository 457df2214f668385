"""Behaviour knobs per provider/region: latencies, failure rate, quotas, API rate.

The effective knobs of a region are three layers, each overriding only the
fields it sets: the defaults from the settings, the start overrides
(`CB_CLOUDTWIN_KNOBS_JSON`), and the admin changes made with SetKnobs. Only the
admin layer is kept in the state file, so a restart with new settings takes the
new defaults while earlier SetKnobs calls still hold.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf import json_format

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as pb

from . import faults
from .catalog import Catalog

RegionKey = tuple[str, str]


@dataclass(frozen=True)
class LatencyDist:
    """Lognormal around a median: median * exp(sigma * N(0, 1))."""

    median_s: float
    sigma: float

    def sample(self, rng: random.Random) -> float:
        if self.median_s <= 0:
            return 0.0
        if self.sigma <= 0:
            return self.median_s
        return self.median_s * math.exp(self.sigma * rng.gauss(0.0, 1.0))


@dataclass(frozen=True)
class KnobValues:
    """The knobs in force for one region, every field known."""

    create_latency: LatencyDist
    boot_latency: LatencyDist
    action_latency: LatencyDist
    failure_rate: float
    quota_vms: int
    quota_vcpus: int
    api_rate: float
    api_burst: int

    def to_proto(self) -> pb.Knobs:
        def lat(d: LatencyDist) -> pb.Latency:
            return pb.Latency(median_s=d.median_s, sigma=d.sigma)

        return pb.Knobs(create_latency=lat(self.create_latency), boot_latency=lat(self.boot_latency),
                        action_latency=lat(self.action_latency), failure_rate=self.failure_rate,
                        quota_vms=self.quota_vms, quota_vcpus=self.quota_vcpus, api_rate=self.api_rate,
                        api_burst=self.api_burst)

    @staticmethod
    def from_proto(k: pb.Knobs) -> KnobValues:
        """From a Knobs message that has every field set."""
        def lat(m: pb.Latency) -> LatencyDist:
            return LatencyDist(m.median_s, m.sigma)

        return KnobValues(create_latency=lat(k.create_latency), boot_latency=lat(k.boot_latency),
                          action_latency=lat(k.action_latency), failure_rate=k.failure_rate,
                          quota_vms=k.quota_vms, quota_vcpus=k.quota_vcpus, api_rate=k.api_rate,
                          api_burst=k.api_burst)


def overlay(base: pb.Knobs, top: pb.Knobs) -> None:
    """Copy into `base` the fields `top` sets; a latency is replaced whole, not merged."""
    for fd, value in top.ListFields():
        if fd.message_type is not None:
            getattr(base, fd.name).CopyFrom(value)
        else:
            setattr(base, fd.name, value)


def validate(k: pb.Knobs) -> None:
    """Reject values no cloud could have."""
    for name in ("create_latency", "boot_latency", "action_latency"):
        if k.HasField(name):
            lat = getattr(k, name)
            if not (lat.median_s >= 0 and lat.sigma >= 0 and math.isfinite(lat.median_s + lat.sigma)):
                raise faults.invalid_parameter(f"knobs.{name}", "median_s and sigma must be >= 0")
    if k.HasField("failure_rate") and not 0.0 <= k.failure_rate <= 1.0:
        raise faults.invalid_parameter("knobs.failure_rate", "must be within [0, 1]")
    for name in ("quota_vms", "quota_vcpus", "api_burst"):
        if k.HasField(name) and getattr(k, name) < 0:
            raise faults.invalid_parameter(f"knobs.{name}", "must be >= 0")
    if k.HasField("api_rate") and not (k.api_rate >= 0 and math.isfinite(k.api_rate)):
        raise faults.invalid_parameter("knobs.api_rate", "must be >= 0")


def parse_entries(text: str) -> list[pb.KnobsEntry]:
    """The start overrides: a JSON list of KnobsEntry objects (or a single one)."""
    if not text.strip():
        return []
    data = json.loads(text)
    items = data if isinstance(data, list) else [data]
    return [json_format.ParseDict(item, pb.KnobsEntry()) for item in items]


class KnobTable:
    """Effective knobs of every region, with the admin layer kept for persistence."""

    def __init__(self, catalog: Catalog, defaults: pb.Knobs, start: Iterable[pb.KnobsEntry] = ()) -> None:
        self._catalog = catalog
        self._defaults = defaults
        self._start: dict[RegionKey, pb.Knobs] = {}
        self._admin: dict[RegionKey, pb.Knobs] = {}
        self._effective: dict[RegionKey, KnobValues] = {}
        for entry in start:
            validate(entry.knobs)
            for key in self.scope(entry.provider, entry.region):
                overlay(self._start.setdefault(key, pb.Knobs()), entry.knobs)
        for key in self._all_keys():
            self._refresh(key)

    def _all_keys(self) -> list[RegionKey]:
        return [(r.provider, r.name) for r in self._catalog.regions()]

    def scope(self, provider: str, region: str) -> list[RegionKey]:
        """The regions a (provider, region) pair names; empty means every one."""
        if provider:
            self._catalog.provider(provider)
        keys = [k for k in self._all_keys() if (not provider or k[0] == provider) and (not region or k[1] == region)]
        if not keys:
            raise faults.invalid_region(f"region {region!r} does not exist" + (f" in provider {provider}"
                                                                               if provider else ""))
        return keys

    def _refresh(self, key: RegionKey) -> None:
        knobs = pb.Knobs()
        knobs.CopyFrom(self._defaults)
        for layer in (self._start, self._admin):
            if key in layer:
                overlay(knobs, layer[key])
        self._effective[key] = KnobValues.from_proto(knobs)

    def get(self, provider: str, region: str) -> KnobValues:
        """The knobs in force in one region (which must exist)."""
        found = self._effective.get((provider, region))
        if found is None:
            self._catalog.region(provider, region)  # raises NOT_FOUND naming what is missing
            raise AssertionError("every catalog region has knobs")
        return found

    def defaults(self) -> KnobValues:
        return KnobValues.from_proto(self._defaults)

    def set(self, provider: str, region: str, knobs: pb.Knobs) -> list[RegionKey]:
        """Admin change of the fields `knobs` sets, in every region the scope names."""
        validate(knobs)
        keys = self.scope(provider, region)
        for key in keys:
            overlay(self._admin.setdefault(key, pb.Knobs()), knobs)
            self._refresh(key)
        return keys

    def admin_entries(self) -> list[pb.KnobsEntry]:
        """The admin layer, for the state file."""
        return [pb.KnobsEntry(provider=p, region=r, knobs=k) for (p, r), k in self._admin.items()]

    def load_admin(self, entries: Iterable[pb.KnobsEntry]) -> None:
        """Restore the admin layer; entries of regions the catalog no longer has are dropped."""
        for entry in entries:
            key = (entry.provider, entry.region)
            if key in self._effective:
                overlay(self._admin.setdefault(key, pb.Knobs()), entry.knobs)
                self._refresh(key)
