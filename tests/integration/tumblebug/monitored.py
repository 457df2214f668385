"""A tumblebug that installs agents: its own etcd, NATS with per-VM credentials, and dragonfly.

It has an etcd of its own: on the shared one it would be a second replica of the session's
tumblebug (which runs without monitoring), and only one of them leads."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from tests import servers
from tests.integration.tumblebug.helpers import cheapest_spec_and_image, connections, settled_at, wait_mcis
from tests.support.dragonfly import start_dragonfly
from tests.support.nats import start_nats


@contextlib.asynccontextmanager
async def monitored_tumblebug(run_dir: Path, spider: servers.Server) -> AsyncIterator[servers.Server]:
    # Whatever started is stopped, also when a later part fails to start.
    async with contextlib.AsyncExitStack() as started:
        own = await servers.start_etcd(run_dir / "etcd")
        started.callback(own.stop)
        nats = await start_nats(run_dir / "nats")
        started.callback(nats.proc.stop)
        dragonfly = await start_dragonfly(run_dir / "dragonfly", own, nats)
        started.callback(dragonfly.stop)
        tumblebug = await servers.start_tumblebug(run_dir / "tumblebug", own, spider,
                                                  CB_TUMBLEBUG_DRAGONFLY_ADDR=dragonfly.address)
        started.callback(tumblebug.stop)
        yield tumblebug


async def mcis_with_healthy_agents(tb: tumblebug_pb2_grpc.TumblebugStub, stub: spider_pb2_grpc.SpiderStub,
                                   cloudtwin: servers.Server, ns: str, name: str, size: int,
                                   conn: servers.TwinConnection | None = None) -> list[pb.McisVm]:
    """A Running MCIS of `size` VMs (group `g`, one CloudTwin connection, new unless given) whose
    agents are all healthy."""
    conn = conn or (await connections(stub, cloudtwin, 1))[0]
    spec, image = await cheapest_spec_and_image(stub, conn.name)
    await tb.CreateMcisDynamic(pb.CreateMcisDynamicRequest(namespace=ns, name=name, subgroups=[
        pb.DynamicSubgroup(name="g", spec_id=f"{conn.name}+{spec}", image_id=image, size=size)]))
    await wait_mcis(tb, ns, name, settled_at("Running"))
    deadline = time.monotonic() + 60  # agents register after boot; a loaded machine takes a while
    while True:
        vms = list((await tb.ListMcisVms(pb.ListMcisVmsRequest(namespace=ns, mcis=name))).vms)
        if all(v.agent_status == "Healthy" for v in vms) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert [v.agent_status for v in vms] == ["Healthy"] * size
    return vms
