"""Failover scenarios on CloudTwin: four connections, a placement request, a region that refuses."""

from __future__ import annotations

from collections import Counter

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as tw_grpc
from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services.rpc.client import channel
from tests import servers

VMS = 20
SHARE = 0.6  # at most 12 of the 20 on one provider


async def two_by_two(stub: spider_pb2_grpc.SpiderStub, twin: servers.Server) -> list[servers.TwinConnection]:
    """Connections on two regions of each of two providers."""
    regions: dict[str, list[str]] = {}
    for p, r in await servers.twin_regions(twin):
        regions.setdefault(p, []).append(r)
    providers = [p for p, rs in regions.items() if len(rs) >= 2][:2]
    assert len(providers) == 2
    return [await servers.make_connection(stub, twin, p, r) for p in providers for r in regions[p][:2]]


def request(conns: list[servers.TwinConnection], failover: int = pb.FAILOVER_CLOUD) -> pb.PlacementRequest:
    want = pb.SpecRequirements(connections=[c.name for c in conns], architectures=["x86_64"])
    return pb.PlacementRequest(
        groups=[pb.PlacementGroup(name="web", count=VMS, requirements=want, image="ubuntu")],
        constraints=pb.PlacementConstraints(min_providers=2, max_provider_share=SHARE),
        failover=failover)  # type: ignore[arg-type]


async def refuse(twin: servers.Server, conn: servers.TwinConnection, rate: float) -> None:
    """Make the connection's region fail this share of VM creates with InsufficientInstanceCapacity."""
    async with channel(twin.address) as ch:
        await tw_grpc.CloudTwinStub(ch).SetKnobs(tw.SetKnobsRequest(
            provider=conn.provider, region=conn.region, knobs=tw.Knobs(failure_rate=rate)))


async def busiest(tb: tumblebug_pb2_grpc.TumblebugStub, ns: str, conns: list[servers.TwinConnection],
                  req: pb.PlacementRequest) -> tuple[servers.TwinConnection, int]:
    """The connection the plan puts most VMs on, and how many."""
    plan = await tb.PlanMcis(pb.PlanMcisRequest(namespace=ns, placement=req))
    assert plan.status == "optimal", plan.message
    top = max(plan.placements, key=lambda p: p.count)
    return next(c for c in conns if c.name == top.spec.connection), top.count


def check_converged(mcis: pb.Mcis, vms: list[pb.McisVm], refused: servers.TwinConnection, moved: int) -> None:
    """Every VM Running off the refusing region, within the request, each move on its VM and as an event."""
    assert mcis.status == f"Running:{VMS} (R:{VMS}/{VMS})", mcis.status
    assert len(vms) == VMS and all(v.status == common.RUNNING for v in vms)
    assert not any(v.connection == refused.name for v in vms)
    per_provider = Counter(v.provider for v in vms)
    assert len(per_provider) >= 2 and max(per_provider.values()) <= int(SHARE * VMS), per_provider
    movers = [v for v in vms if v.failovers]
    assert len(movers) == moved
    for v in movers:
        assert v.failovers[0].startswith(f"{refused.name}+") and "InsufficientInstanceCapacity" in v.failovers[0]
        kind = "region" if v.provider == refused.provider else "cloud"
        assert f"({kind})" in v.failovers[-1]
    events = [e for e in mcis.events if e.kind == "failover"]
    assert len(events) == moved and all(e.vm and e.message.startswith(f"{refused.name}+") for e in events)
