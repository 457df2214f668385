"""Leader election on an etcd lease: one replica of a service runs its reconcilers.

The leader holds `/cb/{service}/leader` attached to its lease. When the lease
is lost (the process died, or could not reach etcd for a whole TTL) the key
disappears and another replica takes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from cbapi.common.v1 import common_pb2
from services import errors
from services.store.etcd import Lease, Store

log = logging.getLogger("election")


class Election:
    """Campaign for leadership and run `lead` while leader; campaign again when it ends."""

    def __init__(self, store: Store, service: str, identity: str, ttl: int = 5) -> None:
        self.store = store
        self.key = f"/cb/{service}/leader"
        self.identity = identity
        self.ttl = ttl
        self.is_leader = False

    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Forever: win the election, run `lead` until leadership is lost, repeat."""
        while True:
            try:
                lease = await self.store.grant_lease(self.ttl)
            except errors.Unavailable:
                await asyncio.sleep(1)
                continue
            try:
                if await self._try_acquire(lease):
                    await self._lead(lease, lead)
                else:
                    await self._wait_vacant(lease)
            except errors.Unavailable:
                await asyncio.sleep(0.5)
            finally:
                self.is_leader = False
                await lease.revoke()

    async def _try_acquire(self, lease: Lease) -> bool:
        record = common_pb2.KeyValue(key="leader", value=self.identity)
        try:
            await self.store.create(self.key, record, lease=lease)
        except errors.AlreadyExists:
            return False
        return True

    async def _lead(self, lease: Lease, lead: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.is_leader = True
        log.info("elected leader", extra={"key": self.key, "identity": self.identity})
        task = asyncio.create_task(lead())
        lost = asyncio.create_task(lease.lost.wait())
        try:
            await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (task, lost):
                t.cancel()
            for t in (task, lost):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        failure = task.exception() if task.done() and not task.cancelled() else None
        log.warning("leadership ended", extra={"key": self.key, "identity": self.identity,
                                               "error": repr(failure) if failure else ""},
                    exc_info=failure)
        if failure is not None:
            await asyncio.sleep(1.0)  # a leader that keeps failing must not spin

    async def _wait_vacant(self, lease: Lease) -> None:
        """Sleep until the leader key goes away (or a short poll period passes)."""
        rev = await self.store.revision()
        if await self.store.get(self.key, common_pb2.KeyValue) is None:
            return

        async def deleted() -> None:
            async for ev in self.store.watch(self.key, rev + 1):
                if ev.key == self.key and ev.value is None:
                    return

        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(deleted(), timeout=self.ttl)

    async def leader(self) -> str:
        """The identity of the current leader, or "" when there is none."""
        found = await self.store.get(self.key, common_pb2.KeyValue)
        return found.value.value if found else ""
