"""CloudTwin guests: a VM created through spider with agent user-data runs a cb-agent in the
emulator; a command started in it serves on the VM's own IP; the agent goes with the VM, and
comes back after an emulator restart."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import httpx

from cbapi.common.v1 import common_pb2 as common
from cbapi.dragonfly.v1 import dragonfly_pb2 as dpb
from cbapi.dragonfly.v1 import dragonfly_pb2_grpc
from cbapi.spider.v1 import spider_pb2 as pb
from cbapi.spider.v1 import spider_pb2_grpc
from tests import servers
from tests.support.dragonfly import eventually, healthy_agent

Stub = dragonfly_pb2_grpc.DragonflyStub


async def agent_vm(stub: spider_pb2_grpc.SpiderStub, df: Stub, twin: servers.Server,
                   mcis: str) -> tuple[servers.TwinConnection, pb.Vm, dpb.GetAgentRequest]:
    provider, region = (await servers.twin_regions(twin))[0]
    conn = await servers.make_connection(stub, twin, provider, region)
    spec = (await stub.ListSpecs(pb.ListSpecsRequest(connection=conn.name))).specs[0].name
    image = (await stub.ListImages(pb.ListImagesRequest(connection=conn.name))).images[0].name
    ref = dpb.GetAgentRequest(ns="ns-twin", mcis=mcis, vm="vm-1")
    cred = await df.IssueAgentCredential(dpb.IssueAgentCredentialRequest(ns=ref.ns, mcis=ref.mcis, vm=ref.vm))
    vm = await stub.CreateVm(pb.CreateVmRequest(connection=conn.name, vm=pb.Vm(
        iid=common.IID(name="vm-1"), image=image, spec=spec, user_data=cred.user_data)))
    return conn, vm, ref


def free_port_on(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


async def test_a_twin_vm_runs_an_agent_whose_commands_serve_on_the_vms_ip(
        spider_client: spider_pb2_grpc.SpiderStub, cloudtwin_process: servers.Server, dragonfly_client: Stub) -> None:
    conn, vm, ref = await agent_vm(spider_client, dragonfly_client, cloudtwin_process, f"m-{uuid.uuid4().hex[:6]}")
    agent = await healthy_agent(dragonfly_client, ref)
    assert agent.kind == "twin" and agent.ip == vm.private_ip and agent.ip.startswith("127.")
    port = free_port_on(agent.ip)
    run = await dragonfly_client.RunCommand(dpb.RunCommandRequest(
        ns=ref.ns, mcis=ref.mcis, vm=ref.vm, timeout_s=10,
        command=f"echo hello from $CB_VM_NAME > hello.txt; "
                f"nohup python3 -m http.server --bind $CB_VM_IP {port} > server.log 2>&1 & echo $CB_VM_IP"))
    assert run.exit_code == 0 and run.stdout.strip() == agent.ip
    url = f"http://{agent.ip}:{port}/hello.txt"

    async def serving() -> bool:
        try:
            async with httpx.AsyncClient(timeout=1) as http:
                return (await http.get(url)).text == "hello from vm-1\n"
        except httpx.HTTPError:
            return False

    await eventually(serving, 10, f"a server at {url}")
    live = await dragonfly_client.ReadVmMetrics(dpb.ReadVmMetricsRequest(ns=ref.ns, mcis=ref.mcis, vm=ref.vm))
    assert live.groups["cpu"].values["cores"] >= 1 and live.groups["memory"].values["total_bytes"] > 0

    # The VM stops: its agent and everything it started go with it.
    await spider_client.SuspendVm(pb.VmActionRequest(connection=conn.name, name="vm-1"))
    await eventually(lambda: _unhealthy(dragonfly_client, ref), 10, "the agent gone with the VM")

    async def not_serving() -> bool:
        return not await serving()

    await eventually(not_serving, 5, "the server gone with the VM")
    await spider_client.DeleteVm(pb.DeleteResourceRequest(connection=conn.name, name="vm-1"))


async def _unhealthy(df: Stub, ref: dpb.GetAgentRequest) -> bool:
    return (await df.GetAgent(ref)).health == dpb.UNHEALTHY


async def test_guests_boot_again_after_an_emulator_restart(
        spider_client: spider_pb2_grpc.SpiderStub, dragonfly_client: Stub, run_dir: Path) -> None:
    twin = await servers.start_cloudtwin(run_dir / "twin-guests", CB_CLOUDTWIN_PROVIDERS="1",
                                         CB_CLOUDTWIN_BOOT_LATENCY="0.2",
                                         CB_CLOUDTWIN_STATE_FILE=str(run_dir / "twin-guests" / "state.bin"),
                                         CB_CLOUDTWIN_GUEST_DIR=str(run_dir / "twin-guests" / "guests"))
    try:
        conn, _, ref = await agent_vm(spider_client, dragonfly_client, twin, f"m-{uuid.uuid4().hex[:6]}")
        first = await healthy_agent(dragonfly_client, ref)
        twin.stop()
        await servers.restart(twin)
        again = await healthy_agent(dragonfly_client, ref, boot_not=first.boot)
        assert again.ip == first.ip
        await spider_client.DeleteVm(pb.DeleteResourceRequest(connection=conn.name, name="vm-1"))
        await eventually(lambda: _unhealthy(dragonfly_client, ref), 10, "the agent gone with the terminated VM")
    finally:
        twin.stop()
