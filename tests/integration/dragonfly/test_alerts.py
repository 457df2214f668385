"""Alert rules through dragonfly's API, judged on real agents over NATS with JWT auth: an agent
killed turns unhealthy and fires its alert (stored, published, delivered to a webhook that fails
once first); a CPU threshold fires on a twin guest's load and resolves when the load ends."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import nats as nats_py
import pytest
import pytest_asyncio
from nats.aio.msg import Msg

from cbapi.dragonfly.v1 import dragonfly_pb2 as pb
from cbapi.dragonfly.v1 import dragonfly_pb2_grpc
from tests.integration.dragonfly.conftest import start_agent
from tests.support.dragonfly import eventually
from tests.support.nats import Nats, subscribed

Stub = dragonfly_pb2_grpc.DragonflyStub
NS = "ns-alerts"


@dataclass
class Hook:
    """A webhook receiver on 127.0.0.1 that answers 500 to its first `fail_first` requests."""

    fail_first: int = 1
    bodies: list[dict[str, object]] = field(default_factory=list)
    attempts: int = 0
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        body = await reader.readexactly(length)
        self.attempts += 1
        status = b"500 Internal Server Error" if self.attempts <= self.fail_first else b"200 OK"
        if status == b"200 OK":
            self.bodies.append(json.loads(body))
        writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()


@pytest_asyncio.fixture(loop_scope="session")
async def hook() -> AsyncIterator[Hook]:
    receiver = Hook()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    yield receiver
    server.close()
    await server.wait_closed()


async def events_of(df: Stub, rule: str) -> list[pb.AlertEvent]:
    got = await df.ListAlertEvents(pb.ListAlertEventsRequest(ns=NS, page_size=1000))
    return [e for e in got.events if e.rule == rule]


async def states(df: Stub, rule: str) -> list[int]:
    return [e.state for e in await events_of(df, rule)]


def has(df: Stub, rule: str, wanted: list[int]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await states(df, rule) == wanted
    return check


async def test_alert_rules_crud_and_validation(dragonfly_client: Stub, hook: Hook) -> None:
    rule = pb.AlertRule(name="hot", metric="cpu.utilization_percent", operator=">", threshold=90, for_s=30,
                        webhook_url=hook.url)
    # A rule watches something dragonfly monitors: an agent's credential makes the namespace known.
    await dragonfly_client.IssueAgentCredential(pb.IssueAgentCredentialRequest(ns=NS, mcis="crud", vm="vm-1"))
    made = await dragonfly_client.CreateAlertRule(pb.CreateAlertRuleRequest(ns=NS, rule=rule))
    try:
        assert made.kind == "metric" and made.severity == pb.WARNING and made.ns == NS and made.created_time.seconds
        assert await dragonfly_client.GetAlertRule(pb.GetAlertRuleRequest(ns=NS, name="hot")) == made
        listed = await dragonfly_client.ListAlertRules(pb.ListAlertRulesRequest(ns=NS))
        assert "hot" in [r.name for r in listed.rules]
        rule.threshold, rule.severity = 95, pb.CRITICAL
        changed = await dragonfly_client.UpdateAlertRule(pb.UpdateAlertRuleRequest(ns=NS, name="hot", rule=rule))
        assert changed.threshold == 95 and changed.severity == pb.CRITICAL and changed.created_time == made.created_time
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await dragonfly_client.CreateAlertRule(pb.CreateAlertRuleRequest(ns=NS, rule=rule))
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS and "hot" in (err.value.details() or "")
        bad = [pb.AlertRule(name="b", metric="cpu", operator=">"), pb.AlertRule(name="b", metric="gpu.x", operator=">"),
               pb.AlertRule(name="b", metric="cpu.utilization_percent", operator="=="),
               pb.AlertRule(name="b", kind="agent.dead"), pb.AlertRule(name="b", kind="agent.unhealthy", vm="x"),
               pb.AlertRule(name="b", kind="agent.unhealthy", webhook_url="ftp://x"),
               pb.AlertRule(name="B", kind="agent.unhealthy"), pb.AlertRule(name="b", kind="agent.unhealthy", for_s=-1)]
        bad.append(pb.AlertRule(name="b", metric="cpu.no_such_field", operator=">"))
        for body in bad:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await dragonfly_client.CreateAlertRule(pb.CreateAlertRuleRequest(ns=NS, rule=body))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, body
        unknown = [(NS, pb.AlertRule(name="b", kind="agent.unhealthy", mcis="no-such-mcis")),
                   (NS, pb.AlertRule(name="b", kind="agent.unhealthy", mcis="crud", vm="no-such-vm")),
                   ("no-such-ns", pb.AlertRule(name="b", kind="agent.unhealthy"))]
        for ns, body in unknown:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await dragonfly_client.CreateAlertRule(pb.CreateAlertRuleRequest(ns=ns, rule=body))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND, body
    finally:
        await dragonfly_client.DeleteAlertRule(pb.DeleteAlertRuleRequest(ns=NS, name="hot"))
    for call in (dragonfly_client.GetAlertRule(pb.GetAlertRuleRequest(ns=NS, name="hot")),
                 dragonfly_client.DeleteAlertRule(pb.DeleteAlertRuleRequest(ns=NS, name="hot")),
                 dragonfly_client.UpdateAlertRule(pb.UpdateAlertRuleRequest(ns=NS, name="hot", rule=rule))):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_killed_agent_turns_unhealthy_and_fires_its_alert(dragonfly_client: Stub, run_dir: Path, nats_process: Nats,
                                                                   hook: Hook) -> None:
    mcis = f"m-{uuid.uuid4().hex[:6]}"
    rule = pb.AlertRule(name=f"down-{mcis}", mcis=mcis, kind="agent.unhealthy", severity=pb.CRITICAL,
                        webhook_url=hook.url)
    cred = await dragonfly_client.IssueAgentCredential(pb.IssueAgentCredentialRequest(ns=NS, mcis=mcis, vm="vm-1"))
    await dragonfly_client.CreateAlertRule(pb.CreateAlertRuleRequest(ns=NS, rule=rule))
    nc = await nats_py.connect(nats_process.url, **nats_process.harness_creds.client_options())
    published: list[dict[str, object]] = []

    async def heard(msg: Msg) -> None:
        published.append(json.loads(msg.data))

    await subscribed(nc, f"cb.alerts.{NS}.{mcis}", cb=heard)
    ref = pb.GetAgentRequest(ns=NS, mcis=mcis, vm="vm-1")
    agent = start_agent(run_dir, f"{mcis}-vm-1", cred.user_data)
    try:
        async def healthy() -> bool:
            try:
                return (await dragonfly_client.GetAgent(ref)).health == pb.HEALTHY
            except grpc.aio.AioRpcError:
                return False

        await eventually(healthy, 30, "a healthy agent")
        interval = (await dragonfly_client.GetAgent(ref)).interval_s
        agent.kill()
        t_kill = time.monotonic()

        async def unhealthy() -> bool:
            return (await dragonfly_client.GetAgent(ref)).health == pb.UNHEALTHY

        await eventually(unhealthy, 10, "unhealthy")
        took_unhealthy = time.monotonic() - t_kill
        await eventually(has(dragonfly_client, rule.name, [pb.FIRING]), 10, "the alert fired")
        took_alert = time.monotonic() - t_kill
        assert took_unhealthy <= 3 * interval, took_unhealthy
        # The alert follows the health verdict within one evaluation tick and an etcd write.
        assert took_alert <= 3 * interval + 0.5, took_alert
        fired = (await events_of(dragonfly_client, rule.name))[0]
        assert fired.vm == "vm-1" and fired.severity == pb.CRITICAL and fired.value > 2.5 * interval
        await eventually(lambda: _true(len(hook.bodies) >= 1), 10, "the webhook delivery")
        # The receiver failed the first attempt: delivered on a retry.
        assert hook.attempts >= 2 and hook.bodies[0]["id"] == fired.id and hook.bodies[0]["state"] == "FIRING"
        assert [p["id"] for p in published] == [fired.id]
        # The agent comes back: the alert resolves.
        agent = start_agent(run_dir, f"{mcis}-vm-1", cred.user_data)
        await eventually(has(dragonfly_client, rule.name, [pb.FIRING, pb.RESOLVED]), 30, "the alert resolved")
        await eventually(lambda: _true(len(published) == 2 and len(hook.bodies) == 2), 10, "the resolution sent")
        assert hook.bodies[1]["state"] == "RESOLVED"
    finally:
        agent.stop()
        await nc.close()
        await dragonfly_client.DeleteAlertRule(pb.DeleteAlertRuleRequest(ns=NS, name=rule.name))


async def _true(value: bool) -> bool:
    return value


async def test_a_cpu_threshold_fires_on_a_twins_load_and_resolves(dragonfly_client: Stub, run_dir: Path) -> None:
    mcis = f"m-{uuid.uuid4().hex[:6]}"
    rule = pb.AlertRule(name=f"hot-{mcis}", mcis=mcis, vm="twin-1", metric="cpu.utilization_percent", operator=">",
                        threshold=40, for_s=2)
    cred = await dragonfly_client.IssueAgentCredential(pb.IssueAgentCredentialRequest(ns=NS, mcis=mcis, vm="twin-1"))
    await dragonfly_client.CreateAlertRule(pb.CreateAlertRuleRequest(ns=NS, rule=rule))
    sandbox = run_dir / "twins" / mcis
    # A CloudTwin guest host, ordered over stdin as the emulator does: synthesized load plus its commands' CPU.
    guests = subprocess.Popen([sys.executable, "-m", "dragonfly.agent.guests"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=(run_dir / f"guests-{mcis}.log").open("w"))
    assert guests.stdin is not None
    twin = {"ip": "127.0.0.1", "vcpu": 1, "memory_bytes": 1 << 30, "disk_bytes": 10 << 30, "sandbox": str(sandbox)}
    guests.stdin.write(json.dumps({"op": "boot", "id": "twin-1", "user_data": cred.user_data, "twin": twin}).encode()
                       + b"\n")
    guests.stdin.flush()
    try:
        async def cpu_seen() -> bool:
            got = await dragonfly_client.QueryVmMetrics(pb.QueryVmMetricsRequest(ns=NS, mcis=mcis, vm="twin-1", group="cpu"))
            return bool(got.series and len(got.series[0].points) >= 3)

        await eventually(cpu_seen, 30, "the twin's points")
        assert await states(dragonfly_client, rule.name) == []  # idle: synthesized load stays under 40 %
        echo = await dragonfly_client.RunCommand(pb.RunCommandRequest(ns=NS, mcis=mcis, vm="twin-1",
                                                                      command="echo $CB_VM_NAME"))
        assert echo.stdout == "twin-1\n", echo
        burn = asyncio.ensure_future(dragonfly_client.RunCommand(pb.RunCommandRequest(
            ns=NS, mcis=mcis, vm="twin-1", command="(while :; do :; done) & while :; do :; done", timeout_s=6)))
        await eventually(has(dragonfly_client, rule.name, [pb.FIRING]), 15, "the CPU alert fired")
        fired = (await events_of(dragonfly_client, rule.name))[0]
        assert fired.value > 40 and fired.metric == "cpu.utilization_percent" and fired.threshold == 40
        result = await burn
        assert result.timed_out
        await eventually(has(dragonfly_client, rule.name, [pb.FIRING, pb.RESOLVED]), 15, "the CPU alert resolved")
        resolved = (await events_of(dragonfly_client, rule.name))[1]
        assert resolved.value <= 40 and "no longer holds" in resolved.message
    finally:
        guests.stdin.close()
        try:
            guests.wait(10)
        except subprocess.TimeoutExpired:
            guests.kill()
        await dragonfly_client.DeleteAlertRule(pb.DeleteAlertRuleRequest(ns=NS, name=rule.name))
