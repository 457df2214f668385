"""Owed revokes of agent credentials: kept in etcd while dragonfly cannot take them, retried until
it does, then dropped; a revoke dragonfly refuses for good is dropped rather than retried."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from cbapi.dragonfly.v1 import dragonfly_pb2 as dpb
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.store import Store
from tests import servers
from tumblebug import keyspace
from tumblebug.mcis import revocations
from tumblebug.monitoring import Monitoring


class FlakyDragonfly(Monitoring):
    """Dragonfly as tumblebug sees it: away for the first `away` revokes, then answering."""

    def __init__(self, away: int, refuse: set[str]) -> None:
        super().__init__("")
        self.away = away
        self.refuse = refuse
        self.revoked: list[tuple[str, str]] = []

    async def revoke_agent(self, request: dpb.RevokeAgentCredentialRequest) -> None:
        if request.vm in self.refuse:
            raise errors.InvalidArgument(f"no such VM name {request.vm!r}")
        if self.away > 0:
            self.away -= 1
            raise errors.Unavailable("dragonfly (127.0.0.1:1) is unavailable")
        self.revoked.append((request.vm, request.instance))


async def test_a_revoke_dragonfly_could_not_take_is_retried_until_it_does(etcd_process: servers.Server) -> None:
    store = Store("127.0.0.1", etcd_process.port)
    dragonfly = FlakyDragonfly(away=1, refuse={"bad-1"})
    owed = revocations.Revocations(store, dragonfly)
    ns = f"ns-{uuid.uuid4().hex[:6]}"
    await owed.owe(keyspace.vm(ns, "m", "g-1"), pb.McisVm(name="g-1", request_id="r1"))
    await owed.owe(keyspace.vm(ns, "m", "bad-1"), pb.McisVm(name="bad-1", request_id="r2"))
    loop = asyncio.create_task(owed.run())
    try:
        await asyncio.sleep(0.3)
        assert dragonfly.revoked == []
        assert await store.count(keyspace.revocation(ns, "m", "g-1", "r1")) == 1  # kept while dragonfly is away
        for _ in range(50):  # retried after 2 s of backoff
            if dragonfly.revoked:
                break
            await asyncio.sleep(0.1)
        assert dragonfly.revoked == [("g-1", "r1")]
        assert await store.count(f"{keyspace.REVOCATIONS}{ns}/") == 0
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await store.close()
