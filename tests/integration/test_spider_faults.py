"""Spider under failure: killed mid-create, and etcd going away and coming back."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import grpc
import pytest

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from cbapi.spider.v1 import spider_pb2_grpc
from services.rpc.client import channel
from services.store import Store
from tests import servers
from tests.helpers import expect_error
from tests.integration.conformance.targets import MockTarget

VMS = 50


class Stack(NamedTuple):
    """A test's own etcd, one-provider CloudTwin and spider, and a store on that etcd."""

    etcd: servers.Server
    twin: servers.Server
    spider: servers.Server
    store: Store


@contextlib.asynccontextmanager
async def _stack(tmp_path: Path, twin_env: dict[str, str], spider_env: dict[str, str]) -> AsyncIterator[Stack]:
    etcd = await servers.start_etcd(tmp_path / "etcd")
    twin = await servers.start_cloudtwin(tmp_path / "twin", CB_CLOUDTWIN_PROVIDERS="1", **twin_env)
    spider = await servers.start_spider(tmp_path / "spider", etcd, **spider_env)
    store = Store("127.0.0.1", etcd.port)
    try:
        yield Stack(etcd, twin, spider, store)
    finally:
        await store.close()
        spider.stop()
        twin.stop()
        etcd.stop()


@dataclass
class Place:
    """A new connection to the twin's first region, its first spec and image, and the cloud's view of it."""

    conn: servers.TwinConnection
    spec: str
    image: str
    target: MockTarget


async def _first_place(stub: spider_pb2_grpc.SpiderStub, twin: servers.Server) -> Place:
    provider, region = (await servers.twin_regions(twin))[0]
    conn = await servers.make_connection(stub, twin, provider, region)
    spec = (await stub.ListSpecs(pb.ListSpecsRequest(connection=conn.name))).specs[0].name
    image = (await stub.ListImages(pb.ListImagesRequest(connection=conn.name))).images[0].name
    target = MockTarget("mock", conn.name, image, spec, pb.Capabilities(), twin, conn.access_key, provider, region,
                        conn.secret_key)
    return Place(conn, spec, image, target)


async def _create_retrying(stub: spider_pb2_grpc.SpiderStub, request: pb.CreateVmRequest) -> pb.Vm:
    for _ in range(100):
        try:
            return await stub.CreateVm(request)
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.ABORTED:
                raise
            await asyncio.sleep(0.2)
    raise AssertionError("the create stayed ABORTED")


async def _pending(store: Store) -> int:
    vms = await store.list_all("/cb/spider/conn/", pb.Vm)
    return sum(1 for v in vms if v.value.meta.phase != common.PHASE_READY)


