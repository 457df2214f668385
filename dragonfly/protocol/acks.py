"""Cumulative acknowledgements of metric batches: which seqs of one boot a collector stored.

An agent publishes its batches with the reply subject `_INBOX.{ns}.{mcis}.{vm}.acks` (its own
inbox, so the guard lets an answer go there); a collector answers every ack period with one
message per agent for everything it stored meanwhile: `{"boot": "...", "seqs": [[lo, hi], ...]}`,
inclusive ranges, so one message stands for many batches.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from dragonfly.protocol import wire


@dataclass(frozen=True)
class Ack:
    boot: str
    ranges: list[tuple[int, int]]

    def encode(self) -> bytes:
        return wire.dumps({"boot": self.boot, "seqs": self.ranges})

    @classmethod
    def decode(cls, data: bytes) -> Ack:
        body = wire.loads(data)
        ranges = [(int(lo), int(hi)) for lo, hi in body["seqs"]]
        return cls(str(body["boot"]), ranges)


def ranges_of(seqs: Collection[int]) -> list[tuple[int, int]]:
    """Sorted inclusive ranges covering exactly `seqs`."""
    if len(seqs) == 1:  # the common case: one batch per agent per write
        seq = next(iter(seqs))
        return [(seq, seq)]
    out: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out
