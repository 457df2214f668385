"""Workload statuses on a real etcd with two replicas: a report that changes nothing costs no etcd
read, and a replica still writes a report that differs from what the *other* replica stored."""

from __future__ import annotations

import time
import uuid

from cbapi.dragonfly.v1 import workloads_pb2 as wpb
from dragonfly import keyspace
from dragonfly.guard import AgentGuard
from dragonfly.protocol.subjects import VmId
from dragonfly.workloads import WorkloadStatuses
from services.store import Store
from tests import servers
from tests.support.dragonfly import eventually


class NoBus:
    """No NATS here: reports are handed to `record` directly."""

    async def subscribe(self, *args: object, **kwargs: object) -> None:
        return None


class CountingStore(Store):
    """The real store, counting its reads."""

    gets = 0

    async def get(self, key, cls):  # type: ignore[no-untyped-def]
        self.gets += 1
        return await super().get(key, cls)


def status(state: str) -> list[wpb.WorkloadStatus]:
    out = wpb.WorkloadStatus(id="web-r1-0", app="web", healthy=state == "RUNNING")
    out.state = wpb.WorkloadState.Value("WORKLOAD_" + state)  # type: ignore[assignment]
    return [out]


async def test_unchanged_reports_skip_etcd_and_the_other_replicas_writes_are_seen(etcd_process: servers.Server) -> None:
    stores = [CountingStore("127.0.0.1", etcd_process.port) for _ in range(2)]
    a, b = (WorkloadStatuses(s, NoBus(), AgentGuard()) for s in stores)  # type: ignore[arg-type]
    vm = VmId("ns-cache", f"m-{uuid.uuid4().hex[:6]}", "vm-1")
    key = keyspace.workloads(vm)
    try:
        for replica in (a, b):
            await replica.start()
        t = time.time()
        await a.record(vm, status("RUNNING"), t)
        reads = stores[0].gets
        for n in range(1, 4):  # the agent repeats itself: nothing to write, nothing to read
            await a.record(vm, status("RUNNING"), t + n)
        assert stores[0].gets == reads and a.writes == 1
        # The state flaps; the change reaches the other replica, which stores it...
        await b.record(vm, status("FAILED"), t + 5)
        await eventually(lambda: _known_state(a, key, wpb.WORKLOAD_FAILED), 10, "replica a hears b's write")
        # ...and back: replica a must write it, though it is what a itself stored before.
        await a.record(vm, status("RUNNING"), t + 6)
        found = await stores[0].get(key, wpb.VmWorkloads)
        assert found is not None and found.value.statuses[0].state == wpb.WORKLOAD_RUNNING and a.writes == 2
    finally:
        for replica in (a, b):
            await replica.stop()
            await replica.store.close()


async def _known_state(replica: WorkloadStatuses, key: str, state: int) -> bool:
    known = replica.stored.get(key)
    return known is not None and known.statuses[0].state == state


async def test_a_vm_without_workloads_costs_etcd_one_read_and_no_record(etcd_process: servers.Server) -> None:
    store = CountingStore("127.0.0.1", etcd_process.port)
    replica = WorkloadStatuses(store, NoBus(), AgentGuard())  # type: ignore[arg-type]
    vm = VmId("ns-cache", f"m-{uuid.uuid4().hex[:6]}", "vm-1")
    key = keyspace.workloads(vm)
    try:
        await replica.start()
        t = time.time()
        # Reports of nothing running, past the refresh age too: one read to learn etcd has none.
        for n in (0, 1, 2, 200):
            await replica.record(vm, [], t + n)
        assert store.gets == 1 and replica.writes == 0 and await store.get(key, wpb.VmWorkloads) is None
        # A workload starts and stops: both are changes and are written; then quiet again.
        await replica.record(vm, status("RUNNING"), t + 201)
        await replica.record(vm, [], t + 202)
        found = await store.get(key, wpb.VmWorkloads)
        assert found is not None and not found.value.statuses and replica.writes == 2
        gets = store.gets
        await replica.record(vm, [], t + 400)
        assert store.gets == gets and replica.writes == 2
    finally:
        await replica.stop()
        await store.close()