@pytest.mark.parametrize("kill_after", [0.2, 0.5, 0.9])
async def test_kill_spider_while_creating_vms_loses_and_leaks_nothing(tmp_path: Path, kill_after: float) -> None:
    twin_env = {"CB_CLOUDTWIN_CREATE_LATENCY": "0.6", "CB_CLOUDTWIN_LATENCY_SIGMA": "0.5"}
    fast = {"CB_SPIDER_INSTANCE_TTL_S": "2", "CB_SPIDER_RECOVERY_INTERVAL_S": "0.5"}
    async with _stack(tmp_path, twin_env, fast) as (_, twin, spider, store):
        async with channel(spider.address) as ch:
            stub = spider_pb2_grpc.SpiderStub(ch)
            place = await _first_place(stub, twin)
            conn, spec, image = place.conn, place.spec, place.image
            requests = [pb.CreateVmRequest(connection=conn.name, request_id=uuid.uuid4().hex,
                                           vm=pb.Vm(iid=common.IID(name=f"vm-{i:03d}"), image=image, spec=spec))
                        for i in range(VMS)]
            calls = [asyncio.ensure_future(stub.CreateVm(r)) for r in requests]
            await asyncio.sleep(kill_after)  # creates in flight: some recorded, some in the cloud, some done
            spider.proc.kill()
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
        interrupted = sum(1 for o in outcomes if isinstance(o, Exception))
        assert interrupted > 0, "the kill should have interrupted some creates"

        await servers.restart(spider)
        async with channel(spider.address) as ch:
            stub = spider_pb2_grpc.SpiderStub(ch)
            # Clients retry what failed, with the same request IDs: no VM may be made twice.
            retried = [r for r, o in zip(requests, outcomes, strict=True) if isinstance(o, Exception)]
            # ABORTED means the dead spider's intent is not yet known to be dead: retry, as clients do.
            await asyncio.gather(*(_create_retrying(stub, r) for r in retried[: len(retried) // 2]))
            # The other half is never retried: recovery must settle those intents alone.
            for _ in range(200):
                if await _pending(store) == 0:
                    break
                await asyncio.sleep(0.1)
            assert await _pending(store) == 0
            report = await stub.ReconcileResources(pb.ReconcileResourcesRequest(connection=conn.name,
                                                                                collection="vms"))
        assert list(report.only_spider) == [] and list(report.only_cloud) == []
        records = [v.value for v in await store.list_all(f"/cb/spider/conn/{conn.name}/vms/", pb.Vm)]
        target = place.target
        cloud = await target.cloud_vm_ids()
        assert {r.iid.csp_id for r in records} == cloud  # every record has its VM, every VM its record
        assert len(records) == len(cloud) >= VMS - len(retried) + len(retried) // 2


async def test_etcd_down_gives_unavailable_and_spider_recovers(tmp_path: Path) -> None:
    async with _stack(tmp_path, {}, {}) as (etcd, twin, spider, _), channel(spider.address) as ch:
        stub = spider_pb2_grpc.SpiderStub(ch)
        provider, region = (await servers.twin_regions(twin))[0]
        conn = await servers.make_connection(stub, twin, provider, region)
        etcd.proc.stop()
        err = await expect_error(grpc.StatusCode.UNAVAILABLE, stub.ListConnections(pb.ListConnectionsRequest()))
        assert "etcd" in (err.details() or "")
        await expect_error(grpc.StatusCode.UNAVAILABLE, stub.CreateKeyPair(pb.CreateKeyPairRequest(
            connection=conn.name, key_pair=pb.KeyPair(iid=common.IID(name="while-down")))))
        await servers.restart(etcd, grpc_health=False)
        for _ in range(100):
            try:
                listed = await stub.ListConnections(pb.ListConnectionsRequest())
                break
            except grpc.aio.AioRpcError as e:
                assert e.code() == grpc.StatusCode.UNAVAILABLE
                await asyncio.sleep(0.1)
        assert conn.name in {c.name for c in listed.connections}
        made = await stub.CreateKeyPair(pb.CreateKeyPairRequest(connection=conn.name, key_pair=pb.KeyPair(
            iid=common.IID(name="after"))))
        assert made.iid.csp_id


async def _phase(store: Store, key: str) -> int | None:
    found = await store.get(key, pb.Vm)
    return None if found is None else found.value.meta.phase


async def test_completion_lost_to_a_long_etcd_outage_is_written_once_etcd_is_back(tmp_path: Path) -> None:
    """etcd away longer than the settle time while the cloud makes a VM: the caller gets
    UNAVAILABLE, and the record becomes READY by itself once etcd is back, with no retry."""
    twin_env = {"CB_CLOUDTWIN_CREATE_LATENCY": "2", "CB_CLOUDTWIN_BOOT_LATENCY": "0"}
    async with _stack(tmp_path, twin_env, {"CB_SPIDER_SETTLE_S": "1"}) as (etcd, twin, spider, store):
        async with channel(spider.address) as ch:
            stub = spider_pb2_grpc.SpiderStub(ch)
            place = await _first_place(stub, twin)
            conn, spec, image = place.conn, place.spec, place.image
            key = f"/cb/spider/conn/{conn.name}/vms/vm-late"
            call = asyncio.ensure_future(stub.CreateVm(pb.CreateVmRequest(
                connection=conn.name, request_id=uuid.uuid4().hex,
                vm=pb.Vm(iid=common.IID(name="vm-late"), image=image, spec=spec))))
            for _ in range(100):  # the intent is written: the cloud call (2 s) is under way
                if await _phase(store, key) == common.PHASE_CREATING:
                    break
                await asyncio.sleep(0.02)
            etcd.proc.stop()
            await asyncio.sleep(4)  # longer than the settle time (1 s) after the cloud call ends
            err = await expect_error(grpc.StatusCode.UNAVAILABLE, call)
            assert "made in the cloud" in (err.details() or "")
            await servers.restart(etcd, grpc_health=False)
            back = time.monotonic()
            vm = None
            while time.monotonic() - back < 10:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    vm = await stub.GetVm(pb.GetResourceRequest(connection=conn.name, name="vm-late"))
                    if vm.meta.phase == common.PHASE_READY:
                        break
                await asyncio.sleep(0.1)
            assert vm is not None and vm.meta.phase == common.PHASE_READY, vm
            assert vm.status == common.RUNNING and vm.iid.csp_id and not vm.meta.owner
        target = place.target
        assert await target.cloud_vm_ids() == {vm.iid.csp_id}
