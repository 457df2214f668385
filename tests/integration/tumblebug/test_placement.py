"""Placement wired into tumblebug, on CloudTwin: recommendation, plans, benchmarks and a campaign
that closes the loop (measured ranking against the emulator's hidden truth)."""

from __future__ import annotations

import asyncio
import time

import grpc
import numpy as np
from scipy.stats import spearmanr

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as tw_grpc
from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services.rpc.client import channel
from tests import servers
from tests.helpers import expect_error
from tests.integration.tumblebug.helpers import connections, namespace, settled_at, twin_vm_names, wait_mcis

X86 = pb.SpecRequirements(architectures=["x86_64"])


def reqs(conns: list[servers.TwinConnection], **kw: object) -> pb.SpecRequirements:
    r = pb.SpecRequirements(connections=[c.name for c in conns], architectures=["x86_64"])
    for k, v in kw.items():
        setattr(r, k, v)
    return r


async def truth(twin: servers.Server, spec: pb.CatalogSpec) -> float:
    """The hidden true cpu_multi of a spec: read here, in the test only."""
    async with channel(twin.address) as ch:
        t = await tw_grpc.CloudTwinStub(ch).GetSpecTruth(tw.GetSpecTruthRequest(
            provider=spec.provider, region=spec.region, spec=spec.name))
    return t.cpu_multi


async def test_recommend_and_plan(tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                  spider_client: spider_pb2_grpc.SpiderStub,
                                  cloudtwin_process: servers.Server) -> None:
    conns = await connections(spider_client, cloudtwin_process, 3)
    got = await tumblebug_client.RecommendSpec(pb.RecommendSpecRequest(requirements=reqs(conns, vcpu_min=2),
                                                         weights={"cost": 1, "performance": 1}, limit=5))
    assert len(got.specs) == 5 and got.passed >= 5
    top = got.specs[0]
    assert {s.weigher for s in top.scores} == {"cost", "performance"}
    assert all(s.spec.vcpu >= 2 for s in got.specs)
    perf = next(s for s in top.scores if s.weigher == "performance")
    assert perf.estimated and top.estimated and "cpu_multi" in perf.figures  # no benchmark yet
    assert [s.score for s in got.specs] == sorted((s.score for s in got.specs), reverse=True)

    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, tumblebug_client.RecommendSpec(pb.RecommendSpecRequest(
        weights={"speed": 1})), "weights")
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, tumblebug_client.RecommendSpec(pb.RecommendSpecRequest(limit=5000)),
                       "limit")

    ns = await namespace(tumblebug_client)
    group = pb.PlacementGroup(name="web", count=6, requirements=reqs(conns))
    ok = await tumblebug_client.PlanMcis(pb.PlanMcisRequest(namespace=ns, placement=pb.PlacementRequest(
        groups=[group], constraints=pb.PlacementConstraints(min_providers=3))))
    assert ok.status == "optimal" and sum(p.count for p in ok.placements) == 6
    assert len({p.spec.provider for p in ok.placements}) == 3
    assert abs(ok.cost_per_hour - sum(p.cost_per_hour for p in ok.placements)) < 1e-9
    cheapest = (await tumblebug_client.PlanMcis(pb.PlanMcisRequest(namespace=ns, placement=pb.PlacementRequest(
        groups=[group])))).cost_per_hour
    assert cheapest < ok.cost_per_hour  # spread costs something here

    budget = round((cheapest + ok.cost_per_hour) / 2, 4)
    bad = await tumblebug_client.PlanMcis(pb.PlanMcisRequest(namespace=ns, placement=pb.PlacementRequest(
        groups=[group], constraints=pb.PlacementConstraints(min_providers=3, budget_per_hour=budget))))
    assert bad.status == "infeasible" and not bad.placements
    assert "budget" in [b.constraint for b in bad.binding], bad
    assert f"{budget:.2f}/h" in bad.message and "spread ≥ 3 providers" in bad.message, bad.message

    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, tumblebug_client.PlanMcis(pb.PlanMcisRequest(
        namespace=ns, placement=pb.PlacementRequest(groups=[group], objective="fastest"))), "placement.objective")
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, tumblebug_client.PlanMcis(pb.PlanMcisRequest(
        namespace=ns, placement=pb.PlacementRequest(groups=[pb.PlacementGroup(name="a", count=0)]))),
        "placement.groups.count")

    # The same request creates the MCIS: the plan's placements become its subgroups.
    made = await tumblebug_client.CreateMcisDynamic(pb.CreateMcisDynamicRequest(
        namespace=ns, name="placed", install_agent=False, placement=pb.PlacementRequest(
            groups=[pb.PlacementGroup(name="web", count=3, requirements=reqs(conns), image="ubuntu")],
            constraints=pb.PlacementConstraints(min_providers=3))))
    assert len(made.subgroups) == 3 and {sg.connection for sg in made.subgroups} == {c.name for c in conns}
    assert len(made.placement.groups) == 1
    done = await wait_mcis(tumblebug_client, ns, "placed", settled_at("Running"))
    assert done.status_count.running == 3


