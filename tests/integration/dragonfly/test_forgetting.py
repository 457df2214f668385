"""What dragonfly keeps of a VM goes with it: revoking a removed VM's credential (tumblebug does,
retrying until answered) drops its agent record and rules, and its MCIS's and namespace's once
nothing of them is monitored; alert rules on them are refused from then on."""

from __future__ import annotations

import json
import uuid

import grpc
import nats as nats_py
import pytest

from cbapi.dragonfly.v1 import dragonfly_pb2 as pb
from dragonfly.protocol.subjects import VmId
from services import natsauth
from tests.support.dragonfly import Stub
from tests.support.nats import Nats


async def register(nats: Nats, vm: VmId, creds_text: str) -> None:
    """Register as the VM's agent would, with its own credential."""
    nc = await nats_py.connect(nats.url, inbox_prefix=vm.inbox_prefix.encode(), allow_reconnect=False,
                               **natsauth.Creds.parse(creds_text).client_options())
    try:
        await nc.request(vm.register, json.dumps({"hostname": vm.vm, "version": "t", "interval_s": 1}).encode(),
                         timeout=5)
    finally:
        await nc.close()


async def test_removed_vms_take_their_records_and_rules_with_them(dragonfly_client: Stub, nats_process: Nats) -> None:
    ns = f"gone-{uuid.uuid4().hex[:6]}"
    a, b = VmId(ns, "web", "vm-1"), VmId(ns, "web", "vm-2")
    for vm in (a, b):
        cred = await dragonfly_client.IssueAgentCredential(pb.IssueAgentCredentialRequest(ns=vm.ns, mcis=vm.mcis, vm=vm.vm))
        await register(nats_process, vm, cred.creds)
    rules = {"on-vm": pb.AlertRule(name="on-vm", kind="agent.unhealthy", mcis="web", vm="vm-1"),
             "on-mcis": pb.AlertRule(name="on-mcis", kind="agent.unhealthy", mcis="web"),
             "on-ns": pb.AlertRule(name="on-ns", kind="agent.unhealthy")}
    for rule in rules.values():
        await dragonfly_client.CreateAlertRule(pb.CreateAlertRuleRequest(ns=ns, rule=rule))

    async def names() -> tuple[list[str], list[str]]:
        agents = await dragonfly_client.ListAgents(pb.ListAgentsRequest(ns=ns))
        listed = await dragonfly_client.ListAlertRules(pb.ListAlertRulesRequest(ns=ns))
        return sorted(x.vm for x in agents.agents), sorted(r.name for r in listed.rules)

    assert await names() == (["vm-1", "vm-2"], ["on-mcis", "on-ns", "on-vm"])
    await dragonfly_client.RevokeAgentCredential(pb.RevokeAgentCredentialRequest(ns=ns, mcis="web", vm="vm-1"))
    assert await names() == (["vm-2"], ["on-mcis", "on-ns"])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await dragonfly_client.CreateAlertRule(pb.CreateAlertRuleRequest(ns=ns, rule=rules["on-vm"]))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # The last VM of the MCIS, and so of the namespace: nothing of either is kept.
    await dragonfly_client.RevokeAgentCredential(pb.RevokeAgentCredentialRequest(ns=ns, mcis="web", vm="vm-2"))
    assert await names() == ([], [])
    for rule in rules.values():
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await dragonfly_client.CreateAlertRule(pb.CreateAlertRuleRequest(ns=ns, rule=rule))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # A repeat (tumblebug retrying) changes nothing and fails nothing.
    await dragonfly_client.RevokeAgentCredential(pb.RevokeAgentCredentialRequest(ns=ns, mcis="web", vm="vm-2"))
