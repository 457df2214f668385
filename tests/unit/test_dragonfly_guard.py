"""The guard in front of agents' messages: reply subjects only in the agent's own inbox, a token
bucket per agent, and warnings at most once per agent per interval."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from dragonfly.guard import AgentGuard, reply_belongs
from dragonfly.protocol.subjects import VmId

A = VmId("ns-a", "m1", "vm-1")


@dataclass
class FakeMsg:
    subject: str
    reply: str = ""
    data: bytes = b""


@pytest.mark.parametrize(("reply", "ok"), [
    ("_INBOX.ns-a.m1.vm-1.abc.1", True),
    ("_INBOX.ns-a.m1.vm-1", False),  # the prefix itself is no inbox subject
    ("_INBOX.ns-a.m1.vm-10.abc.1", False),  # another VM whose name starts alike
    ("_INBOX.ns-b.m1.vm-1.abc.1", False),
    ("cb.register.ns-b.m1.vm-1", False),
    ("cb.agent.ns-b.m1.vm-1.bench", False),
    ("cb.config.ns-b.m1", False),
    ("_INBOX.>", False),
])
def test_a_reply_must_lie_in_the_agents_own_inbox(reply: str, ok: bool) -> None:
    assert reply_belongs(A, reply) is ok
    guard = AgentGuard()
    assert (guard.admit(FakeMsg(A.metrics, reply), "metrics") == A) is ok  # type: ignore[arg-type]
    assert guard.counts.foreign_reply == ({} if ok else {"metrics": 1})


def test_each_agent_has_its_own_bucket() -> None:
    guard = AgentGuard(rate_per_s=0.001, burst=5)
    b = VmId("ns-a", "m1", "vm-2")
    admitted = [guard.admit(FakeMsg(A.heartbeat), "heartbeat") for _ in range(20)]  # type: ignore[arg-type]
    assert sum(v is not None for v in admitted) == 5
    assert guard.counts.rate_limited == {"heartbeat": 15}
    assert guard.admit(FakeMsg(b.heartbeat), "heartbeat") == b  # type: ignore[arg-type]


def test_a_flood_of_malformed_messages_logs_once_per_agent(caplog: pytest.LogCaptureFixture) -> None:
    guard = AgentGuard(warn_every_s=3600)
    with caplog.at_level(logging.WARNING, "dragonfly.guard"):
        for _ in range(20_000):
            guard.malformed(A.key, "metrics", ValueError("x" * 10_000))
        guard.malformed("ns-a.m1.vm-2", "metrics", ValueError("bad"))
    assert guard.counts.malformed == {"metrics": 20_001}
    assert len(caplog.records) == 2
    assert all(len(getattr(r, "error", "")) <= 200 for r in caplog.records)
