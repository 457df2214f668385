"""The reconciler's VM record writes against a real etcd: many writers share transactions (group
commit), a lost race is written again from a fresh read, and its informer neither decodes nor
reports again the records it wrote itself (while it does report everyone else's)."""

from __future__ import annotations

import asyncio
import uuid

from cbapi.common.v1 import common_pb2 as common
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services.store import Informer, Store
from tests import servers
from tumblebug.mcis.actions import set_fields
from tumblebug.mcis.writes import GroupWriter


def _prefix() -> str:
    return f"/cb/test/{uuid.uuid4().hex[:8]}/vm/"


async def _records(store: Store, prefix: str, n: int) -> list[str]:
    keys = [f"{prefix}{i:03d}" for i in range(n)]
    await store.commit([(k, pb.McisVm(name=k.rsplit("/", 1)[1], status=common.CREATING)) for k in keys], [])
    return keys


def _decode(_key: str, raw: bytes) -> pb.McisVm:
    return pb.McisVm.FromString(raw)


async def _informer(store: Store, prefix: str, changed: list[str], own: set[str] | None = None) -> Informer:
    mine = own if own is not None else set()
    informer = Informer(store, prefix, _decode, changed.append, own=mine.__contains__)
    await informer.start()
    return informer


async def test_many_writers_share_few_transactions(etcd_process: servers.Server) -> None:
    store = Store("127.0.0.1", etcd_process.port)
    prefix = _prefix()
    keys = await _records(store, prefix, 60)
    changed: list[str] = []
    busy: set[str] = set()
    informer = await _informer(store, prefix, changed, busy)
    seen: dict[str, int] = {}
    writer = GroupWriter(store, lambda: informer, lambda k, v, rev: (informer.wrote(k, v, rev), seen.__setitem__(k, rev)))
    writer.busy = busy
    results = await asyncio.gather(*(writer.write(k, lambda v: set_fields(v, requested=True)) for k in keys))
    assert all(r is not None and r.requested and r.update_time.seconds for r in results)
    # One write alone, then everything that queued meanwhile together (a group holds up to 100).
    assert writer.transactions <= 3
    assert len(set(seen.values())) == writer.transactions
    for k in keys:
        got = await store.get(k, pb.McisVm)
        assert got is not None and got.value.requested and got.mod_revision == seen[k]
    # Two changes of one key in one group both land, in order.
    first, second = await asyncio.gather(writer.write(keys[0], lambda v: set_fields(v, error="a")),
                                         writer.write(keys[0], lambda v: set_fields(v, error=v.error + "b")))
    assert first is not None and second is not None and second.error == "ab"
    assert (await store.get(keys[0], pb.McisVm)).value.error == "ab"  # type: ignore[union-attr]
    await asyncio.sleep(0.3)
    assert changed == []  # every event was this process's own write: not reported again
    await informer.stop()
    await store.close()


async def test_a_lost_race_is_written_again_from_a_fresh_read(etcd_process: servers.Server) -> None:
    store, other = Store("127.0.0.1", etcd_process.port), Store("127.0.0.1", etcd_process.port)
    prefix = _prefix()
    keys = await _records(store, prefix, 3)
    informer = Informer(store, prefix, _decode, lambda _k: None)
    for k in keys:  # a cache that will fall behind: it is not following the watch
        got = await store.get(k, pb.McisVm)
        assert got is not None
        informer.wrote(k, got.value, got.mod_revision)
    await other.modify(keys[1], pb.McisVm, lambda v: set_fields(v, removing=True), "vm")
    writer = GroupWriter(store, lambda: informer, informer.wrote)

    def ask(v: pb.McisVm) -> pb.McisVm | None:
        return None if v.removing else set_fields(v, requested=True)

    results = await asyncio.gather(*(writer.write(k, ask) for k in keys))
    # The group lost (key 1 moved on); each change ran again on a fresh read: key 1 is left alone.
    assert [r is not None for r in results] == [True, False, True]
    fresh = [(await store.get(k, pb.McisVm)) for k in keys]
    assert [f.value.requested for f in fresh if f is not None] == [True, False, True]
    assert informer.cache[keys[1]].value.removing  # type: ignore[attr-defined]
    assert await writer.write(prefix + "gone", ask) is None
    await store.close()
    await other.close()


async def test_informer_reports_other_writers_and_counts_what_it_has_seen(etcd_process: servers.Server) -> None:
    store, other = Store("127.0.0.1", etcd_process.port), Store("127.0.0.1", etcd_process.port)
    prefix = _prefix()
    keys = await _records(store, prefix, 2)
    changed: list[str] = []
    busy: set[str] = set()
    informer = await _informer(store, prefix, changed, busy)
    assert informer.seen >= store.written > 0
    mine = pb.McisVm(name="mine", status=common.RUNNING)
    busy.add(keys[0])  # as a writer does: its event may come before the answer
    informer.wrote(keys[0], mine, await store.put(keys[0], mine))
    busy.discard(keys[0])
    theirs = await other.put(keys[1], pb.McisVm(name="theirs", status=common.RUNNING))
    assert other.written == theirs and store.written < theirs
    for _ in range(100):
        if informer.seen >= theirs:
            break
        await asyncio.sleep(0.02)
    assert informer.seen >= theirs
    assert changed == [keys[1]]  # the other writer's change only
    assert informer.cache[keys[1]].value.name == "theirs"  # type: ignore[attr-defined]
    await informer.stop()
    await store.close()
    await other.close()
