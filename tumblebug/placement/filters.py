"""Filters: each answers, for every row of the catalog at once, whether a spec may be chosen.

One concept per class; a filter whose part of the request is empty passes everything (returns None,
which costs nothing). Choose them per request by name; the default is all of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from tumblebug.placement.candidates import Bools, CandidateTable
from tumblebug.placement.plugins import Registry
from tumblebug.placement.requirements import Requirements


class Filter(ABC):
    """A yes/no test of every candidate against a request's `Requirements`."""

    name: ClassVar[str]

    def __init_subclass__(cls, name: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name:
            cls.name = name
            FILTERS.add(name, cls)

    @abstractmethod
    def mask(self, table: CandidateTable, req: Requirements) -> Bools | None:
        """True where a row passes; None when the request does not ask this filter anything."""

    def describe(self, req: Requirements) -> str:
        """What this filter asks of the request, in words (for explanations)."""
        return self.name


FILTERS: Registry[Filter] = Registry("filter", "cb.tumblebug.placement.filters")


def _between(values: np.ndarray, low: float, high: float) -> Bools | None:
    if not low and not high:
        return None
    out = np.ones(len(values), bool)
    if low:
        out &= values >= low
    if high:
        out &= values <= high
    return out


def _bounds(what: str, low: float, high: float) -> str:
    return " and ".join([*([f"{what} ≥ {low:g}"] if low else []), *([f"{what} ≤ {high:g}"] if high else [])])


class Vcpu(Filter, name="vcpu"):
    """vcpu_min ≤ vCPUs ≤ vcpu_max."""

    def mask(self, table: CandidateTable, req: Requirements) -> Bools | None:
        return _between(table.vcpu, req.vcpu_min, req.vcpu_max)

    def describe(self, req: Requirements) -> str:
        return _bounds("vCPU", req.vcpu_min, req.vcpu_max)


class Memory(Filter, name="memory"):
    """memory_gib_min ≤ memory ≤ memory_gib_max."""

    def mask(self, table: CandidateTable, req: Requirements) -> Bools | None:
        return _between(table.memory_gib, req.memory_gib_min, req.memory_gib_max)

    def describe(self, req: Requirements) -> str:
        return _bounds("memory GiB", req.memory_gib_min, req.memory_gib_max)


class Price(Filter, name="price"):
    """0 < price ≤ price_max: a spec whose price is unknown (0) cannot promise to stay under it."""

    def mask(self, table: CandidateTable, req: Requirements) -> Bools | None:
        if not req.price_max:
            return None
        return (table.price > 0) & (table.price <= req.price_max)

    def describe(self, req: Requirements) -> str:
        return f"price ≤ {req.price_max:g}/h"


def _member(codes: np.ndarray, wanted: list[int]) -> Bools:
    if len(wanted) == 1:
        return np.asarray(codes == wanted[0])
    return np.isin(codes, wanted)


class Provider(Filter, name="provider"):
    """The spec's provider is one of `providers`."""

    def mask(self, table: CandidateTable, req: Requirements) -> Bools | None:
        return _member(table.provider, table.providers.codes(req.providers)) if req.providers else None

    def describe(self, req: Requirements) -> str:
        return f"provider in {', '.join(req.providers)}"


class Region(Filter, name="region"):
    """The spec's region name, or its site `provider/region`, is one of `regions`."""

    def mask(self, table: CandidateTable, req: Requirements) -> Bools | None:
        if not req.regions:
            return None
        names = [r for r in req.regions if "/" not in r]
        sites = [r for r in req.regions if "/" in r]
        return _member(table.region, table.regions.codes(names)) | _member(table.site, table.sites.codes(sites))

    def describe(self, req: Requirements) -> str:
        return f"region in {', '.join(req.regions)}"


class Connection(Filter, name="connection"):
    """The spec is offered by one of `connections`."""

    def mask(self, table: CandidateTable, req: Requirements) -> Bools | None:
        return _member(table.connection, table.connections.codes(req.connections)) if req.connections else None

    def describe(self, req: Requirements) -> str:
        return f"connection in {', '.join(req.connections)}"


class Architecture(Filter, name="architecture"):
    """The spec's CPU architecture is one of `architectures`."""

    def mask(self, table: CandidateTable, req: Requirements) -> Bools | None:
        if not req.architectures:
            return None
        return _member(table.architecture, table.architectures.codes(req.architectures))

    def describe(self, req: Requirements) -> str:
        return f"architecture in {', '.join(req.architectures)}"


class MinPerformance(Filter, name="performance"):
    """Each (metric, least) of `min_performance` is met by a measured figure (or an estimate, when
    `estimates_ok`)."""

    def mask(self, table: CandidateTable, req: Requirements) -> Bools | None:
        if not req.min_performance:
            return None
        out = np.ones(len(table), bool)
        for metric, least in req.min_performance:
            col = table.metric(metric)
            out &= col.value >= least
            if not req.estimates_ok:
                out &= ~col.estimated
        return out

    def describe(self, req: Requirements) -> str:
        figures = ", ".join(f"{m} ≥ {v:g}" for m, v in req.min_performance)
        return f"measured {figures}" if not req.estimates_ok else figures


def passing(table: CandidateTable, req: Requirements, chosen: list[Filter]) -> Bools:
    """The rows every chosen filter passes."""
    out = np.ones(len(table), bool)
    for f in chosen:
        m = f.mask(table, req)
        if m is not None:
            out &= m
    return out
