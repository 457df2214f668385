"""Ladybug against real etcd, tumblebug and CloudTwin: validation, records, revisions, events,
watch and idempotency — everything that does not need agents to run workloads.

Ladybug's dragonfly here is an address nobody listens on, so the controller's syncs fail at
ListWorkloads (and say so in the status); the rollout on real agents is in
test_ladybug_rollout.py, which needs dragonfly's workloads.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest_asyncio

from cbapi.ladybug.v1 import ladybug_pb2 as pb
from cbapi.ladybug.v1 import ladybug_pb2_grpc
from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as tpb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services import processes as procs
from services.rpc.client import channel
from tests import servers
from tests.helpers import expect_error
from tests.integration.tumblebug.helpers import cheapest_spec_and_image, connections, namespace, settled_at, wait_mcis
from tests.support.ladybug import web


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ladybug(run_dir: Path, etcd_process: servers.Server,
                  tumblebug_process: servers.Server) -> AsyncIterator[servers.Server]:
    server = await servers.start_ladybug(run_dir / "ladybug-api", etcd_process, tumblebug_process,
                                         f"127.0.0.1:{procs.free_port()}")
    yield server
    server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def lb(ladybug: servers.Server) -> AsyncIterator[ladybug_pb2_grpc.LadybugStub]:
    async with channel(ladybug.address) as ch:
        yield ladybug_pb2_grpc.LadybugStub(ch)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def mcis(tumblebug_process: servers.Server, spider_process: servers.Server,
               cloudtwin_process: servers.Server) -> tuple[str, str]:
    """A Running MCIS on two clouds, two VMs each."""
    async with channel(tumblebug_process.address) as tch, channel(spider_process.address) as sch:
        tb = tumblebug_pb2_grpc.TumblebugStub(tch)
        stub = spider_pb2_grpc.SpiderStub(sch)
        ns = await namespace(tb)
        groups = []
        for i, c in enumerate(await connections(stub, cloudtwin_process, 2)):
            spec, image = await cheapest_spec_and_image(stub, c.name)
            groups.append(tpb.DynamicSubgroup(name=f"g{i}", spec_id=f"{c.name}+{spec}", image_id=image, size=2))
        await tb.CreateMcisDynamic(tpb.CreateMcisDynamicRequest(namespace=ns, name="apps", subgroups=groups))
        await wait_mcis(tb, ns, "apps", settled_at("Running"))
    return ns, "apps"


async def test_create_is_validated_and_validate_only_records_nothing(lb: ladybug_pb2_grpc.LadybugStub,
                                                                     mcis: tuple[str, str]) -> None:
    ns, m = mcis
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, lb.CreateApplication(pb.CreateApplicationRequest(
        namespace=ns, application=web("Bad_Name", m))), "application.name")
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, lb.CreateApplication(pb.CreateApplicationRequest(
        namespace=ns, application=web("web", "no-such-mcis"))), "application.mcis")
    big = web("big", m)
    big.spec.artifact.files["a.bin"] = b"x" * (700 * 1024)
    big.spec.artifact.files["b.bin"] = b"x" * (400 * 1024)
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, lb.CreateApplication(pb.CreateApplicationRequest(
        namespace=ns, application=big)), "application.spec.artifact.files")
    odd = web("odd", m)
    odd.spec.subgroups.append("nope")
    odd.spec.artifact.files["../escape"] = b""
    err = await expect_error(grpc.StatusCode.INVALID_ARGUMENT, lb.CreateApplication(pb.CreateApplicationRequest(
        namespace=ns, application=odd)))
    assert "escape" in (err.details() or "")
    agent_set = web("port", m)
    agent_set.spec.env["PORT"] = "80"  # the agent sets PORT for each instance: refused up front
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, lb.CreateApplication(pb.CreateApplicationRequest(
        namespace=ns, application=agent_set)), "application.spec.env")
    dry = await lb.CreateApplication(pb.CreateApplicationRequest(namespace=ns, application=web("dry", m),
                                                                 validate_only=True))
    assert dry.name == "dry" and dry.revision == 0
    await expect_error(grpc.StatusCode.NOT_FOUND, lb.GetApplication(pb.GetApplicationRequest(namespace=ns, name="dry")))


async def test_revisions_rollback_scale_events_and_idempotency(lb: ladybug_pb2_grpc.LadybugStub,
                                                               mcis: tuple[str, str]) -> None:
    ns, m = mcis
    rid = uuid.uuid4().hex
    made = await lb.CreateApplication(pb.CreateApplicationRequest(namespace=ns, application=web("web", m),
                                                                  request_id=rid))
    assert made.revision == 1 and made.status.phase == pb.PROGRESSING
    again = await lb.CreateApplication(pb.CreateApplicationRequest(namespace=ns, application=web("web", m),
                                                                   request_id=rid))
    assert again.create_time == made.create_time  # the same request: the same answer, nothing new
    await expect_error(grpc.StatusCode.ALREADY_EXISTS, lb.CreateApplication(pb.CreateApplicationRequest(
        namespace=ns, application=web("web", m), request_id=uuid.uuid4().hex)))
    v2 = await lb.UpdateApplication(pb.UpdateApplicationRequest(namespace=ns, name="web",
                                                                application=web("web", m, "v2")))
    assert v2.revision == 2 and v2.spec.env["TEXT"] == "v2"
    same = await lb.UpdateApplication(pb.UpdateApplicationRequest(namespace=ns, name="web",
                                                                  application=web("web", m, "v2")))
    assert same.revision == 2  # an unchanged spec is not a new revision
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, lb.UpdateApplication(pb.UpdateApplicationRequest(
        namespace=ns, name="web", application=web("web", "other"))), "application.mcis")
    back = await lb.RollbackApplication(pb.RollbackApplicationRequest(namespace=ns, name="web", revision=1))
    assert back.revision == 3 and back.spec.env["TEXT"] == "v1"
    await expect_error(grpc.StatusCode.NOT_FOUND, lb.RollbackApplication(pb.RollbackApplicationRequest(
        namespace=ns, name="web", revision=99)))
    revs = (await lb.ListRevisions(pb.ListRevisionsRequest(namespace=ns, name="web"))).revisions
    assert [r.revision for r in revs] == [1, 2, 3] and revs[2].spec.env["TEXT"] == "v1"
    await expect_error(grpc.StatusCode.FAILED_PRECONDITION, lb.PromoteApplication(pb.PromoteApplicationRequest(
        namespace=ns, name="web")))
    await expect_error(grpc.StatusCode.FAILED_PRECONDITION, lb.AbortRollout(pb.AbortRolloutRequest(
        namespace=ns, name="web")))  # nothing stable yet to go back to
    scaled = await lb.ScaleApplication(pb.ScaleApplicationRequest(namespace=ns, name="web", instances=3))
    assert scaled.spec.instances == 3 and scaled.revision == 3  # scaling is not a new revision
    events = (await lb.ListAppEvents(pb.ListAppEventsRequest(namespace=ns, name="web"))).events
    assert [e.type for e in events][-2:] == ["Rollback", "Scale"]
    page = await lb.ListAppEvents(pb.ListAppEventsRequest(namespace=ns, name="web", page_size=1))
    assert len(page.events) == 1 and page.next_page_token
    listed = await lb.ListApplications(pb.ListApplicationsRequest(namespace=ns))
    assert "web" in [a.name for a in listed.applications]


async def test_watch_follows_changes_and_the_controller_reports_dragonfly(lb: ladybug_pb2_grpc.LadybugStub,
                                                                          mcis: tuple[str, str]) -> None:
    ns, m = mcis
    await lb.CreateApplication(pb.CreateApplicationRequest(namespace=ns, application=web("watched", m)))
    stream = lb.WatchApplication(pb.WatchApplicationRequest(namespace=ns, name="watched"))
    first = await stream.read()
    assert first.name == "watched"
    await lb.ScaleApplication(pb.ScaleApplicationRequest(namespace=ns, name="watched", instances=2))
    seen = first
    while seen.spec.instances != 2:
        seen = await asyncio.wait_for(stream.read(), 20)
    # The leader's controller found the MCIS and could not reach dragonfly: it says so.
    while "dragonfly" not in seen.status.message:
        seen = await asyncio.wait_for(stream.read(), 20)
    await lb.DeleteApplication(pb.DeleteApplicationRequest(namespace=ns, name="watched"))
    # Undeployed (nothing was placed) and forgotten: the stream ends.
    while (await asyncio.wait_for(stream.read(), 20)) is not grpc.aio.EOF:
        pass
    await expect_error(grpc.StatusCode.NOT_FOUND, lb.GetApplication(pb.GetApplicationRequest(namespace=ns,
                                                                                             name="watched")))
    await expect_error(grpc.StatusCode.NOT_FOUND, lb.ListRevisions(pb.ListRevisionsRequest(namespace=ns,
                                                                                           name="watched")))


async def test_an_app_whose_mcis_is_deleted_says_so_and_counts_nothing_healthy(
        lb: ladybug_pb2_grpc.LadybugStub, tumblebug_process: servers.Server, spider_process: servers.Server,
        cloudtwin_process: servers.Server) -> None:
    async with channel(tumblebug_process.address) as tch, channel(spider_process.address) as sch:
        tb = tumblebug_pb2_grpc.TumblebugStub(tch)
        stub = spider_pb2_grpc.SpiderStub(sch)
        ns = await namespace(tb)
        c = (await connections(stub, cloudtwin_process, 1))[0]
        spec, image = await cheapest_spec_and_image(stub, c.name)
        await tb.CreateMcisDynamic(tpb.CreateMcisDynamicRequest(namespace=ns, name="short", subgroups=[
            tpb.DynamicSubgroup(name="g", spec_id=f"{c.name}+{spec}", image_id=image, size=1)]))
        await wait_mcis(tb, ns, "short", settled_at("Running"))
        await lb.CreateApplication(pb.CreateApplicationRequest(namespace=ns, application=web("orphan", "short")))
        await tb.DeleteMcis(tpb.DeleteMcisRequest(namespace=ns, name="short", terminate=True, wait=True))
    stream = lb.WatchApplication(pb.WatchApplicationRequest(namespace=ns, name="orphan"))
    seen = await stream.read()
    while "is not there" not in seen.status.message:
        seen = await asyncio.wait_for(stream.read(), 20)
    stream.cancel()
    assert seen.status.message == "MCIS 'short' is not there" and seen.status.phase == pb.DEGRADED
    assert seen.status.counts.healthy == 0 and seen.status.counts.running == 0
    await lb.DeleteApplication(pb.DeleteApplicationRequest(namespace=ns, name="orphan"))
