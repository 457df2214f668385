"""The state file, and the housekeeping loop that purges due records and saves.

Saving is atomic (a temporary file in the same directory, fsync, rename), so a
crash leaves either the previous state or the new one, never half of one. The
file is mode 0600: it holds VMs' user-data (agent seeds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as pb

from .store import Store

log = logging.getLogger("cloudtwin.persistence")


class StateFile:
    """A TwinState message kept in one file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> pb.TwinState | None:
        """The saved state, or None when there is no file yet."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return pb.TwinState.FromString(data)

    def write(self, data: bytes) -> None:
        """Replace the file's content atomically (blocking: call it from a thread)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        # Owner only: the state holds user-data with agent seeds and account secret digests.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a leftover temporary file keeps its old mode through O_CREAT
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        # The rename itself is durable only once the directory is synced.
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Housekeeper:
    """Once a second: remove records whose time is up, and save the state if it changed."""

    def __init__(self, store: Store, file: StateFile | None, snapshot: Callable[[], pb.TwinState],
                 interval: float = 1.0) -> None:
        self.store = store
        self.file = file
        self.snapshot = snapshot
        self.interval = interval
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cloudtwin-housekeeper")

    async def stop(self) -> None:
        """Finish the current round, then save one last time."""
        self._stopping.set()
        if self._task is not None:
            await self._task
        await self.save()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)
            try:
                self.store.sweep()
                await self.save()
            except Exception:  # keep the loop alive; the next round retries
                log.exception("housekeeping failed")

    async def save(self) -> None:
        """Write the state if it changed since the last save."""
        if self.file is None or not self.store.dirty:
            return
        # Snapshot on the loop (consistent), write in a thread (no blocking I/O on the loop).
        self.store.dirty = False
        data = self.snapshot().SerializeToString()
        try:
            await asyncio.to_thread(self.file.write, data)
        except OSError:
            self.store.dirty = True
            raise
        log.debug("state saved", extra={"bytes": len(data), "path": str(self.file.path)})
