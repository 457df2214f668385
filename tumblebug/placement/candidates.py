"""The catalog as placement sees it: one row per spec of one connection, held as numpy columns.

A `Candidate` is what tumblebug's catalog holds (`CatalogSpec` plus the region's coordinates).
Measured performance comes from benchmarks (`Measurement`, one per spec and metric); placement never
reads an emulator's hidden truth. A spec without a measurement gets an estimate, flagged as such
(see `estimates`). Columns make every filter a vectorised mask and every weigher a vector operation,
so a request over a million specs costs milliseconds; the table is built once per catalog refresh.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tumblebug.placement.estimates import METRICS, estimate

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Point:
    """A place on the Earth, in degrees."""

    latitude: float
    longitude: float


@dataclass(frozen=True, slots=True)
class Candidate:
    """A catalog spec offered by one connection (tumblebug's `CatalogSpec`, flattened)."""

    connection: str
    provider: str
    region: str
    name: str
    vcpu: int
    memory_gib: float
    price_per_hour: float
    architecture: str
    latitude: float = math.nan
    longitude: float = math.nan
    gpu_count: int = 0

    @property
    def id(self) -> str:
        """The catalog ID, `{connection}+{spec}`."""
        return f"{self.connection}+{self.name}"

    @property
    def site(self) -> str:
        """The region as a place: `{provider}/{region}` (two providers' same-named regions differ)."""
        return f"{self.provider}/{self.region}"


@dataclass(frozen=True, slots=True)
class Measurement:
    """What benchmarks measured for one spec and metric: mean, sample count, spread (standard
    deviation) and when (Unix seconds of the latest sample)."""

    spec_id: str
    metric: str
    mean: float
    samples: int = 1
    spread: float = 0.0
    measured_at: float = 0.0


@dataclass(frozen=True)
class PerfColumn:
    """One metric over every row: the measured mean or, where `estimated`, the estimate."""

    value: Floats
    samples: Ints
    spread: Floats
    measured_at: Floats
    estimated: Bools


@dataclass
class Vocabulary:
    """Names of a categorical column; rows hold their index."""

    names: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)

    def code(self, name: str) -> int:
        found = self.index.get(name)
        if found is None:
            found = self.index[name] = len(self.names)
            self.names.append(name)
        return found

    def codes(self, names: Iterable[str]) -> list[int]:
        """The codes of the names this vocabulary knows (unknown names match nothing)."""
        return [self.index[n] for n in names if n in self.index]


def _pool(found: list[Measurement]) -> tuple[float, int, float, float]:
    """Several measurements of one figure as one: sample-weighted mean, pooled spread."""
    n = sum(max(m.samples, 1) for m in found)
    mean = sum(m.mean * max(m.samples, 1) for m in found) / n
    var = sum(max(m.samples, 1) * (m.spread ** 2 + (m.mean - mean) ** 2) for m in found) / n
    return mean, n, math.sqrt(var), max(m.measured_at for m in found)


class CandidateTable:
    """Every candidate as columns. Build with `CandidateTable.build`; rows never change after."""

    def __init__(self, candidates: Sequence[Candidate], measurements: Iterable[Measurement] = ()) -> None:
        n = len(candidates)
        self.candidates = candidates
        self.ids = [c.id for c in candidates]
        self.row_of = {sid: i for i, sid in enumerate(self.ids)}
        self.connections, self.providers, self.regions = Vocabulary(), Vocabulary(), Vocabulary()
        self.sites, self.architectures = Vocabulary(), Vocabulary()
        self.connection = np.fromiter((self.connections.code(c.connection) for c in candidates), np.int64, n)
        self.provider = np.fromiter((self.providers.code(c.provider) for c in candidates), np.int64, n)
        self.region = np.fromiter((self.regions.code(c.region) for c in candidates), np.int64, n)
        self.site = np.fromiter((self.sites.code(c.site) for c in candidates), np.int64, n)
        self.architecture = np.fromiter((self.architectures.code(c.architecture) for c in candidates), np.int64, n)
        self.vcpu = np.fromiter((c.vcpu for c in candidates), np.int64, n)
        self.memory_gib = np.fromiter((c.memory_gib for c in candidates), np.float64, n)
        self.price = np.fromiter((c.price_per_hour for c in candidates), np.float64, n)
        # Coordinates per site (a region's place is one fact), rows reach them through `site`.
        self.site_lat = np.full(len(self.sites.names), math.nan)
        self.site_lon = np.full(len(self.sites.names), math.nan)
        first = np.unique(self.site, return_index=True)[1]
        for row in first:
            c = candidates[int(row)]
            self.site_lat[self.site[row]], self.site_lon[self.site[row]] = c.latitude, c.longitude
        self.site_provider = np.zeros(len(self.sites.names), np.int64)
        self.site_provider[self.site[first]] = self.provider[first]
        self.perf = self._perf(measurements)

    @classmethod
    def build(cls, candidates: Sequence[Candidate], measurements: Iterable[Measurement] = ()) -> CandidateTable:
        """The table of `candidates`, with the benchmarks' `measurements` (others are estimated)."""
        return cls(candidates, measurements)

    def __len__(self) -> int:
        return len(self.ids)

    def _perf(self, measurements: Iterable[Measurement]) -> dict[str, PerfColumn]:
        grouped: dict[tuple[str, int], list[Measurement]] = {}
        for m in measurements:
            row = self.row_of.get(m.spec_id)
            if row is not None and m.metric in METRICS and m.mean > 0:
                grouped.setdefault((m.metric, row), []).append(m)
        n = len(self)
        out: dict[str, PerfColumn] = {}
        for metric in METRICS:
            value, spread, when = np.full(n, math.nan), np.zeros(n), np.zeros(n)
            samples = np.zeros(n, np.int64)
            for (mname, row), found in grouped.items():
                if mname == metric:
                    value[row], samples[row], spread[row], when[row] = _pool(found)
            missing = np.isnan(value)
            value[missing] = estimate(metric, value, self.vcpu, self.provider)[missing]
            out[metric] = PerfColumn(value, samples, spread, when, missing)
        return out

    def metric(self, name: str) -> PerfColumn:
        """One performance metric's column, or PlacementError naming the known ones."""
        from tumblebug.placement.errors import PlacementError

        found = self.perf.get(name)
        if found is None:
            raise PlacementError("metric", f"{name!r} is not a benchmark metric; one of {', '.join(METRICS)}")
        return found

    def lat(self, rows: Ints) -> Floats:
        return self.site_lat[self.site[rows]]

    def lon(self, rows: Ints) -> Floats:
        return self.site_lon[self.site[rows]]
