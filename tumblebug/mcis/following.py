"""Following an MCIS: its record as it changes (WatchMcis), and waiting until it settles (`?wait=true`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.store import Store
from tumblebug import keyspace


class McisFollowing:
    """WatchMcis and the wait of requests that ask to wait."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def watch(self, ns: str, name: str) -> AsyncIterator[pb.Mcis]:
        """The MCIS now, then each new version of its record; ends when it is deleted."""
        key = keyspace.mcis(ns, name)
        current = await self.store.must_get(key, pb.Mcis, f"MCIS {name!r} in namespace {ns!r}")
        yield current.value
        # The one key: a prefix watch of it would bring every event of its VM records too.
        async for ev in self.store.watch(key, current.mod_revision + 1, exact=True):
            if ev.value is None:
                return
            yield pb.Mcis.FromString(ev.value)

    async def wait(self, ns: str, name: str, generation: int, timeout: float) -> pb.Mcis:
        """Until the reconciler acted on `generation` and no VM is on its way anywhere."""
        deadline = time.monotonic() + timeout
        last = pb.Mcis()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.1)):
                async for mcis in self.watch(ns, name):
                    last = mcis
                    if mcis.observed_generation >= generation and mcis.target_action == pb.ACTION_NONE:
                        return mcis
                return last  # deleted
        raise errors.DeadlineExceeded(f"MCIS {name!r} did not settle within {timeout:.0f}s: {last.status}")

