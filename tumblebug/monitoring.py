"""Dragonfly as tumblebug calls it: agent credentials for new VMs, commands, agent health, metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cbapi.dragonfly.v1 import dragonfly_pb2 as dpb
from cbapi.dragonfly.v1 import dragonfly_pb2_grpc
from services import errors
from services.rpc.client import call as rpc_call
from services.rpc.client import channel

T = TypeVar("T")


class Monitoring:
    """A channel to dragonfly; `address` empty means the suite runs without monitoring."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel = channel(address) if address else None
        self.stub = dragonfly_pb2_grpc.DragonflyStub(self._channel) if self._channel is not None else None

    @property
    def enabled(self) -> bool:
        return self.stub is not None

    def _need(self) -> dragonfly_pb2_grpc.DragonflyStub:
        if self.stub is None:
            raise errors.FailedPrecondition("monitoring is off here (CB_TUMBLEBUG_DRAGONFLY_ADDR is empty)")
        return self.stub

    async def call(self, rpc: Callable[..., Awaitable[T]], request: Any, timeout: float = 30.0) -> T:
        return await rpc_call(rpc, request, timeout, "dragonfly")

    async def agent_user_data(self, ns: str, mcis: str, vm: str, instance: str = "") -> str:
        """User-data that boots this VM's agent with its own credential (a secret: never stored);
        `instance` tells this VM from a later one of the same name."""
        stub = self._need()
        issued = await self.call(stub.IssueAgentCredential, dpb.IssueAgentCredentialRequest(
            ns=ns, mcis=mcis, vm=vm, instance=instance))
        return issued.user_data

    async def revoke_agent(self, request: dpb.RevokeAgentCredentialRequest) -> None:
        """Have the credential of a VM that is gone refused by NATS from now on."""
        await self.call(self._need().RevokeAgentCredential, request, timeout=10)

    async def health(self, ns: str, mcis: str) -> dict[str, str]:
        """VM name → agent health word, for the agents of one MCIS that registered."""
        if self.stub is None:
            return {}
        out: dict[str, str] = {}
        token = ""
        while True:
            page = await self.call(self.stub.ListAgents, dpb.ListAgentsRequest(ns=ns, mcis=mcis, page_size=1000,
                                                                               page_token=token), timeout=5)
            out.update((a.vm, dpb.Health.Name(a.health).title()) for a in page.agents)
            token = page.next_page_token
            if not token:
                return out

    async def run(self, ns: str, mcis: str, vms: list[str], command: str, timeout_s: float,
                  parallel: int = 64) -> dict[str, dpb.CommandResult | errors.DomainError]:
        """Run `command` on every VM through its agent, `parallel` at a time."""
        stub = self._need()
        gate = asyncio.Semaphore(parallel)

        async def one(vm: str) -> dpb.CommandResult | errors.DomainError:
            async with gate:
                try:
                    return await self.call(stub.RunCommand, dpb.RunCommandRequest(
                        ns=ns, mcis=mcis, vm=vm, command=command, timeout_s=timeout_s), timeout=timeout_s + 10)
                except errors.DomainError as err:
                    return err

        results = await asyncio.gather(*(one(vm) for vm in vms))
        return dict(zip(vms, results, strict=True))

    async def metrics(self, request: dpb.QueryMcisMetricsRequest) -> dpb.QueryMetricsResponse:
        return await self.call(self._need().QueryMcisMetrics, request)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
