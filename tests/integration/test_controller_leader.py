"""The controller runtime syncs only in the elected leader, and hands over when the leader goes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping

from services.controller import Controller
from services.store import Election, Store
from tests import servers


class Keys:
    """An informer stand-in holding a fixed set of keys."""

    def __init__(self, keys: list[str]) -> None:
        self._cache = dict.fromkeys(keys, object())

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    @property
    def cache(self) -> Mapping[str, object]:
        return self._cache


async def test_only_the_leader_syncs_and_the_other_takes_over(etcd_process: servers.Server) -> None:
    stores = [Store("127.0.0.1", etcd_process.port) for _ in range(2)]
    service = f"test-ctl-{uuid.uuid4().hex[:6]}"
    synced: dict[str, list[str]] = {"r0": [], "r1": []}

    def replica(identity: str) -> tuple[Controller[str], Election]:
        async def sync(key: str) -> None:
            synced[identity].append(key)

        return Controller(identity, sync, lambda k: k, workers=2), Election(stores[int(identity[1])], service,
                                                                          identity, ttl=2)

    replicas = [replica(f"r{i}") for i in range(2)]
    tasks = [asyncio.create_task(c.run_as_leader(e, lambda: [Keys(["a", "b"])])) for c, e in replicas]
    for _ in range(100):
        if any(synced.values()):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    leaders = [name for name, keys in synced.items() if keys]
    assert len(leaders) == 1 and sorted(synced[leaders[0]]) == ["a", "b"]
    first = int(leaders[0][1])
    assert replicas[first][1].is_leader and not replicas[1 - first][1].is_leader
    # The leader dies without a word: within a TTL the other replica leads, lists and syncs.
    tasks[first].cancel()
    await asyncio.gather(tasks[first], return_exceptions=True)
    other = f"r{1 - first}"
    for _ in range(100):
        if synced[other]:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.2)
    assert sorted(synced[other]) == ["a", "b"]
    tasks[1 - first].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for s in stores:
        await s.close()
