"""Workloads through dragonfly and a real cb-agent over NATS with JWT auth: a tiny HTTP server
becomes healthy and serves on the VM's IP, is restarted after a kill, a bad command crash-loops,
replacing the set stops the old and starts the new, logs are readable, the errors are the
right codes, and the statuses go with a revoked VM."""

from __future__ import annotations

import asyncio
import os
import signal
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
import yaml

from cbapi.dragonfly.v1 import dragonfly_pb2 as pb
from cbapi.dragonfly.v1 import dragonfly_pb2_grpc
from cbapi.dragonfly.v1 import workloads_pb2 as wpb
from services.processes import free_port
from tests.integration.dragonfly.conftest import start_agent
from tests.support.dragonfly import eventually
from tests.support.workloads import SERVER

Stub = dragonfly_pb2_grpc.DragonflyStub
FAST = wpb.WorkloadRestartPolicy(initial_backoff_s=0.1, max_backoff_s=0.4, crash_loop_restarts=3,
                                 crash_loop_window_s=60)


def web(wid: str, port: int, revision: int = 1) -> wpb.Workload:
    return wpb.Workload(id=wid, app="web", revision=revision, command="python3 server.py",
                        files={"server.py": SERVER.encode(), "ok": b""}, ports=[port],
                        health=wpb.WorkloadHealthCheck(http_path="/healthz", interval_s=0.2, healthy_threshold=1,
                                                       unhealthy_threshold=2),
                        restart=FAST, stop_grace_s=2)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return str(resp.read().decode())


async def serves(url: str) -> str:
    try:
        return await asyncio.to_thread(get, url)
    except (urllib.error.URLError, OSError):
        return ""


async def test_workloads_through_dragonfly_and_a_real_agent(dragonfly_client: Stub, run_dir: Path) -> None:
    ns, mcis, vm = "ns-wl", f"m-{uuid.uuid4().hex[:6]}", "vm-1"
    cred = await dragonfly_client.IssueAgentCredential(pb.IssueAgentCredentialRequest(ns=ns, mcis=mcis, vm=vm))
    doc = yaml.safe_load(cred.user_data)
    doc["cb_agent"]["work_dir"] = str(run_dir / "agents" / f"{mcis}-work")
    agent = start_agent(run_dir, f"{mcis}-{vm}", yaml.safe_dump(doc))

    async def statuses(app: str = "") -> dict[str, wpb.WorkloadStatus]:
        got = await dragonfly_client.ListWorkloads(wpb.ListWorkloadsRequest(ns=ns, mcis=mcis, app=app))
        return {s.id: s for v in got.vms for s in v.statuses}

    async def set_app(app: str, *workloads: wpb.Workload) -> wpb.SetWorkloadsResponse:
        return await dragonfly_client.SetWorkloads(wpb.SetWorkloadsRequest(ns=ns, mcis=mcis, vm=vm, app=app,
                                                                           workloads=workloads))

    try:
        async def registered() -> bool:
            try:
                return (await dragonfly_client.GetAgent(pb.GetAgentRequest(ns=ns, mcis=mcis, vm=vm))).health == pb.HEALTHY
            except grpc.aio.AioRpcError:
                return False

        await eventually(registered, 30, "registration")
        port = free_port()
        answer = await set_app("web", web("web-1", port))
        assert [(s.id, s.ip, list(s.ports)) for s in answer.statuses] == [("web-1", "127.0.0.1", [port])]

        async def healthy(wid: str, restarts: int = 0) -> bool:
            s = (await statuses()).get(wid)
            return s is not None and s.healthy and s.state == wpb.WORKLOAD_RUNNING and s.restarts == restarts

        await eventually(lambda: healthy("web-1"), 20, "web-1 healthy")
        assert await serves(f"http://127.0.0.1:{port}/") == "hi from web-1"

        # Killed: the agent restarts it by itself, healthy again.
        pid = (await statuses())["web-1"].pid
        os.killpg(pid, signal.SIGKILL)
        await eventually(lambda: healthy("web-1", restarts=1), 20, "web-1 restarted and healthy")
        assert (await statuses())["web-1"].pid != pid

        # A command that cannot run crash-loops; the other app is left alone.
        await set_app("bad", wpb.Workload(id="bad-1", app="bad", revision=1, command="no-such-program-here",
                                          restart=FAST))

        async def crash_looping() -> bool:
            s = (await statuses("bad")).get("bad-1")
            return s is not None and s.state == wpb.WORKLOAD_CRASH_LOOP

        await eventually(crash_looping, 20, "CRASH_LOOP")
        bad = (await statuses("bad"))["bad-1"]
        assert bad.last_exit_code == 127 and bad.restarts == 2 and "not restarted" in bad.message
        assert set(await statuses("web")) == {"web-1"}

        # Replace web's set: the old is stopped, the new serves.
        new_port = free_port()
        await set_app("web", web("web-2", new_port, revision=2))
        assert await serves(f"http://127.0.0.1:{port}/") == ""
        await eventually(lambda: healthy("web-2"), 20, "web-2 healthy")
        assert await serves(f"http://127.0.0.1:{new_port}/") == "hi from web-2"
        assert set(await statuses()) == {"web-2", "bad-1"}
        logs = await dragonfly_client.ReadWorkloadLogs(wpb.ReadWorkloadLogsRequest(ns=ns, mcis=mcis, vm=vm, id="web-2"))
        assert logs.stdout == f"serving {new_port}\n"
        bad_logs = await dragonfly_client.ReadWorkloadLogs(wpb.ReadWorkloadLogsRequest(ns=ns, mcis=mcis, vm=vm, id="bad-1",
                                                                         tail_lines=1))
        assert "not found" in bad_logs.stderr and bad_logs.stderr.count("\n") == 1

        # The right codes for what a caller got wrong.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await dragonfly_client.SetWorkloads(wpb.SetWorkloadsRequest(ns=ns, mcis=mcis, vm="nobody", app="web"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await set_app("web", wpb.Workload(id="w", command="true", files={"../escape": b"x"}))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "relative" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await dragonfly_client.ReadWorkloadLogs(wpb.ReadWorkloadLogsRequest(ns=ns, mcis=mcis, vm=vm, id="web-1"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        # The agent stops: its workloads stop with it; dragonfly then refuses sets with FAILED_PRECONDITION.
        agent.stop()
        assert await serves(f"http://127.0.0.1:{new_port}/") == ""

        async def away() -> bool:
            try:
                await set_app("web")
            except grpc.aio.AioRpcError as e:
                return e.code() == grpc.StatusCode.FAILED_PRECONDITION
            return False

        await eventually(away, 20, "FAILED_PRECONDITION")
        # The VM goes: its statuses go with it.
        await dragonfly_client.RevokeAgentCredential(pb.RevokeAgentCredentialRequest(ns=ns, mcis=mcis, vm=vm))
        assert await statuses() == {}
    finally:
        agent.stop()
