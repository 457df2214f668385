"""NATS in operator mode: services and agents connect with their own JWT credentials;
an agent can neither publish as another VM nor read another agent's requests."""

from __future__ import annotations

import asyncio

import nats as nats_py
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from dragonfly.protocol.subjects import VmId
from services import natsauth
from tests.support.nats import Nats, server_has_read, subscribed


async def connect(server: Nats, creds: natsauth.Creds, errors: list[str] | None = None,
                  inbox: str = "_INBOX") -> Client:
    async def on_error(err: Exception) -> None:
        if errors is not None:
            errors.append(str(err))

    return await nats_py.connect(server.url, error_cb=on_error, allow_reconnect=False, inbox_prefix=inbox,
                                 **creds.client_options())


def agent_creds(server: Nats, vm: VmId) -> natsauth.Creds:
    return server.signer.issue(vm.key, vm.permissions())


async def test_anonymous_and_foreign_credentials_are_refused(nats_process: Nats) -> None:
    with pytest.raises(Exception, match="Authorization"):
        await nats_py.connect(nats_process.url, allow_reconnect=False, max_reconnect_attempts=0)
    stranger = natsauth.Authority.create().signer.issue("x", natsauth.Permissions(unrestricted=True))
    with pytest.raises(Exception, match="Authorization"):
        await connect(nats_process, stranger)


async def test_forged_publish_is_refused_by_the_server(nats_process: Nats) -> None:
    a, b = VmId("ns1", "m1", "vm-a"), VmId("ns1", "m1", "vm-b")
    service = await connect(nats_process, nats_process.harness_creds)
    seen: list[str] = []

    async def on_metric(msg: Msg) -> None:
        seen.append(msg.subject)

    await subscribed(service, "cb.metrics.>", cb=on_metric)
    errors: list[str] = []
    agent = await connect(nats_process, agent_creds(nats_process, a), errors, a.inbox_prefix)
    await agent.publish(a.metrics, b"mine")
    await agent.publish(b.metrics, b"forged")
    await agent.publish("cb.metrics.other.m1.vm-a", b"forged")
    await agent.flush()
    await asyncio.sleep(0.3)
    assert seen == [a.metrics]
    assert sum("permissions violation for publish" in e.lower() for e in errors) == 2, errors
    await agent.close()
    await service.close()


async def test_an_agent_cannot_read_another_agents_commands_or_benchmarks(nats_process: Nats) -> None:
    a, b = VmId("ns1", "m1", "vm-a"), VmId("ns1", "m1", "vm-b")
    service = await connect(nats_process, nats_process.harness_creds)
    errors: list[str] = []
    spy = await connect(nats_process, agent_creds(nats_process, a), errors, a.inbox_prefix)
    stolen: list[bytes] = []

    async def steal(msg: Msg) -> None:
        stolen.append(msg.data)

    # Each refused by the server before the owner's request goes out (not merely not read yet).
    for subject in (b.request("cmd"), b.request("bench"), "cb.agent.>", ">", "_INBOX.>"):
        await subscribed(spy, subject, cb=steal)
    owner = await connect(nats_process, agent_creds(nats_process, b), inbox=b.inbox_prefix)

    async def answer(msg: Msg) -> None:
        await msg.respond(b"done:" + msg.data)

    await subscribed(owner, b.requests, cb=answer)
    reply = await service.request(b.request("cmd"), b"secret", timeout=5)
    assert reply.data == b"done:secret"
    await asyncio.sleep(0.2)
    assert stolen == []
    assert sum("permissions violation for subscription" in e.lower() for e in errors) == 5, errors
    for client in (spy, owner, service):
        await client.close()


def test_nkeys_round_trip() -> None:
    key = natsauth.KeyPair.generate(natsauth.USER)
    again = natsauth.KeyPair.from_seed(key.seed)
    assert key.public_key.startswith("U") and key.seed.startswith("SU")
    assert again.public_key == key.public_key and again.prefix == natsauth.USER
    with pytest.raises(ValueError):
        natsauth.KeyPair.from_seed(key.seed[:-2] + ("AA" if key.seed[-2:] != "AA" else "BB"))


async def test_dragonfly_user_has_only_the_subjects_it_needs(nats_process: Nats) -> None:
    vm = VmId("ns1", "m1", "vm-a")
    errors: list[str] = []
    df = await connect(nats_process, nats_process.dragonfly_creds, errors, natsauth.DRAGONFLY_INBOX)
    harness = await connect(nats_process, nats_process.harness_creds)
    heard: list[str] = []

    async def on(msg: Msg) -> None:
        heard.append(msg.subject)

    await subscribed(harness, ">", cb=on)
    # Allowed: what dragonfly sends (a request to an agent, an interval, an alert, an answer in an agent's inbox).
    for subject in (vm.request("cmd"), "cb.config.ns1.m1", "cb.alerts.ns1.m1", f"{vm.inbox_prefix}.x.1"):
        await df.publish(subject, b"ok")
    # Refused: speaking as an agent, or outside the suite's subjects.
    for subject in (vm.register, vm.metrics, vm.heartbeat, "$SYS.REQ.CLAIMS.UPDATE", "anything"):
        await df.publish(subject, b"forged")
    for subject in (">", "cb.agent.>", "_INBOX.>"):
        await df.subscribe(subject)
    await server_has_read(df)
    await asyncio.sleep(0.3)
    assert sorted(heard) == sorted([vm.request("cmd"), "cb.config.ns1.m1", "cb.alerts.ns1.m1",
                                    f"{vm.inbox_prefix}.x.1"])
    assert sum("permissions violation for publish" in e.lower() for e in errors) == 5, errors
    assert sum("permissions violation for subscription" in e.lower() for e in errors) == 3, errors
    await df.close()
    await harness.close()
