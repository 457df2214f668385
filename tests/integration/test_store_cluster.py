"""The store on a real 3-member etcd cluster: it uses every member of CB_ETCD_ENDPOINTS, so
reads, writes, watches and leases (leader election) carry on when the member it was on dies.

Each test kills the member a store is on (the first: the store stays on one member until it goes
away) and starts it again at the end, so the next test finds three."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import pytest_asyncio

from cbapi.common.v1 import common_pb2
from services import errors
from services.store import Election, Store
from tests import servers

KV = common_pb2.KeyValue
T = TypeVar("T")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cluster(run_dir: Path) -> AsyncIterator[servers.EtcdCluster]:
    started = await servers.start_etcd_cluster(run_dir / f"etcd-cluster-{uuid.uuid4().hex[:6]}")
    yield started
    started.stop()


@contextlib.asynccontextmanager
async def first_member_down(cluster: servers.EtcdCluster) -> AsyncIterator[None]:
    """SIGKILL the first member (the one every new store is on), and start it again afterwards."""
    first = cluster.members[0]
    first.proc.kill()
    try:
        yield
    finally:
        await servers.restart(first, grpc_health=False)


async def retried(op: Callable[[], Awaitable[T]], refused: list[str], attempts: int = 40) -> T:
    """`op`, again after each Unavailable (the moment of the switch), counting them in `refused`."""
    for _ in range(attempts):
        try:
            return await op()
        except errors.Unavailable as err:
            refused.append(err.message)
            await asyncio.sleep(0.1)
    raise AssertionError(f"still unavailable after {attempts} attempts: {refused[-1]}")


def test_endpoints_are_all_used() -> None:
    """Every member of the setting is a target, not only the first (IPv4 members share one
    target gRPC fails over within; DNS names are one target each, rotated by the store)."""
    store = Store.from_endpoints("https://127.0.0.1:1,127.0.0.1:2, 127.0.0.1:3")
    assert store.target == "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3"
    named = Store.from_endpoints("etcd-0.etcd:2379,etcd-1.etcd:2379")
    assert named._targets == ["etcd-0.etcd:2379", "etcd-1.etcd:2379"]
    named._next_member("etcd-0.etcd:2379")
    assert named.target == "etcd-1.etcd:2379"


async def test_reads_and_writes_carry_on_when_the_member_dies(cluster: servers.EtcdCluster) -> None:
    store = Store.from_endpoints(cluster.endpoints, timeout=3.0)
    prefix = f"/cb/test/{uuid.uuid4().hex[:8]}/"
    await store.put(prefix + "before", KV(key="k", value="1"))
    refused: list[str] = []
    async with first_member_down(cluster):
        for i in range(20):
            await retried(lambda i=i: store.put(prefix + f"w{i}", KV(key="k", value=str(i))), refused)  # type: ignore[misc]
        items = await retried(lambda: store.list_all(prefix, KV), refused)
    assert len(items) == 21
    # At most the calls under way when the member died (and one election of a new raft leader).
    assert len(refused) <= 10, refused
    await store.close()


async def test_a_watch_follows_to_another_member(cluster: servers.EtcdCluster) -> None:
    prefix = f"/cb/test/{uuid.uuid4().hex[:8]}/"
    watcher = Store.from_endpoints(cluster.endpoints, timeout=3.0)
    # The writer is on the members that stay up.
    writer = Store.from_endpoints(",".join(m.address for m in cluster.members[1:]), timeout=3.0)
    start = await watcher.revision() + 1
    seen: list[str] = []

    async def follow() -> None:
        async for ev in watcher.watch(prefix, start):
            seen.append(ev.key)
            if len(seen) == 10:
                return

    task = asyncio.create_task(follow())
    refused: list[str] = []
    for i in range(5):
        await writer.put(prefix + f"a{i}", KV(key="k", value="v"))
    async with first_member_down(cluster):
        for i in range(5):
            await retried(lambda i=i: writer.put(prefix + f"b{i}", KV(key="k", value="v")), refused)  # type: ignore[misc]
        await asyncio.wait_for(task, timeout=20)
    # Every event once, in order, across the switch (the watch resumed at the next revision).
    assert seen == [prefix + f"a{i}" for i in range(5)] + [prefix + f"b{i}" for i in range(5)]
    await watcher.close()
    await writer.close()


async def test_the_leader_keeps_its_lease_when_its_member_dies(cluster: servers.EtcdCluster) -> None:
    service = f"cluster-{uuid.uuid4().hex[:6]}"
    store = Store.from_endpoints(cluster.endpoints, timeout=2.0)
    observer = Store.from_endpoints(",".join(m.address for m in cluster.members[1:]), timeout=2.0)
    election = Election(store, service, "one", ttl=3)
    terms: list[int] = []

    async def lead() -> None:
        terms.append(1)
        await asyncio.Event().wait()

    task = asyncio.create_task(election.run(lead))
    for _ in range(100):
        if election.is_leader:
            break
        await asyncio.sleep(0.05)
    assert election.is_leader
    async with first_member_down(cluster):
        # Three TTLs on the other members: the lease is kept alive through them.
        for _ in range(9):
            await asyncio.sleep(1.0)
            assert election.is_leader
        assert await Election(observer, service, "other").leader() == "one"
    assert terms == [1]  # one term: leadership was never lost and won again
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await store.close()
    await observer.close()


@pytest.mark.parametrize("bad", ["etcd-0:2379,127.0.0.1:2"])
def test_a_list_of_names_is_not_one_channel(bad: str) -> None:
    """channel() takes several IPv4 addresses; several DNS names are refused with what to do."""
    from services.rpc.client import target_of

    with pytest.raises(ValueError, match="one name that resolves to every replica"):
        target_of(bad)
