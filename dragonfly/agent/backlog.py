"""The bounded backlog of metric batches nobody has taken yet."""

from __future__ import annotations

from collections import deque


class Backlog:
    """Oldest first; when full, the oldest batch is dropped and counted (the newest matter most)."""

    def __init__(self, limit: int) -> None:
        self._items: deque[bytes] = deque()
        self.limit = max(1, limit)
        self.dropped = 0

    def push(self, item: bytes) -> None:
        if len(self._items) >= self.limit:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)

    def peek(self) -> bytes | None:
        return self._items[0] if self._items else None

    def pop(self) -> None:
        self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)
