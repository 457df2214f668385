"""Remote commands over SSH: VMs without an agent are reached with the SSH key tumblebug holds.

CloudTwin serves SSH on each of its VMs made with a key pair and without an agent (on the VM's
own 127.x address), accepting that key for the image's login user and running commands in the
VM's sandbox. Tumblebug picks the path per VM: the agent when the VM has a healthy one, SSH
otherwise; a VM that cannot be reached is an error on that VM, not a failed call.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as tw_grpc
from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services.rpc.client import channel
from services.store import Store
from tests import servers
from tests.helpers import expect_error
from tests.integration.tumblebug.helpers import cheapest_spec_and_image, connections, namespace, settled_at, wait_mcis
from tumblebug import keyspace


async def _command(tb: tumblebug_pb2_grpc.TumblebugStub, ns: str, mcis: str, command: str, *,
                   vm: str = "", timeout_s: float = 0.0, ready: int = 0) -> dict[str, pb.VmCommandResult]:
    """Results by VM; with `ready`, asked again until that many VMs answered and no VM's SSH server
    refused the connection (a twin VM's SSH server starts within a moment of the VM running, so a VM
    whose login is meant to fail may not be listening yet when the others answer)."""
    deadline = time.monotonic() + 30
    while True:
        reply = await tb.RunMcisCommand(pb.McisCommandRequest(namespace=ns, name=mcis, command=command, vm=vm,
                                                              timeout_s=timeout_s))
        results = {r.vm: r for r in reply.results}
        answered = sum(1 for r in results.values() if r.HasField("result"))
        starting = ready and any("connection refused" in r.error for r in results.values())
        if (answered >= ready and not starting) or time.monotonic() > deadline:
            return results
        await asyncio.sleep(0.3)


def _body(private_key: str) -> list[str]:
    """The base64 lines of a private key: what must never appear anywhere but in its one answer."""
    return [line for line in private_key.splitlines() if line and "PRIVATE KEY" not in line]


async def _etcd_values(etcd: servers.Server) -> list[tuple[str, bytes]]:
    store = Store.from_endpoints(etcd.address)
    try:
        items, _ = await store.snapshot("/")
    finally:
        await store.close()
    return [(k, v) for k, v, _ in items]


async def test_commands_over_ssh_on_an_mcis_without_agents(
        tumblebug_client: tumblebug_pb2_grpc.TumblebugStub, spider_client: spider_pb2_grpc.SpiderStub,
        cloudtwin_process: servers.Server, etcd_process: servers.Server) -> None:
    ns = await namespace(tumblebug_client)
    conn = (await connections(spider_client, cloudtwin_process, 1))[0]
    spec, image = await cheapest_spec_and_image(spider_client, conn.name)
    made = await tumblebug_client.CreateMcisDynamic(pb.CreateMcisDynamicRequest(namespace=ns, name="plain",
                                                                                install_agent=False,
                                                                 subgroups=[pb.DynamicSubgroup(
        name="g", spec_id=f"{conn.name}+{spec}", image_id=image, size=3)]))
    assert made.subgroups[0].ssh_user in ("ubuntu", "admin", "rocky")  # from the image's OS
    await wait_mcis(tumblebug_client, ns, "plain", settled_at("Running"))
    vms = {v.name: v for v in (await tumblebug_client.ListMcisVms(pb.ListMcisVmsRequest(namespace=ns, mcis="plain"))).vms}
    for vm in vms.values():
        assert vm.ssh_access_point.startswith(f"{vm.private_ip}:")

    started = time.monotonic()
    ran = await _command(tumblebug_client, ns, "plain", 'echo "hello from $CB_VM_IP"; hostname', ready=3)
    took = time.monotonic() - started
    assert sorted(ran) == ["g-1", "g-2", "g-3"]
    for name, r in ran.items():
        assert r.via == "ssh" and not r.error, r
        assert r.result.exit_code == 0 and not r.result.timed_out
        lines = r.result.stdout.splitlines()
        assert lines[0] == f"hello from {vms[name].private_ip}" and lines[1]  # each ran inside its own VM
    print(f"3 VMs over SSH: {took:.3f}s, per VM {[round(r.result.duration_s, 3) for r in ran.values()]}")
    # Each VM's own host key was pinned at that first login.
    pinned = {v.name: v.ssh_host_key for v in (await tumblebug_client.ListMcisVms(pb.ListMcisVmsRequest(
        namespace=ns, mcis="plain"))).vms}
    assert all(k.startswith("ssh-ed25519 ") for k in pinned.values()) and len(set(pinned.values())) == 3, pinned

    failing = await _command(tumblebug_client, ns, "plain", "echo out; echo err >&2; exit 7", vm="g-2")
    assert list(failing) == ["g-2"]
    assert (failing["g-2"].result.exit_code, failing["g-2"].result.stdout, failing["g-2"].result.stderr) == \
        (7, "out\n", "err\n")

    started = time.monotonic()
    slow = await _command(tumblebug_client, ns, "plain", "sleep 5; echo never", vm="g-1", timeout_s=0.5)
    assert time.monotonic() - started < 4
    assert slow["g-1"].via == "ssh" and slow["g-1"].result.timed_out
    assert "timed out" in slow["g-1"].result.error and "never" not in slow["g-1"].result.stdout

    await tumblebug_client.SuspendMcis(pb.McisActionRequest(namespace=ns, name="plain", vm="g-3", wait=True))
    partial = await _command(tumblebug_client, ns, "plain", "true")
    assert partial["g-1"].result.exit_code == 0 and partial["g-2"].result.exit_code == 0
    assert partial["g-3"].error == "VM is Suspended" and not partial["g-3"].via
    # Its host key is on its disk: resumed, it answers with the key pinned before.
    await tumblebug_client.ResumeMcis(pb.McisActionRequest(namespace=ns, name="plain", vm="g-3", wait=True))
    again = await _command(tumblebug_client, ns, "plain", "true", vm="g-3", ready=1)
    assert again["g-3"].result.exit_code == 0, again["g-3"]

    # A VM that answers with another key than the pinned one is refused before the command goes.
    store = Store.from_endpoints(etcd_process.address)
    try:
        def swap(record: pb.McisVm) -> pb.McisVm:
            record.ssh_host_key = pinned["g-2"]
            return record
        await store.modify(keyspace.vm(ns, "plain", "g-1"), pb.McisVm, swap, "VM g-1")
    finally:
        await store.close()
    spoofed = await _command(tumblebug_client, ns, "plain", "touch ran", vm="g-1")
    assert spoofed["g-1"].via == "ssh" and "another SSH host key" in spoofed["g-1"].error, spoofed["g-1"]

    # Nothing in etcd is a private key in plain text (spider's records and tumblebug's alike).
    default_key = keyspace.secret(ns, "ssh-keys", made.subgroups[0].ssh_key)
    values = dict(await _etcd_values(etcd_process))
    assert default_key in values
    assert not [k for k, v in values.items() if b"PRIVATE KEY" in v]
    await tumblebug_client.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name="plain", terminate=True, wait=True))


async def _legacy_vm(twin: servers.Server, conn: servers.TwinConnection, spec: str, image: str,
                     key_pair_id: str) -> tw.Resource:
    """A VM made in the cloud directly with a key pair, as another tool would."""
    async with channel(twin.address) as ch:
        return await tw_grpc.CloudTwinStub(ch).CreateResource(tw.CreateResourceRequest(
            provider=conn.provider, region=conn.region, name=f"legacy-{uuid.uuid4().hex[:4]}",
            vm=tw.VmProps(spec=spec, image_id=image, key_pair_id=key_pair_id)),
            metadata=(("x-twin-access-key", conn.access_key), ("x-twin-secret-key", conn.secret_key)))


async def test_registered_vms_are_reached_with_their_key_and_user(
        tumblebug_client: tumblebug_pb2_grpc.TumblebugStub, spider_client: spider_pb2_grpc.SpiderStub,
        cloudtwin_process: servers.Server, etcd_process: servers.Server) -> None:
    ns = await namespace(tumblebug_client)
    conn = (await connections(spider_client, cloudtwin_process, 1))[0]
    spec, image = await cheapest_spec_and_image(spider_client, conn.name)

    async def key(name: str, given: pb.SshKey) -> pb.Resource:
        return await tumblebug_client.CreateResource(pb.CreateResourceRequest(namespace=ns, collection="ssh-keys",
                                                                              resource=pb.Resource(
            name=name, connection=conn.name, ssh_key=given)))

    right = await key("right", pb.SshKey())
    private = right.ssh_key.private_key
    assert "PRIVATE KEY" in private and right.ssh_key.private_key_held  # generated: returned this once
    given = await key("given", pb.SshKey(private_key=private))  # imported with its private key
    assert given.ssh_key.public_key == right.ssh_key.public_key and given.ssh_key.private_key_held
    assert not given.ssh_key.private_key
    await key("wrong", pb.SshKey())
    pubonly = await key("pubonly", pb.SshKey(public_key=right.ssh_key.public_key))
    assert not pubonly.ssh_key.private_key_held and not pubonly.ssh_key.private_key

    await tumblebug_client.CreateMcisDynamic(pb.CreateMcisDynamicRequest(namespace=ns, name="reg", install_agent=False,
                                                                         subgroups=[
        pb.DynamicSubgroup(name="g", spec_id=f"{conn.name}+{spec}", image_id=image, size=1)], wait=True))
    legacy = [await _legacy_vm(cloudtwin_process, conn, spec, image, right.iid.csp_id) for _ in range(4)]
    for subgroup, vm, ssh_key, user in (("good", legacy[0], "given", ""), ("badkey", legacy[1], "wrong", ""),
                                        ("baduser", legacy[2], "right", "nobody"), ("nokey", legacy[3], "pubonly", "")):
        await tumblebug_client.RegisterVms(pb.RegisterVmsRequest(namespace=ns, mcis="reg", subgroup=subgroup,
                                                                 connection=conn.name,
                                                   vms=[pb.RegisteredVm(name=subgroup, csp_id=vm.id)],
                                                   ssh_key=ssh_key, ssh_user=user))
    await wait_mcis(tumblebug_client, ns, "reg", settled_at("Running"))

    ran = await _command(tumblebug_client, ns, "reg", "echo $CB_VM_NAME", ready=2)
    assert {name: r.via for name, r in ran.items()} == {n: "ssh" for n in ("g-1", "good", "badkey", "baduser", "nokey")}
    assert ran["g-1"].result.exit_code == 0
    assert ran["good"].result.stdout == f"{legacy[0].name}\n"  # the twin VM's own name
    assert "login refused" in ran["badkey"].error and "login refused" in ran["baduser"].error
    assert "nobody@" in ran["baduser"].error
    assert "holds no private key for SSH key 'pubonly'" in ran["nokey"].error

    # The private key was in the create's answer only: no later answer and no etcd value holds it.
    answers = [
        await tumblebug_client.GetResource(pb.GetResourceRequest(namespace=ns, collection="ssh-keys", name="right")),
        await tumblebug_client.GetResource(pb.GetResourceRequest(namespace=ns, collection="ssh-keys", name="given")),
        await tumblebug_client.ListResources(pb.ListResourcesRequest(namespace=ns, collection="ssh-keys")),
        await tumblebug_client.GetMcis(pb.GetMcisRequest(namespace=ns, name="reg", vms=True)),
        await tumblebug_client.ListMcisVms(pb.ListMcisVmsRequest(namespace=ns, mcis="reg")),
        await tumblebug_client.RunMcisCommand(pb.McisCommandRequest(namespace=ns, name="reg",
                                                                    command="env; cat ~/.ssh/* || true")),
        await tumblebug_client.CreateResource(pb.CreateResourceRequest(namespace=ns, collection="ssh-keys",
                                                                       resource=pb.Resource(
            name="given", connection=conn.name, ssh_key=pb.SshKey(private_key=private)), request_id=given.request_id)),
    ]
    body = _body(private)
    for answer in answers:
        text = answer.SerializeToString()
        assert not any(line.encode() in text for line in body), type(answer).__name__
    values = dict(await _etcd_values(etcd_process))
    for etcd_key, value in values.items():
        assert not any(line.encode() in value for line in body), etcd_key
    assert {n for n in ("right", "given", "wrong", "pubonly") if keyspace.secret(ns, "ssh-keys", n) in values} == \
        {"right", "given", "wrong"}  # sealed, beside their records

    await expect_error(grpc.StatusCode.FAILED_PRECONDITION, tumblebug_client.DeleteResource(pb.DeleteResourceRequest(
        namespace=ns, collection="ssh-keys", name="given")))  # registered VMs log in with it
    await tumblebug_client.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name="reg", terminate=True, wait=True))
    for name in ("right", "given", "wrong", "pubonly"):
        await tumblebug_client.DeleteResource(pb.DeleteResourceRequest(namespace=ns, collection="ssh-keys", name=name))
    gone = {keyspace.secret(ns, "ssh-keys", n) for n in ("right", "given", "wrong")}
    assert not gone & {k for k, _ in await _etcd_values(etcd_process)}  # each key went with its resource



async def test_each_vm_takes_its_own_path(monitored_tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                          spider_client: spider_pb2_grpc.SpiderStub,
                                          cloudtwin_process: servers.Server) -> None:
    """In an MCIS with agents, a VM registered without one is reached over SSH in the same call."""
    tb = monitored_tumblebug_client
    ns = await namespace(tb)
    conn = (await connections(spider_client, cloudtwin_process, 1))[0]
    spec, image = await cheapest_spec_and_image(spider_client, conn.name)
    key = await tb.CreateResource(pb.CreateResourceRequest(namespace=ns, collection="ssh-keys", resource=pb.Resource(
        name="k", connection=conn.name, ssh_key=pb.SshKey())))
    await tb.CreateMcisDynamic(pb.CreateMcisDynamicRequest(namespace=ns, name="mixed", subgroups=[
        pb.DynamicSubgroup(name="g", spec_id=f"{conn.name}+{spec}", image_id=image, size=1)]))
    legacy = await _legacy_vm(cloudtwin_process, conn, spec, image, key.iid.csp_id)
    await tb.RegisterVms(pb.RegisterVmsRequest(namespace=ns, mcis="mixed", subgroup="old", connection=conn.name,
                                               vms=[pb.RegisteredVm(name="old", csp_id=legacy.id)], ssh_key="k"))
    await wait_mcis(tb, ns, "mixed", settled_at("Running"))
    deadline = time.monotonic() + 60  # the agent registers after boot; a loaded machine takes a while
    while (await tb.GetMcisVm(pb.GetMcisVmRequest(namespace=ns, mcis="mixed", name="g-1"))).agent_status != "Healthy":
        assert time.monotonic() < deadline, "the agent did not turn healthy"
        await asyncio.sleep(0.3)

    ran = await _command(tb, ns, "mixed", "echo $CB_VM_IP", ready=2)
    assert {name: r.via for name, r in ran.items()} == {"g-1": "agent", "old": "ssh"}
    assert all(r.result.exit_code == 0 and r.result.stdout.strip().startswith("127.") for r in ran.values())
    await tb.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name="mixed", terminate=True, wait=True))
