"""Command output kept up to a limit: the agent's commands and tumblebug's SSH commands answer alike."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class Capped:
    """The first `limit` bytes of a stream, and whether there was more."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if len(chunk) > room:
            self.truncated = True
        self.data += chunk[:max(0, room)]

    async def drain(self, stream: asyncio.StreamReader) -> None:
        """Read `stream` to its end, keeping what fits."""
        while chunk := await stream.read(65536):
            self.add(chunk)

    def text(self) -> str:
        return self.data.decode(errors="replace")
