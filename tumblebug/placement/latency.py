"""Distances and round-trip times between places, vectorised over sites.

`RttMatrix` holds what benchmarks measured between sites ("provider/region"). A pair with no
measurement is estimated from its great-circle distance — light in fibre (200 km/ms) over a path
1.5 times the great circle, plus 2 ms — and flagged as an estimate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.geo import EARTH_RADIUS_KM

RTT_BASE_MS = 2.0
RTT_MS_PER_KM = 1.5 * 2 / 200.0


def haversine_km(lat1: npt.ArrayLike, lon1: npt.ArrayLike, lat2: npt.ArrayLike, lon2: npt.ArrayLike
                 ) -> npt.NDArray[np.float64]:
    """Great-circle distances in km, broadcast over numpy arrays of degrees."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(h))), dtype=np.float64)


def rtt_estimate_ms(distance_km: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The modelled RTT over a great-circle distance."""
    return RTT_BASE_MS + RTT_MS_PER_KM * distance_km


@dataclass(frozen=True, slots=True)
class RttMeasurement:
    """The measured RTT between two sites (symmetric): mean ms, samples, when (Unix seconds)."""

    a: str
    b: str
    rtt_ms: float
    samples: int = 1
    measured_at: float = 0.0


class RttMatrix:
    """Measured RTTs between sites; `between` fills the gaps with estimates."""

    def __init__(self, measurements: Iterable[RttMeasurement] = ()) -> None:
        self.pairs: dict[tuple[str, str], RttMeasurement] = {}
        for m in measurements:
            self.pairs[(m.a, m.b)] = self.pairs[(m.b, m.a)] = m

    def between(self, sites: Sequence[str], lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64]
                ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """The sites × sites RTT matrix (ms) and where it is an estimate. A site's RTT to itself is
        0 and measured; a pair without a measurement or coordinates is estimated (NaN if no
        coordinates either)."""
        ms = rtt_estimate_ms(haversine_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :]))
        estimated = np.ones(ms.shape, bool)
        index = {s: i for i, s in enumerate(sites)}
        for (a, b), m in self.pairs.items():
            i, j = index.get(a), index.get(b)
            if i is not None and j is not None:
                ms[i, j], estimated[i, j] = m.rtt_ms, False
        np.fill_diagonal(ms, 0.0)
        np.fill_diagonal(estimated, False)
        return ms, estimated

    def from_sources(self, sources: Sequence[str], sites: Sequence[str], lat: npt.NDArray[np.float64],
                     lon: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """RTT (sources × sites) from named sites that need not be in `sites` (a source unknown to
        both the matrix and the catalog has no coordinates: its RTTs are NaN)."""
        index = {s: i for i, s in enumerate(sites)}
        ms = np.full((len(sources), len(sites)), np.nan)
        estimated = np.ones(ms.shape, bool)
        for k, src in enumerate(sources):
            i = index.get(src)
            if i is not None:
                ms[k] = rtt_estimate_ms(haversine_km(lat[i], lon[i], lat, lon))
                ms[k, i] = 0.0
                estimated[k, i] = False
            for j, site in enumerate(sites):
                m = self.pairs.get((src, site))
                if m is not None:
                    ms[k, j], estimated[k, j] = m.rtt_ms, False
        return ms, estimated
