"""A real rollout on twin VMs: NEEDS dragonfly's workloads (SetWorkloads, ListWorkloads) and the
agent's supervision. Skipped while dragonfly answers UNIMPLEMENTED for them.

Runs on the agent-installing tumblebug (`monitored_server`: its own etcd, NATS, dragonfly).
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from cbapi.dragonfly.v1 import dragonfly_pb2_grpc
from cbapi.dragonfly.v1 import workloads_pb2 as wpb
from cbapi.ladybug.v1 import ladybug_pb2 as pb
from cbapi.ladybug.v1 import ladybug_pb2_grpc
from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services.rpc.client import channel
from tests import servers
from tests.integration.tumblebug.helpers import namespace
from tests.integration.tumblebug.monitored import mcis_with_healthy_agents
from tests.support.ladybug import web


async def _workloads_served(dragonfly: str) -> bool:
    async with channel(dragonfly) as ch:
        try:
            await dragonfly_pb2_grpc.DragonflyStub(ch).ListWorkloads(wpb.ListWorkloadsRequest(ns="x", mcis="y"),
                                                                     timeout=5)
        except grpc.aio.AioRpcError as err:
            return err.code() is not grpc.StatusCode.UNIMPLEMENTED
    return True


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ladybug(run_dir: Path, etcd: servers.Server, monitored_server: servers.Server
                  ) -> AsyncIterator[servers.Server]:
    dragonfly = monitored_server.env["CB_TUMBLEBUG_DRAGONFLY_ADDR"]
    if not await _workloads_served(dragonfly):
        pytest.skip("dragonfly does not serve workloads yet (SetWorkloads/ListWorkloads UNIMPLEMENTED)")
    server = await servers.start_ladybug(run_dir / "ladybug-rollout", etcd, monitored_server, dragonfly)
    yield server
    server.stop()


async def _until(lb: ladybug_pb2_grpc.LadybugStub, ns: str, name: str, done: object, timeout: float = 90) -> pb.Application:
    app = None
    for _ in range(int(timeout / 0.5)):
        app = await lb.GetApplication(pb.GetApplicationRequest(namespace=ns, name=name))
        if done(app):  # type: ignore[operator]
            return app
        await asyncio.sleep(0.5)
    raise AssertionError(f"not reached: {app}")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return bytes(reply.read())


async def test_rolling_update_then_a_failing_revision_rolls_back(
        ladybug: servers.Server, monitored: tumblebug_pb2_grpc.TumblebugStub, stub: spider_pb2_grpc.SpiderStub,
        cloudtwin: servers.Server) -> None:
    ns = await namespace(monitored)
    await mcis_with_healthy_agents(monitored, stub, cloudtwin, ns, "apps", 2)
    async with channel(ladybug.address) as ch:
        lb = ladybug_pb2_grpc.LadybugStub(ch)
        app = web("web", "apps")
        app.spec.instances = 2
        app.spec.health_check.http_path = "/"
        app.spec.update.min_healthy_time_s = 0.5
        await lb.CreateApplication(pb.CreateApplicationRequest(namespace=ns, application=app))
        await _until(lb, ns, "web", lambda a: a.status.stable_revision == 1)
        insts = (await lb.ListInstances(pb.ListInstancesRequest(namespace=ns, name="web"))).instances
        assert len({i.vm for i in insts}) == 2 and all(i.healthy for i in insts)
        for i in insts:  # each instance really serves on its VM's own IP
            assert await asyncio.to_thread(_get, f"http://{i.ip}:{i.port}/") == b"1"
        app.spec.env["TEXT"] = "v2"
        await lb.UpdateApplication(pb.UpdateApplicationRequest(namespace=ns, name="web", application=app))
        await _until(lb, ns, "web", lambda a: a.status.stable_revision == 2 and a.status.phase == pb.AVAILABLE)
        bad = pb.AppSpec()
        bad.CopyFrom(app.spec)
        bad.artifact.command = "exit 3"
        bad.update.healthy_deadline_s = 5
        await lb.UpdateApplication(pb.UpdateApplicationRequest(namespace=ns, name="web",
                                                               application=pb.Application(spec=bad)))
        back = await _until(lb, ns, "web", lambda a: a.status.failed_revision == 3 and a.revision == 2
                            and a.status.counts.healthy == 2)
        assert back.status.stable_revision == 2
        revs = (await lb.ListRevisions(pb.ListRevisionsRequest(namespace=ns, name="web"))).revisions
        assert [r.outcome for r in revs] == ["stable", "stable", "failed"]
        types = [e.type for e in (await lb.ListAppEvents(pb.ListAppEventsRequest(namespace=ns, name="web"))).events]
        assert "Rollback" in types and "Failed" in types
        await lb.DeleteApplication(pb.DeleteApplicationRequest(namespace=ns, name="web"))
