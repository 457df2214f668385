"""The agent's answers, typed: what the agent sends is what dragonfly reads, refusals are told apart."""

from __future__ import annotations

import pytest

from dragonfly.protocol import wire
from dragonfly.protocol.benchmarks import BenchReport
from dragonfly.protocol.replies import (
    BUSY,
    CommandResult,
    LiveMetrics,
    MalformedReply,
    Refusal,
    WorkloadLogs,
    WorkloadsSet,
    decode,
)


@pytest.mark.parametrize("reply", [
    LiveMetrics("ns.m.vm", 12.5, {"cpu": {"utilization_percent": 3.0}}),
    CommandResult(0, "out\n", "", False, False, False, 0.01),
    WorkloadsSet(3.0, [{"id": "web-1", "state": "RUNNING"}]),
    WorkloadLogs("a\n", "b\n"),
    BenchReport(kind="twin", cpu_count=2, cpu_single_ops_per_s=1e6),
])
def test_a_reply_reads_back_as_itself(reply: object) -> None:
    assert decode(wire.dumps(reply.to_wire()), type(reply)) == reply  # type: ignore[attr-defined]


def test_a_refusal_is_told_from_a_reply_and_keeps_its_reason() -> None:
    refusal = decode(wire.dumps(Refusal("a benchmark is already running", BUSY).to_wire()), BenchReport)
    assert refusal == Refusal("a benchmark is already running", BUSY)
    # A command's result has an `error` field of its own: it is still a result, not a refusal.
    timed_out = CommandResult(-9, "", "", True, False, False, 6.0, error="timed out after 6s")
    assert decode(wire.dumps(timed_out.to_wire()), CommandResult) == timed_out


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b'{"exit_code": "x", "stdout": ""}'])
def test_an_answer_that_is_neither_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedReply):
        decode(data, CommandResult)
