"""Estimates of performance for specs that no benchmark has measured yet.

Each metric scales with vCPUs by an exponent (cpu_multi uses every core: 1; the others are one
thread or one device: 0). A spec's figure is `unit × vcpu^exponent`, where `unit` is the median
unit of the *measured* specs of the same provider, else of all measured specs, else a reference
constant. So estimates improve as benchmarks arrive, and an estimate is always flagged: it orders
specs by size and provider, never by what only a benchmark can tell.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# Metric → (vCPU exponent, reference unit when nothing is measured). Units are the agent's
# (`BenchmarkResult`): operations per second for CPU, bytes per second for memory and disk.
SCALING: dict[str, tuple[float, float]] = {
    "cpu_single": (0.0, 1.0e6),
    "cpu_multi": (1.0, 0.9e6),
    "memory_read": (0.0, 10.0e9),
    "memory_write": (0.0, 7.0e9),
    "disk_read": (0.0, 150.0e6),
    "disk_write": (0.0, 100.0e6),
}
METRICS: tuple[str, ...] = tuple(SCALING)


def estimate(metric: str, measured: npt.NDArray[np.float64], vcpu: npt.NDArray[np.int64],
             provider: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """The estimate for every row (callers keep the measured values where there are some).

    `measured` holds NaN where a row has no measurement.
    """
    exponent, reference = SCALING[metric]
    size = np.maximum(vcpu, 1).astype(np.float64) ** exponent
    units = measured / size
    have = ~np.isnan(units)
    unit = np.full(len(vcpu), float(np.median(units[have])) if have.any() else reference)
    if have.any():
        for code in np.unique(provider[have]):
            same = provider == code
            unit[same] = float(np.median(units[same & have]))
    return unit * size
