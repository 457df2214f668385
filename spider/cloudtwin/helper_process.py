"""A helper process CloudTwin orders over stdin: guest agents (`dragonfly.agent.guests`) and SSH
servers (`spider.cloudtwin.sshd`) run in helpers, so their work stays off the emulator's loop.

Orders are JSON lines: `order` queues one, `flush` sends what is queued. Closing stdin is the
order to stop everything and exit; a helper that does not is killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path


class HelperProcess:
    """One helper process: `python -m {module}`, its output appended to `log_path`."""

    def __init__(self, module: str, log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.module = module
        self.log_path = log_path
        self.env = dict(env or {})
        self.proc: asyncio.subprocess.Process | None = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", self.module, stdin=asyncio.subprocess.PIPE, stdout=out,
                stderr=asyncio.subprocess.STDOUT, env={**os.environ, **self.env})

    def order(self, order: dict[str, object]) -> None:
        """Queue an order; `flush` sends what is queued."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(order).encode() + b"\n")

    async def flush(self) -> None:
        if self.proc is not None and self.proc.stdin is not None and self.alive():
            await self.proc.stdin.drain()

    async def stop(self, timeout: float = 10.0) -> None:
        """Close its stdin: it stops what it runs and exits; killed if it does not."""
        if self.proc is None or self.proc.returncode is not None:
            return
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
