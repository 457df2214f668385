"""Benchmarks of a CloudTwin guest: the emulator's true performance with noise.

A twin VM shares this machine with thousands of others, so measuring would say
nothing about its spec. Instead its values are the hidden true performance of
its spec in its region (handed over by the emulator when the guest boots), each
times a noise of a few percent, so a placement loop has something to learn.
A benchmark still takes its time share, as on a host, so callers' deadlines
behave the same.

RTT to another running twin VM follows from the distance between the two
regions (light in fibre, on a path longer than the great circle); any other
target is measured for real (TCP connect), as a host does.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from dragonfly.agent.benchmarks import FIELDS, BenchmarkError, RttResult, Target
from dragonfly.agent.hostbench import rtt_all
from dragonfly.protocol.config import TwinPerf
from services.geo import haversine_km

# Relative noise: normal with this deviation, cut at `NOISE_CAP` either way.
NOISE_SD = 0.02
NOISE_CAP = 0.06
# Round trip: a fixed cost (same region) plus distance at two thirds of the speed of light in
# fibre over a path 1.5 times the great circle: 1.5 × 2 / 200 km per ms.
RTT_BASE_MS = 0.4
RTT_MS_PER_KM = 0.015


def rtt_model_ms(distance_km: float) -> float:
    """The modelled round trip over `distance_km` of great circle."""
    return RTT_BASE_MS + RTT_MS_PER_KM * distance_km


def noisy(value: float, rng: random.Random) -> float:
    """`value` times a noise of a few percent."""
    return value * (1.0 + max(-NOISE_CAP, min(NOISE_CAP, rng.gauss(0.0, NOISE_SD))))


@dataclass
class Peers:
    """Where every running twin VM is: IP → (latitude, longitude) of its region.

    One per guest helper process, kept current by the emulator's orders and shared by its guests.
    """

    places: dict[str, tuple[float, float]] = field(default_factory=dict)

    def update(self, put: dict[str, Sequence[float]], drop: Sequence[str]) -> None:
        for ip in drop:
            self.places.pop(ip, None)
        for ip, (lat, lon) in put.items():
            self.places[ip] = (float(lat), float(lon))


class TwinBench:
    """A CloudTwin guest's benchmarks, from its spec's true performance and its region's place."""

    kind = "twin"

    def __init__(self, vcpu: int, perf: TwinPerf | None, latitude: float, longitude: float, peers: Peers,
                 rng: random.Random | None = None) -> None:
        self.vcpu = vcpu
        self.perf = perf
        self.place = (latitude, longitude)
        self.peers = peers
        self.rng = rng or random.Random()

    @property
    def cpu_count(self) -> int:
        return self.vcpu

    async def measure(self, name: str, seconds: float) -> float:
        if self.perf is None:
            raise BenchmarkError("the emulator knows no true performance for this VM's spec")
        await asyncio.sleep(seconds)
        true_value: float = getattr(self.perf, FIELDS[name])
        return noisy(true_value, self.rng)

    def modelled_rtt(self, target: Target) -> RttResult | None:
        """The round trip to a running twin VM, or None when the target is not one."""
        place = self.peers.places.get(target.host)
        if place is None:
            return None
        ms = noisy(rtt_model_ms(haversine_km(*self.place, *place)), self.rng)
        return RttResult(str(target), rtt_ms=round(ms, 3), samples=1)

    async def rtt(self, targets: Sequence[Target], seconds: float) -> list[RttResult]:
        modelled = [self.modelled_rtt(t) for t in targets]
        real = iter(await rtt_all([t for t, m in zip(targets, modelled, strict=True) if m is None], seconds))
        results = [m if m is not None else next(real) for m in modelled]
        # The modelled trips take their time too (a few samples' worth, within the share).
        longest = max((r.rtt_ms for r in results if r.samples), default=0.0)
        await asyncio.sleep(min(seconds, 3 * longest / 1000.0))
        return results

    def cleanup(self) -> None:
        """Nothing is written."""
