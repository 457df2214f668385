"""Revoking agents' credentials, enforced by the NATS server: a revoked credential can no longer
connect and its live connection is closed; a new credential for a VM name revokes the old one;
revocations outlive a dragonfly restart and a NATS restart."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import grpc
import nats as nats_py
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from cbapi.dragonfly.v1 import dragonfly_pb2 as pb
from cbapi.dragonfly.v1 import dragonfly_pb2_grpc
from dragonfly.protocol.subjects import VmId
from services import natsauth
from services.rpc.client import channel
from tests import servers
from tests.helpers import expect_error
from tests.support.dragonfly import start_dragonfly
from tests.support.nats import Nats, start_nats, subscribed

Stub = dragonfly_pb2_grpc.DragonflyStub


def new_vm(name: str = "vm-1") -> VmId:
    return VmId("ns-rev", f"m-{uuid.uuid4().hex[:6]}", name)


async def issue(df: Stub, vm: VmId, instance: str = "") -> pb.AgentCredential:
    return await df.IssueAgentCredential(pb.IssueAgentCredentialRequest(ns=vm.ns, mcis=vm.mcis, vm=vm.vm,
                                                                        instance=instance))


async def revoke(df: Stub, vm: VmId, instance: str = "") -> list[str]:
    done = await df.RevokeAgentCredential(pb.RevokeAgentCredentialRequest(ns=vm.ns, mcis=vm.mcis, vm=vm.vm,
                                                                          instance=instance))
    return list(done.users)


async def connect_as(server: Nats, vm: VmId, cred: pb.AgentCredential, closed: asyncio.Event | None = None) -> Client:
    """An agent's connection with its credential (no reconnects: a closed one stays closed)."""
    async def on_closed() -> None:
        if closed is not None:
            closed.set()

    return await nats_py.connect(server.url, allow_reconnect=False, inbox_prefix=vm.inbox_prefix,
                                 closed_cb=on_closed, **natsauth.Creds.parse(cred.creds).client_options())


async def refused(server: Nats, vm: VmId, cred: pb.AgentCredential) -> bool:
    try:
        nc = await connect_as(server, vm, cred)
    except Exception as err:  # nats-py raises its base Error with the server's words
        assert "authorization" in str(err).lower(), err
        return True
    await nc.close()
    return False


async def receives(got: asyncio.Queue[Msg], data: bytes, timeout: float) -> bool:
    """Whether a message carrying `data` arrives on `got` within `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while (await got.get()).data != data:
                pass
    except TimeoutError:
        return False
    return True


async def heard(server: Nats, vm: VmId, nc: Client) -> bool:
    """Whether a metric published on `nc` reaches a service subscribed to the VM's subject."""
    service = await nats_py.connect(server.url, **server.harness_creds.client_options())
    got: asyncio.Queue[Msg] = asyncio.Queue()
    try:
        await subscribed(service, vm.metrics, cb=got.put)
        metric = f"metric-{uuid.uuid4().hex}".encode()
        await nc.publish(vm.metrics, metric)
        # Generous: only a connection the server no longer serves takes this long.
        return await receives(got, metric, 10)
    finally:
        await service.close()


async def closed_within(closed: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(closed.wait(), timeout)
    except TimeoutError:
        return False
    return True


async def test_a_revoked_credential_is_refused_and_its_connection_closed(dragonfly_client: Stub, nats_process: Nats) -> None:
    vm = new_vm()
    cred = await issue(dragonfly_client, vm)
    closed = asyncio.Event()
    live = await connect_as(nats_process, vm, cred, closed)
    assert await heard(nats_process, vm, live)
    assert await revoke(dragonfly_client, vm) == [cred.user]
    # Answered once the server took the new account JWT: the live connection is closed by then.
    assert await closed_within(closed, 1.0)
    with pytest.raises(nats_py.errors.ConnectionClosedError):
        await live.publish(vm.metrics, b"{}")
    assert await refused(nats_process, vm, cred)
    assert await revoke(dragonfly_client, vm) == []  # idempotent
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, dragonfly_client.RevokeAgentCredential(
        pb.RevokeAgentCredentialRequest(ns="ns-rev", mcis="m", vm="a.b")), "vm")


async def test_a_new_credential_for_a_vm_name_revokes_the_old_one(dragonfly_client: Stub, nats_process: Nats) -> None:
    vm = new_vm("g-1")
    old = await issue(dragonfly_client, vm, instance="first")
    old_closed, new_closed = asyncio.Event(), asyncio.Event()
    await connect_as(nats_process, vm, old, old_closed)
    new = await issue(dragonfly_client, vm, instance="second")
    assert await closed_within(old_closed, 1.0) and await refused(nats_process, vm, old)
    current = await connect_as(nats_process, vm, new, new_closed)
    try:
        assert await heard(nats_process, vm, current)
        # A late revoke of the first VM of that name leaves the second alone.
        assert await revoke(dragonfly_client, vm, instance="first") == []
        assert await heard(nats_process, vm, current)
        # The same VM asking again (a create sent twice) keeps the credential it may have booted with.
        again = await issue(dragonfly_client, vm, instance="second")
        assert await heard(nats_process, vm, current)
        assert sorted(await revoke(dragonfly_client, vm, instance="second")) == sorted([new.user, again.user])
        assert await closed_within(new_closed, 1.0) and await refused(nats_process, vm, new)
    finally:
        await current.close()


async def test_revocations_survive_a_dragonfly_and_a_nats_restart(run_dir: Path) -> None:
    # Its own etcd and NATS: the revocation list is rebuilt from this etcd alone.
    root = run_dir / "revocation-restarts"
    etcd = await servers.start_etcd(root / "etcd")
    own = await start_nats(root / "nats")
    dragonfly = await start_dragonfly(root / "dragonfly", etcd, own)
    first, second = new_vm("a"), new_vm("b")
    try:
        async with channel(dragonfly.address) as ch:
            df = Stub(ch)
            cred_a, cred_b = await issue(df, first), await issue(df, second)
            await revoke(df, first)
            assert await refused(own, first, cred_a)
            dragonfly.stop()
            await servers.restart(dragonfly)
            # The new account JWT carries the revocation from before the restart as well.
            assert await revoke(df, second) == [cred_b.user]
            assert await refused(own, first, cred_a) and await refused(own, second, cred_b)
            third = new_vm("c")
            fresh = await issue(df, third)
            own.proc.stop()
            await own.restart()
            # The server keeps the pushed account JWT in its resolver directory.
            assert await refused(own, first, cred_a) and await refused(own, second, cred_b)
            assert not await refused(own, third, fresh)
    finally:
        dragonfly.stop()
        own.proc.stop()
        etcd.stop()