async def test_campaign_closes_the_loop(monitored_tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                        spider_client: spider_pb2_grpc.SpiderStub,
                                        cloudtwin_process: servers.Server) -> None:
    tb = monitored_tumblebug_client
    conns = await connections(spider_client, cloudtwin_process, 3, region_index=0)
    # Three providers' specs of 1 to 4 vCPUs: a spread of true performance wide enough that a ranking
    # means something, and few enough VMs (each boots an agent) to measure them in two waves.
    want = reqs(conns, vcpu_max=4)
    before = await tb.RecommendSpec(pb.RecommendSpecRequest(requirements=want, weights={"performance": 1},
                                                            limit=1000))
    n = len(before.specs)
    assert n >= 16
    assert all(s.estimated for s in before.specs)  # the ranking by performance is an estimate
    made = n - 2  # the VM budget: two specs must be left out

    started = await tb.StartBenchmarkCampaign(pb.StartBenchmarkCampaignRequest(campaign=pb.BenchmarkCampaign(
        name="c1", requirements=want, max_vms=made, max_cost=1000.0, parallel=made // 2 + 1, vm_lifetime_s=180)))
    assert started.state == "running" and len(started.steps) == n
    deadline = time.monotonic() + 600
    while True:
        c = await tb.GetBenchmarkCampaign(pb.GetBenchmarkCampaignRequest(name="c1"))
        if c.state == "done" or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    states = [s.state for s in c.steps]
    assert c.state == "done", (c.message, states)
    assert states.count("skipped") == 2 and c.vms_made == made, c.message  # the VM budget held
    assert states.count("done") >= made - 4, [(s.spec_id, s.error) for s in c.steps if s.state != "done"]
    # No VM left behind, in the cloud or in tumblebug.
    for conn in conns:
        assert not {v for v in await twin_vm_names(cloudtwin_process, conn)}
    assert not (await tb.ListMcis(pb.ListMcisRequest(namespace="cb-benchmarks"))).mcis

    after = await tb.RecommendSpec(pb.RecommendSpecRequest(requirements=want, weights={"performance": 1},
                                                           limit=1000))
    measured = [s for s in after.specs if not s.estimated]
    assert len(measured) >= made - 4
    got = [next(x for x in s.scores if x.weigher == "performance").figures["cpu_multi"] for s in measured]
    true = [await truth(cloudtwin_process, s.spec) for s in measured]
    rho = spearmanr(got, true).statistic
    print(f"spearman rho={rho:.4f} over {len(measured)} specs")
    assert rho >= 0.9
    # The measured ranking is in descending measured order, and the results are listed per spec.
    assert got == sorted(got, reverse=True)
    listed = await tb.ListBenchmarks(pb.ListBenchmarksRequest(connection=conns[0].name, metric="cpu_multi"))
    assert listed.results and all(r.samples >= 1 and r.mean > 0 for r in listed.results)
    assert np.isfinite([r.spread for r in listed.results]).all()
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, tb.ListBenchmarks(pb.ListBenchmarksRequest(
        metric="speed")), "metric")


async def test_benchmark_mcis_rtt(monitored_tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                  spider_client: spider_pb2_grpc.SpiderStub,
                                  cloudtwin_process: servers.Server) -> None:
    tb = monitored_tumblebug_client
    conns = await connections(spider_client, cloudtwin_process, 2)
    ns = await namespace(tb)
    await tb.CreateMcisDynamic(pb.CreateMcisDynamicRequest(
        namespace=ns, name="two", placement=pb.PlacementRequest(
            groups=[pb.PlacementGroup(name="g", count=2, requirements=reqs(conns))],
            constraints=pb.PlacementConstraints(min_providers=2))))
    await wait_mcis(tb, ns, "two", settled_at("Running"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        vms = (await tb.ListMcisVms(pb.ListMcisVmsRequest(namespace=ns, mcis="two"))).vms
        if all(v.agent_status == "Healthy" for v in vms):
            break
        await asyncio.sleep(0.3)
    got = await tb.BenchmarkMcis(pb.BenchmarkMcisRequest(namespace=ns, name="two"))
    assert len(got.vms) == 2 and all(v.values["cpu_multi"] > 0 for v in got.vms), got
    sites = sorted(f"{c.provider}/{c.region}" for c in conns)
    assert [(r.a, r.b) for r in got.rtt] == [tuple(sites)] and got.rtt[0].rtt_ms > 0
    matrix = (await tb.ListBenchmarks(pb.ListBenchmarksRequest())).rtt
    assert any((r.a, r.b) == tuple(sites) for r in matrix)
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, tb.BenchmarkMcis(pb.BenchmarkMcisRequest(
        namespace=ns, name="two", benchmarks=["gpu"])), "benchmarks[0]")


async def test_a_cancelled_campaign_skips_the_rest_and_leaves_no_vm(
        monitored_tumblebug_client: tumblebug_pb2_grpc.TumblebugStub, spider_client: spider_pb2_grpc.SpiderStub,
        cloudtwin_process: servers.Server) -> None:
    tb = monitored_tumblebug_client
    conns = await connections(spider_client, cloudtwin_process, 2)
    # Every chosen spec counts as unmeasured (any result is stale after 1 ms): many steps, one at a time.
    started = await tb.StartBenchmarkCampaign(pb.StartBenchmarkCampaignRequest(campaign=pb.BenchmarkCampaign(
        name="c-cancel", requirements=reqs(conns), max_vms=3, parallel=1, stale_after_s=0.001, vm_lifetime_s=120)))
    assert started.state == "running" and len(started.steps) > 3
    listed = await tb.ListBenchmarkCampaigns(pb.ListBenchmarkCampaignsRequest())
    assert "c-cancel" in [c.name for c in listed.campaigns]
    deadline = time.monotonic() + 60
    while (await tb.GetBenchmarkCampaign(pb.GetBenchmarkCampaignRequest(name="c-cancel"))).vms_made < 1:
        assert time.monotonic() < deadline, "the campaign made no VM"
        await asyncio.sleep(0.2)
    cancelling = await tb.CancelBenchmarkCampaign(pb.CancelBenchmarkCampaignRequest(name="c-cancel"))
    assert cancelling.cancelled and cancelling.state == "running" and "cancelling" in cancelling.message
    again = await tb.CancelBenchmarkCampaign(pb.CancelBenchmarkCampaignRequest(name="c-cancel"))
    assert again.update_time == cancelling.update_time  # asked twice: nothing new
    while (c := await tb.GetBenchmarkCampaign(pb.GetBenchmarkCampaignRequest(name="c-cancel"))).state == "running":
        assert time.monotonic() < deadline, c
        await asyncio.sleep(0.3)
    assert c.state == "cancelled" and c.vms_made <= 3, c
    assert sum(s.error == "cancelled" for s in c.steps) >= len(c.steps) - c.vms_made
    assert all(s.state in ("done", "failed", "skipped") for s in c.steps)
    for s in c.steps:  # every VM it made is gone, record and all
        await expect_error(grpc.StatusCode.NOT_FOUND, tb.GetMcis(pb.GetMcisRequest(namespace="cb-benchmarks",
                                                                                   name=s.mcis)))
    ended = await expect_error(grpc.StatusCode.FAILED_PRECONDITION, tb.CancelBenchmarkCampaign(
        pb.CancelBenchmarkCampaignRequest(name="c-cancel")))
    assert "has ended (cancelled)" in (ended.details() or "")
    await expect_error(grpc.StatusCode.NOT_FOUND, tb.CancelBenchmarkCampaign(
        pb.CancelBenchmarkCampaignRequest(name="no-such")))
