"""What a NATS user may do, as the claims of its JWT."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Permissions:
    """What a user may publish and subscribe to; `respond` lets it answer requests it receives."""

    publish: Sequence[str] = ()
    subscribe: Sequence[str] = ()
    respond: bool = False
    unrestricted: bool = False

    def claims(self) -> dict[str, Any]:
        limits = {"subs": -1, "data": -1, "payload": -1}
        if self.unrestricted:
            return limits
        out: dict[str, Any] = {**limits, "pub": {"allow": list(self.publish)}, "sub": {"allow": list(self.subscribe)}}
        if self.respond:
            # Each received request may be answered once, within a minute.
            out["resp"] = {"max": 1, "ttl": 60_000_000_000}
        return out
