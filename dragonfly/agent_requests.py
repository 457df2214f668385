"""Requests dragonfly sends to one VM's agent over NATS, and their typed answers.

Each call returns the verb's reply (`dragonfly.protocol.replies`) or the agent's `Refusal`; the
caller decides what a refusal means to its client. Transport failures become the errors a client
can act on: NOT_FOUND or FAILED_PRECONDITION when nobody answers (`Agents.why_unreachable`),
DEADLINE_EXCEEDED when the agent is too slow, UNAVAILABLE when it answers nonsense.
"""

from __future__ import annotations

from typing import Any

from dragonfly.agents import Agents
from dragonfly.protocol import wire
from dragonfly.protocol.benchmarks import BenchReport, BenchRequest
from dragonfly.protocol.replies import (
    CommandResult,
    LiveMetrics,
    MalformedReply,
    Refusal,
    T,
    WorkloadLogs,
    WorkloadsSet,
    decode,
)
from dragonfly.protocol.subjects import VmId
from services import errors
from services.bus import Bus

# How long an on-demand metrics read or a logs read may take.
QUICK_S = 5.0


class AgentRequests:
    """Asks agents to do things and reads their answers."""

    def __init__(self, bus: Bus, agents: Agents) -> None:
        self.bus = bus
        self.agents = agents

    @property
    def max_payload(self) -> int:
        """The largest request the bus carries (NATS's max_payload; 1 MiB before it is known)."""
        return int(getattr(self.bus.nc, "max_payload", 0) or 1 << 20)

    async def metrics(self, vm: VmId) -> LiveMetrics | Refusal:
        return await self._ask(vm, "metrics", wire.dumps({}), QUICK_S, LiveMetrics)

    async def command(self, vm: VmId, command: str, timeout_s: float, output_limit_bytes: int,
                      slack_s: float) -> CommandResult | Refusal:
        body = {"command": command, "timeout_s": timeout_s, "output_limit_bytes": output_limit_bytes}
        return await self._ask(vm, "cmd", wire.dumps(body), timeout_s + slack_s, CommandResult)

    async def benchmark(self, vm: VmId, request: BenchRequest, slack_s: float) -> BenchReport | Refusal:
        return await self._ask(vm, "bench", wire.dumps(request.to_wire()), request.budget_s + slack_s, BenchReport)

    async def set_workloads(self, vm: VmId, data: bytes, timeout_s: float) -> WorkloadsSet | Refusal:
        """`data` is the encoded set request (the caller checks its size against `max_payload`)."""
        return await self._ask(vm, "workloads", data, timeout_s, WorkloadsSet)

    async def logs(self, vm: VmId, workload_id: str, tail_lines: int) -> WorkloadLogs | Refusal:
        body: dict[str, Any] = {"id": workload_id, "tail_lines": tail_lines}
        return await self._ask(vm, "logs", wire.dumps(body), QUICK_S, WorkloadLogs)

    async def _ask(self, vm: VmId, verb: str, data: bytes, timeout: float, kind: type[T]) -> T | Refusal:
        try:
            answer = await self.bus.request(vm.request(verb), data, timeout=timeout)
        except errors.Unavailable as err:
            raise await self.agents.why_unreachable(vm) from err
        except errors.DeadlineExceeded as err:
            raise errors.DeadlineExceeded(f"the agent of VM {vm.key} did not answer within {timeout:g}s") from err
        try:
            return decode(answer, kind)
        except MalformedReply as err:
            raise errors.Unavailable(f"the agent of VM {vm.key} answered {verb} with a malformed reply: {err}") from err
