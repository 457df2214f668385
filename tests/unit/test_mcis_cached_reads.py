"""GetMcis from the leader's cache: served from memory only when the cache has seen every write the
replica's API made (read-your-writes); otherwise, or when it does not hold the MCIS, from etcd."""

from __future__ import annotations

import pytest

from cbapi.common.v1 import common_pb2 as common
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.store import Informer, Store
from tumblebug import keyspace
from tumblebug.mcis.reads import McisReads
from tumblebug.mcis.reconciler import Reconciler, _decode, _group
from tumblebug.mcis.summaries import McisSummaries
from tumblebug.monitoring import Monitoring
from tumblebug.namespaces import Namespaces
from tumblebug.settings import TumblebugSettings
from tumblebug.spider_client import Spider


class Unreachable(Store):
    """A store that must not be asked (the read is to come from the cache)."""

    def __init__(self, written: int) -> None:
        super().__init__("127.0.0.1", 1)
        self.written = written
        self.asked = 0

    async def get(self, key, cls):  # type: ignore[no-untyped-def]
        self.asked += 1
        return None


def _reconciler() -> Reconciler:
    store = Store("127.0.0.1", 1)
    rec = Reconciler(store, Spider("127.0.0.1:1"), TumblebugSettings(), Monitoring(""))
    rec.informer = Informer(store, keyspace.NS_ROOT, _decode, lambda _k: None, _group)
    rec.informer.wrote(keyspace.mcis("ns", "m"), pb.Mcis(name="m", status="Running:2 (R:2/2)"), 10)
    for name in ("g-2", "g-1"):
        rec.informer.wrote(keyspace.vm("ns", "m", name), pb.McisVm(name=name, status=common.RUNNING), 11)
    rec.informer.synced.set()
    rec.informer.seen = 20
    return rec


async def test_the_cache_serves_a_copy_once_it_has_seen_the_floor() -> None:
    rec = _reconciler()
    got = rec.read_mcis("ns", "m", floor=20, with_vms=True)
    assert got is not None and got.status == "Running:2 (R:2/2)"
    assert [v.name for v in got.vms] == ["g-1", "g-2"]  # key order, as etcd lists them
    got.status = "changed by a reader"
    assert rec.cache.cache[keyspace.mcis("ns", "m")].value.status == "Running:2 (R:2/2)"  # type: ignore[attr-defined]
    assert rec.read_mcis("ns", "m", floor=21, with_vms=False) is None  # an API write it has not seen yet
    assert rec.read_mcis("ns", "other", floor=0, with_vms=False) is None  # not held: ask etcd
    rec.informer.synced.clear()  # type: ignore[union-attr]
    assert rec.read_mcis("ns", "m", floor=0, with_vms=False) is None


async def test_get_mcis_reads_the_view_or_else_the_store() -> None:
    rec = _reconciler()
    store = Unreachable(written=20)
    reads = McisReads(store, Namespaces(store), Monitoring(""))
    reads.view = rec
    got = await reads.get("ns", "m", with_vms=True)
    assert got.name == "m" and len(got.vms) == 2 and store.asked == 0
    assert all(v.agent_status == "None" for v in got.vms)
    store.written = 30  # the API wrote after what the cache has seen: etcd answers (here: not found)
    with pytest.raises(errors.NotFound):
        await reads.get("ns", "m")
    assert store.asked == 1


async def test_an_api_only_replica_keeps_mcis_records_only_and_serves_them_from_memory() -> None:
    summaries = McisSummaries(Store("127.0.0.1", 1))
    informer = summaries.informer
    informer._apply(keyspace.mcis("ns", "m"), pb.Mcis(name="m", status="Creating").SerializeToString(), 10)
    informer._apply(keyspace.vm("ns", "m", "g-1"), pb.McisVm(name="g-1").SerializeToString(), 11)
    assert list(informer.cache) == [keyspace.mcis("ns", "m")]  # VM records are not decoded or kept
    assert summaries.read_mcis("ns", "m", floor=0, with_vms=False) is None  # not filled yet: etcd
    informer.synced.set()
    informer.seen = 20
    store = Unreachable(written=20)
    reads = McisReads(store, Namespaces(store), Monitoring(""))
    reads.view = summaries
    got = await reads.get("ns", "m")
    assert got.status == "Creating" and store.asked == 0
    got.status = "changed by a reader"
    assert summaries.read_mcis("ns", "m", floor=20, with_vms=False).status == "Creating"  # type: ignore[union-attr]
    assert summaries.read_mcis("ns", "m", floor=20, with_vms=True) is None  # with its VMs: etcd
    store.written = 21  # a write of this replica the watch has not brought yet: etcd answers
    with pytest.raises(errors.NotFound):
        await reads.get("ns", "m")
    assert store.asked == 1
