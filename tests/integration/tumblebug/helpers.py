"""Helpers for tumblebug tests: namespaces, connections on several providers, waiting."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import grpc

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as tw_grpc
from cbapi.spider.v1 import spider_pb2 as spb
from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services.rpc.client import channel
from tests import servers


async def namespace(tb: tumblebug_pb2_grpc.TumblebugStub) -> str:
    name = f"ns-{uuid.uuid4().hex[:6]}"
    await tb.CreateNamespace(pb.CreateNamespaceRequest(namespace=pb.Namespace(name=name)))
    return name


async def connections(stub: spider_pb2_grpc.SpiderStub, twin: servers.Server, providers: int,
                      region_index: int = 0) -> list[servers.TwinConnection]:
    """One connection on each of `providers` different twin providers."""
    regions = await servers.twin_regions(twin)
    chosen: dict[str, str] = {}
    for provider, region in regions:
        chosen.setdefault(provider, region)
    picks = list(chosen.items())[:providers]
    return [await servers.make_connection(stub, twin, p, r) for p, r in picks]


async def cheapest_spec_and_image(stub: spider_pb2_grpc.SpiderStub, conn: str) -> tuple[str, str]:
    specs = (await stub.ListSpecs(spb.ListSpecsRequest(connection=conn, page_size=1000))).specs
    spec = min((s for s in specs if s.architecture == "x86_64"), key=lambda s: s.price_per_hour)
    images = (await stub.ListImages(spb.ListImagesRequest(connection=conn, page_size=1000))).images
    image = next(i for i in images if i.architecture == "x86_64")
    return spec.name, image.name


async def wait_mcis(tb: tumblebug_pb2_grpc.TumblebugStub, ns: str, name: str,
                    done: Callable[[pb.Mcis], bool], timeout: float = 60.0) -> pb.Mcis:
    deadline = time.monotonic() + timeout
    mcis = pb.Mcis()
    while time.monotonic() < deadline:
        try:
            mcis = await tb.GetMcis(pb.GetMcisRequest(namespace=ns, name=name))
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise
            mcis = pb.Mcis(status="deleted")
        if done(mcis):
            return mcis
        await asyncio.sleep(0.1)
    raise AssertionError(f"MCIS {name} stuck at {mcis.status} ({pb.Action.Name(mcis.target_action)}, "
                         f"{mcis.message})")


def settled_at(word: str) -> Callable[[pb.Mcis], bool]:
    """True once nothing is in progress and the summary starts with `word` for every VM."""
    return lambda m: m.target_action == pb.ACTION_NONE and m.status.startswith(f"{word}:") and \
        m.observed_generation >= m.generation


async def twin_vm_names(twin: servers.Server, conn: servers.TwinConnection) -> set[str]:
    async with channel(twin.address) as ch:
        reply = await tw_grpc.CloudTwinStub(ch).ListResources(
            tw.ListResourcesRequest(provider=conn.provider, region=conn.region, kind=tw.VM, page_size=1000),
            metadata=(("x-twin-access-key", conn.access_key), ("x-twin-secret-key", conn.secret_key)))
    return {r.name for r in reply.resources if r.state not in ("terminating", "terminated")}


async def twin_vms(twin: servers.Server, conns: list[servers.TwinConnection], gone: bool = False) -> list[tw.Resource]:
    """The VMs the twin holds for these connections' accounts (with `gone`: terminated ones too)."""
    out: list[tw.Resource] = []
    async with channel(twin.address) as ch:
        stub = tw_grpc.CloudTwinStub(ch)
        for c in conns:
            md = (("x-twin-access-key", c.access_key), ("x-twin-secret-key", c.secret_key))
            token = ""
            while True:
                page = await stub.ListResources(tw.ListResourcesRequest(
                    provider=c.provider, region=c.region, kind=tw.VM, page_size=1000, page_token=token), metadata=md)
                out.extend(r for r in page.resources if gone or r.state not in ("terminating", "terminated"))
                token = page.next_page_token
                if not token:
                    break
    return out
