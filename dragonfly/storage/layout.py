"""Field layouts: the order in which a series stores the values of its fields.

Every `cpu` series of every VM has the same seven fields, so they share one layout object
instead of each keeping its own names; a series stores only floats, in layout order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, eq=False)
class Layout:
    """Field names in storage order, and where each one is."""

    names: tuple[str, ...]
    index: dict[str, int] = field(init=False, repr=False)
    width: int = field(init=False, repr=False)  # values per point; a plain field, read on every write

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {name: i for i, name in enumerate(self.names)})
        object.__setattr__(self, "width", len(self.names))


class Layouts:
    """Interns layouts, so series with the same fields in the same order share one."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, ...], Layout] = {}

    def get(self, names: Iterable[str]) -> Layout:
        key = tuple(names)
        layout = self._known.get(key)
        if layout is None:
            layout = self._known[key] = Layout(key)
        return layout

    def widen(self, layout: Layout, names: Iterable[str]) -> Layout:
        """`layout` with the names it lacks appended (existing positions stay, so stored rows
        only gain columns)."""
        extra = [name for name in dict.fromkeys(names) if name not in layout.index]
        return self.get(layout.names + tuple(extra)) if extra else layout

    def __len__(self) -> int:
        return len(self._known)
