"""Plug-in registries: filters and weighers are classes found by name, chosen per request.

A class registers itself by defining it with a `name` (`class Vcpu(Filter, name="vcpu")`), so a new
filter is one small class in any imported module; `load_entry_points` also takes classes that other
distributions ship under an entry-point group, as Nova's scheduler does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from tumblebug.placement.errors import PlacementError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name → plug-in class for one kind of plug-in (`kind` names it in errors)."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._classes: dict[str, type[T]] = {}

    def add(self, name: str, cls: type[T]) -> None:
        if name in self._classes and self._classes[name] is not cls:
            raise ValueError(f"two {self.kind}s are called {name!r}")
        self._classes[name] = cls

    def names(self) -> list[str]:
        return sorted(self._classes)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str, field: str) -> type[T]:
        """The class called `name`, else PlacementError on `field` listing the known names."""
        found = self._classes.get(name)
        if found is None:
            raise PlacementError(field, f"no {self.kind} called {name!r}; known: {', '.join(self.names())}")
        return found

    def choose(self, names: Iterable[str], field: str) -> list[T]:
        """Instances of the named plug-ins, in order, each once."""
        seen: dict[str, T] = {}
        for name in names:
            if name not in seen:
                seen[name] = self.get(name, field)()
        return list(seen.values())

    def load_entry_points(self) -> None:
        """Register the classes installed under this registry's entry-point group."""
        for ep in entry_points(group=self.group):
            self.add(ep.name, ep.load())
