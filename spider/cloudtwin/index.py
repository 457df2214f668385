"""Per-scope index of records in creation order, with cheap pages."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

# How many candidates one pass of `page` copies out of the index.
_CHUNK = 256


class Bucket(Generic[T]):
    """Items of one scope keyed by their sequence number, in ascending order.

    Sequence numbers only grow, so adding is an append; removal is a bisect and
    a small memmove. A page starts right after the last sequence number the
    previous page returned, so records removed between pages do not shift it.
    """

    def __init__(self) -> None:
        self._seqs: list[int] = []
        self._items: dict[int, T] = {}

    def __len__(self) -> int:
        return len(self._items)

    def add(self, seq: int, item: T) -> None:
        if self._seqs and seq < self._seqs[-1]:
            bisect.insort(self._seqs, seq)
        else:
            self._seqs.append(seq)
        self._items[seq] = item

    def remove(self, seq: int) -> None:
        if self._items.pop(seq, None) is None:
            return
        i = bisect.bisect_left(self._seqs, seq)
        del self._seqs[i]

    def values(self) -> list[T]:
        return list(self._items.values())

    def page(self, after: int, limit: int, accept: Callable[[T], bool]) -> tuple[list[tuple[int, T]], bool]:
        """Up to `limit` accepted items with sequence numbers above `after`, and
        whether another accepted item follows them. `accept` may remove items."""
        out: list[tuple[int, T]] = []
        cursor = after
        while True:
            start = bisect.bisect_right(self._seqs, cursor)
            chunk = self._seqs[start:start + _CHUNK]
            if not chunk:
                return out, False
            for seq in chunk:
                cursor = seq
                item = self._items.get(seq)
                if item is None or not accept(item):
                    continue
                if len(out) == limit:
                    return out, True
                out.append((seq, item))
