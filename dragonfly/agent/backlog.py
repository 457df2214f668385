"""The bounded backlog of metric batches not acknowledged yet."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable


class Backlog:
    """Batches by seq, oldest first, each kept until a collector acknowledges it; when full the
    oldest is dropped and counted (the newest matter most).

    A batch is published as soon as it is due and stays here, marked with when it went: the
    acknowledgements are cumulative (a collector says which seqs it stored every ack period), so
    several batches are in flight at once. One not acknowledged within `resend_after` goes again.
    """

    def __init__(self, limit: int) -> None:
        # seq -> [batch, monotonic time it was last sent (0: not sent since it came or since a reconnect)]
        self._items: OrderedDict[int, list[object]] = OrderedDict()
        self.limit = max(1, limit)
        self.dropped = 0
        self._next = 0

    def push(self, item: bytes, seq: int | None = None) -> None:
        if seq is None:
            self._next += 1
            seq = self._next
        if len(self._items) >= self.limit:
            self._items.popitem(last=False)
            self.dropped += 1
        self._items[seq] = [item, 0.0]

    def peek(self) -> bytes | None:
        for item, _ in self._items.values():
            return item  # type: ignore[return-value]
        return None

    def pop(self) -> None:
        self._items.popitem(last=False)

    def due(self, now: float, window: int, resend_after: float) -> list[bytes]:
        """Among the `window` oldest batches, those never sent or sent over `resend_after` ago
        (marked sent now): the agent publishes them."""
        out: list[bytes] = []
        for n, entry in enumerate(self._items.values()):
            if n >= window:
                break
            if not entry[1] or now - entry[1] >= resend_after:  # type: ignore[operator]
                entry[1] = now
                out.append(entry[0])  # type: ignore[arg-type]
        return out

    def ack(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Forget the batches of these inclusive seq ranges; how many were here."""
        removed = 0
        for lo, hi in ranges:
            if hi - lo > len(self._items):
                for seq in [s for s in self._items if lo <= s <= hi]:
                    del self._items[seq]
                    removed += 1
                continue
            for seq in range(lo, hi + 1):
                if self._items.pop(seq, None) is not None:
                    removed += 1
        return removed

    def unsend(self) -> None:
        """Every batch counts as not sent (after a reconnect: what was in flight may be lost)."""
        for entry in self._items.values():
            entry[1] = 0.0

    def __len__(self) -> int:
        return len(self._items)
