"""An agent's credential reaches no other tenant through a reply subject, and a flood of junk
from one agent neither grows dragonfly's log nor gets past its rate limit.

The attacker is a real agent credential, minted by dragonfly for a VM of another namespace,
used against the shared NATS and dragonfly; the victim is a real cb-agent process."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import nats as nats_py
import pytest_asyncio
from nats.aio.client import Client
from nats.aio.msg import Msg

from cbapi.dragonfly.v1 import dragonfly_pb2 as pb
from dragonfly.protocol.subjects import VmId, mcis_config
from services import natsauth
from services import processes as procs
from tests import servers
from tests.integration.dragonfly.conftest import start_agent
from tests.support.dragonfly import Stub, eventually
from tests.support.nats import Nats, subscribed


@dataclass
class Victim:
    vm: VmId
    ref: pb.GetAgentRequest
    proc: procs.Proc


@pytest_asyncio.fixture(loop_scope="session")
async def victim(dragonfly_client: Stub, run_dir: Path) -> AsyncIterator[Victim]:
    vm = VmId("tenant-b", f"m-{uuid.uuid4().hex[:6]}", "vm-1")
    cred = await dragonfly_client.IssueAgentCredential(pb.IssueAgentCredentialRequest(ns=vm.ns, mcis=vm.mcis, vm=vm.vm))
    proc = start_agent(run_dir, f"victim-{vm.mcis}", cred.user_data)
    ref = pb.GetAgentRequest(ns=vm.ns, mcis=vm.mcis, vm=vm.vm)

    async def healthy() -> bool:
        try:
            return (await dragonfly_client.GetAgent(ref)).health == pb.HEALTHY
        except grpc.aio.AioRpcError:
            return False

    try:
        await eventually(healthy, 30, "the victim's agent")
        yield Victim(vm, ref, proc)
    finally:
        proc.stop()


async def attacker(df: Stub, nats: Nats) -> tuple[VmId, Client]:
    """A connection with a real agent credential of a VM in another namespace, as taken from its user-data."""
    vm = VmId("tenant-a", f"m-{uuid.uuid4().hex[:6]}", "evil")
    cred = await df.IssueAgentCredential(pb.IssueAgentCredentialRequest(ns=vm.ns, mcis=vm.mcis, vm=vm.vm))
    creds = natsauth.Creds.parse(cred.creds)
    nc = await nats_py.connect(nats.url, inbox_prefix=vm.inbox_prefix.encode(), allow_reconnect=False,
                               **creds.client_options())
    return vm, nc


def dropped(dragonfly: servers.Server) -> dict[tuple[str, str], float]:
    """dragonfly's cb_dragonfly_agent_messages_dropped_total by (reason, kind), from its /metrics."""
    port = dragonfly.env["CB_DRAGONFLY_METRICS_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, str], float] = {}
    for m in re.finditer(r"^cb_dragonfly_agent_messages_dropped_total\{([^}]*)\} (\S+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m[1]))
        out[(labels["reason"], labels["kind"])] = float(m[2])
    return out


async def agent_interval(nats: Nats, vm: VmId) -> float:
    nc = await nats_py.connect(nats.url, **nats.harness_creds.client_options())
    try:
        reply = await nc.request(vm.request("status"), b"{}", timeout=3)
    finally:
        await nc.close()
    return float(json.loads(reply.data)["interval_s"])


async def test_replies_steered_at_another_tenant_are_refused(dragonfly_client: Stub, nats_process: Nats,
                                                             dragonfly_process: servers.Server,
                                                             victim: Victim) -> None:
    before = await dragonfly_client.GetAgent(victim.ref)
    interval_before = await agent_interval(nats_process, victim.vm)
    # Everything published on the victim's subjects while the attacks run.
    spy = await nats_py.connect(nats_process.url, **nats_process.harness_creds.client_options())
    heard: list[str] = []

    async def on(msg: Msg) -> None:
        heard.append(msg.subject)

    targets = [victim.vm.register, victim.vm.request("bench"), mcis_config(victim.vm.ns, victim.vm.mcis)]
    # Held by the server before the attacks: else `heard == []` below would hold for a spy deaf to them.
    for subject in targets:
        await subscribed(spy, subject, cb=on)
    evil, nc = await attacker(dragonfly_client, nats_process)
    try:
        # The attacker may do what an agent does: registering, with its own inbox, is answered.
        answer = await nc.request(evil.register, json.dumps({"hostname": "evil", "interval_s": 1}).encode(), timeout=5)
        assert "interval_s" in json.loads(answer.data)
        drops_before = dropped(dragonfly_process).get(("foreign_reply", "register"), 0.0)
        batch = json.dumps({"boot": "b", "seq": 1, "time": 1.0, "groups": {}}).encode()
        registration = json.dumps({"hostname": "evil", "interval_s": 1}).encode()
        for reply in targets:
            await nc.publish(evil.register, registration, reply=reply)
            await nc.publish(evil.metrics, batch, reply=reply)
            await nc.publish(evil.metrics, b"x", reply=reply)
        await nc.flush()

        async def all_counted() -> bool:
            got = dropped(dragonfly_process)
            return (got.get(("foreign_reply", "register"), 0.0) >= drops_before + 3
                    and got.get(("foreign_reply", "metrics"), 0.0) >= 6)

        await eventually(all_counted, 10, "the forged replies counted as dropped")
        await asyncio.sleep(0.5)  # anything dragonfly would have sent has arrived by now
        assert heard == []
        after = await dragonfly_client.GetAgent(victim.ref)
        # The victim's record is as its own agent wrote it.
        assert (after.hostname, after.version, after.registered_time) == \
               (before.hostname, before.version, before.registered_time) and after.hostname
        assert await agent_interval(nats_process, victim.vm) == interval_before
        # No benchmark was started on the victim: a short one runs now (a second would be ABORTED).
        result = await dragonfly_client.RunBenchmark(pb.RunBenchmarkRequest(ns=victim.vm.ns, mcis=victim.vm.mcis,
                                                                            vm=victim.vm.vm,
                                                              benchmarks=["cpu_single"], budget_s=0.1))
        assert result.cpu_single_ops_per_s > 0
    finally:
        await nc.close()
        await spy.close()


async def test_a_flood_of_junk_is_rate_limited_and_logged_once(dragonfly_client: Stub, nats_process: Nats,
                                                               dragonfly_process: servers.Server) -> None:
    evil, nc = await attacker(dragonfly_client, nats_process)
    log_path = dragonfly_process.proc.log_path
    size_before = log_path.stat().st_size
    counts_before = dropped(dragonfly_process)
    flood = 20_000
    try:
        for _ in range(flood):
            await nc.publish(evil.metrics, b"x")
        await nc.flush()

        def handled(got: dict[tuple[str, str], float]) -> float:
            return sum(got.get((reason, "metrics"), 0.0) - counts_before.get((reason, "metrics"), 0.0)
                       for reason in ("rate_limited", "malformed"))

        async def all_handled() -> bool:
            return handled(dropped(dragonfly_process)) >= flood

        await eventually(all_handled, 60, "every junk batch counted")
        got = dropped(dragonfly_process)
        limited = got.get(("rate_limited", "metrics"), 0.0) - counts_before.get(("rate_limited", "metrics"), 0.0)
        # The bucket lets through its burst (200) and its rate (50/s) while the flood lasts.
        assert limited >= flood - 1_000, got
        grown = log_path.stat().st_size - size_before
        # One warning for the malformed batches and one for the rate: not one line per message.
        assert grown < 4_000, grown
    finally:
        await nc.close()
