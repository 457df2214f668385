"""What a request asks of a spec (filters read it) and how to weigh (weighers read it).

Zero or empty means "not asked", as in proto3, so a request message maps onto these field by field.
"""

from __future__ import annotations

from dataclasses import dataclass

from tumblebug.placement.candidates import Point


@dataclass(frozen=True)
class Requirements:
    """Bounds on a spec. `regions` entries match a region name ("kr-seoul") or a site
    ("aurora/kr-seoul"). `min_performance` is (metric, least value) pairs over *measured* figures,
    unless `estimates_ok` lets estimates pass too."""

    vcpu_min: int = 0
    vcpu_max: int = 0
    memory_gib_min: float = 0.0
    memory_gib_max: float = 0.0
    price_max: float = 0.0
    providers: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    connections: tuple[str, ...] = ()
    architectures: tuple[str, ...] = ()
    min_performance: tuple[tuple[str, float], ...] = ()
    estimates_ok: bool = False


@dataclass(frozen=True)
class WeighOptions:
    """What the weighers need besides the catalog.

    metric: the performance metric the performance weighers use.
    points: places the location weigher measures to (one: nearest wins; several: fairness, the
      farthest of them decides).
    rtt_from: sites ("provider/region") the latency weigher measures RTT from; `rtt_points` adds
      places without a site (their RTT is estimated from distance). Several sources: the worst RTT
      decides, as for location.
    """

    metric: str = "cpu_multi"
    points: tuple[Point, ...] = ()
    rtt_from: tuple[str, ...] = ()
    rtt_points: tuple[Point, ...] = ()
