"""The etcd store against a real etcd: records, compare-and-swap, pages, watches,
leases, leader election, and surviving an etcd restart."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from cbapi.common.v1 import common_pb2
from services import errors
from services.store import Election, Store
from tests import servers

KV = common_pb2.KeyValue


def _prefix() -> str:
    return f"/cb/test/{uuid.uuid4().hex[:8]}/"


async def test_create_get_update_delete(etcd_process: servers.Server) -> None:
    store = Store("127.0.0.1", etcd_process.port)
    key = _prefix() + "a"
    rev = await store.create(key, KV(key="a", value="1"))
    got = await store.get(key, KV)
    assert got is not None and got.value.value == "1" and got.mod_revision == rev
    with pytest.raises(errors.AlreadyExists):
        await store.create(key, KV(key="a", value="2"))
    rev2 = await store.update(key, KV(key="a", value="2"), rev)
    with pytest.raises(errors.Aborted):
        await store.update(key, KV(key="a", value="3"), rev)  # stale revision loses
    assert (await store.get(key, KV)).value.value == "2"  # type: ignore[union-attr]
    with pytest.raises(errors.Aborted):
        await store.delete(key, rev)
    assert await store.delete(key, rev2)
    assert await store.get(key, KV) is None
    await store.close()


async def test_modify_under_contention_loses_no_update(etcd_process: servers.Server) -> None:
    store = Store("127.0.0.1", etcd_process.port)
    key = _prefix() + "counter"
    await store.create(key, KV(key="n", value="0"))

    def bump(kv: KV) -> KV:
        kv.value = str(int(kv.value) + 1)
        return kv

    await asyncio.gather(*(store.modify(key, KV, bump, "counter", attempts=200) for _ in range(40)))
    assert (await store.get(key, KV)).value.value == "40"  # type: ignore[union-attr]
    await store.close()


async def test_many_puts_and_reads_in_one_transaction(etcd_process: servers.Server) -> None:
    store = Store("127.0.0.1", etcd_process.port)
    prefix = _prefix()
    await store.put(prefix + "config", KV(key="config", value="30"))
    puts = [(f"{prefix}agent-{i:03d}", KV(key=f"agent-{i}", value="up")) for i in range(100)]
    revision, found = await store.put_and_get(puts, [prefix + "config", prefix + "absent"], KV)
    assert list(found) == [prefix + "config"] and found[prefix + "config"].value.value == "30"
    written = await store.list_all(prefix + "agent-", KV)
    assert len(written) == 100 and {v.mod_revision for v in written} == {revision}  # one revision for all
    with pytest.raises(errors.InvalidArgument):
        await store.put_and_get(puts + puts[:20], [prefix + "config"] * 10, KV)
    await store.close()


async def test_create_and_read_in_one_transaction(etcd_process: servers.Server) -> None:
    """A new record and the reads of other keys in one round trip; a taken key writes nothing and
    reads the record that holds it."""
    store = Store("127.0.0.1", etcd_process.port)
    prefix = _prefix()
    ref_rev = await store.put(prefix + "ref", KV(key="ref", value="ready"))
    made = await store.create_and_read(prefix + "vm", KV(key="vm", value="first"), [prefix + "ref", prefix + "absent"])
    assert made.created and made.read == {prefix + "ref": (KV(key="ref", value="ready").SerializeToString(), ref_rev),
                                          prefix + "absent": None}
    again = await store.create_and_read(prefix + "vm", KV(key="vm", value="second"), [prefix + "ref"])
    assert not again.created and set(again.read) == {prefix + "vm", prefix + "ref"}
    held = again.read[prefix + "vm"]
    assert held is not None and KV.FromString(held[0]).value == "first" and held[1] == made.revision
    assert (await store.must_get(prefix + "vm", KV, "vm")).value.value == "first"  # nothing written over it
    await store.close()


async def test_pages_cover_every_record_once(etcd_process: servers.Server) -> None:
    store = Store("127.0.0.1", etcd_process.port)
    prefix = _prefix()
    for i in range(25):
        await store.put(f"{prefix}{i:03d}", KV(key=str(i)))
    await store.put(prefix.rstrip("/") + "x/outside", KV(key="no"))
    seen, after = [], ""
    while True:
        page = await store.page(prefix, KV, limit=7, start_after=after)
        seen += [i.value.key for i in page.items]
        if not page.next_key:
            break
        after = page.next_key
    assert seen == [str(i) for i in range(25)]
    assert await store.count(prefix) == 25
    await store.close()


async def test_watch_sees_puts_and_deletes(etcd_process: servers.Server) -> None:
    store = Store("127.0.0.1", etcd_process.port)
    prefix = _prefix()
    start = await store.revision() + 1
    await store.put(prefix + "a", KV(key="a"))
    await store.delete(prefix + "a")
    events = []
    async for ev in store.watch(prefix, start):
        events.append((ev.key, ev.value is None))
        if len(events) == 2:
            break
    assert events == [(prefix + "a", False), (prefix + "a", True)]
    await store.close()


async def test_an_exact_watch_sees_its_key_only_and_writes_are_counted(etcd_process: servers.Server) -> None:
    store = Store("127.0.0.1", etcd_process.port)
    key = _prefix() + "mcis"
    start = await store.revision() + 1
    await store.put(key + "/vm/1", KV(key="child"))  # under the key as a prefix: not its event
    last = await store.put(key, KV(key="self"))
    assert store.written == last  # the newest revision this client wrote (read-your-writes floor)
    async for ev in store.watch(key, start, exact=True):
        assert (ev.key, ev.revision) == (key, last)
        break
    await store.close()


async def test_election_has_one_leader_and_hands_over(etcd_process: servers.Server) -> None:
    stores = [Store("127.0.0.1", etcd_process.port) for _ in range(2)]
    service = f"test-{uuid.uuid4().hex[:6]}"
    running: list[str] = []

    def leader_body(name: str):  # type: ignore[no-untyped-def]
        async def lead() -> None:
            running.append(name)
            await asyncio.Event().wait()
        return lead

    elections = [Election(s, service, f"r{i}", ttl=2) for i, s in enumerate(stores)]
    tasks = [asyncio.create_task(e.run(leader_body(e.identity))) for e in elections]
    for _ in range(100):
        if running:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    assert len(running) == 1
    first = running[0]
    assert await elections[0].leader() == first
    # The leader goes away without a word (its lease is not revoked): the other takes over within a TTL.
    idx = 0 if first == "r0" else 1
    tasks[idx].cancel()
    await asyncio.gather(tasks[idx], return_exceptions=True)
    for _ in range(100):
        if len(running) == 2:
            break
        await asyncio.sleep(0.1)
    assert running[1] != first
    tasks[1 - idx].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for s in stores:
        await s.close()


async def test_etcd_restart_gives_unavailable_then_recovers(tmp_path: Path) -> None:
    own = await servers.start_etcd(tmp_path)
    store = Store("127.0.0.1", own.port, timeout=2)
    prefix = _prefix()
    await store.put(prefix + "before", KV(key="before"))
    watched: list[str] = []
    start = await store.revision() + 1

    async def watch() -> None:
        async for ev in store.watch(prefix, start):
            watched.append(ev.key.rsplit("/", 1)[-1])

    watcher = asyncio.create_task(watch())
    await store.put(prefix + "one", KV(key="1"))
    own.proc.stop()
    with pytest.raises(errors.Unavailable) as caught:
        await store.get(prefix + "before", KV)
    assert "etcd" in caught.value.message
    await servers.restart(own, grpc_health=False)
    for _ in range(100):
        try:
            got = await store.get(prefix + "before", KV)
            break
        except errors.Unavailable:
            await asyncio.sleep(0.1)
    assert got is not None and got.value.key == "before"
    await store.put(prefix + "two", KV(key="2"))
    for _ in range(100):
        if "two" in watched:
            break
        await asyncio.sleep(0.1)
    assert watched == ["one", "two"]  # resumed after the restart, nothing missed or repeated
    watcher.cancel()
    await store.close()
    own.stop()
