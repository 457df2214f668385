"""Remote commands wait for agents that are still coming up (within the command's timeout),
and do not wait for one that was heard and went silent."""

from __future__ import annotations

from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from cbapi.common.v1 import common_pb2 as common
from cbapi.dragonfly.v1 import dragonfly_pb2 as dpb
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from tumblebug.mcis import remote


class FakeMonitoring:
    """Dragonfly as tumblebug sees it: agents appear after `silent_polls` lists."""

    enabled = True

    def __init__(self, agents: list[dict[str, dpb.Agent]]) -> None:
        self.answers = agents
        self.lists = 0
        self.asked: list[tuple[list[str], float]] = []

    async def agents(self, ns: str, mcis: str) -> dict[str, dpb.Agent]:
        self.lists += 1
        return self.answers[min(self.lists, len(self.answers)) - 1]

    async def run(self, ns: str, mcis: str, vms: list[str], command: str,
                  timeout_s: float) -> dict[str, dpb.CommandResult | errors.DomainError]:
        self.asked.append((vms, timeout_s))
        return {vm: dpb.CommandResult(stdout="hi\n") for vm in vms}


def heard(health: int) -> dpb.Agent:
    return dpb.Agent(health=health, last_heartbeat_time=Timestamp(seconds=1))  # type: ignore[arg-type]


def commands(monitoring: FakeMonitoring) -> remote.RemoteCommands:
    fake: Any = monitoring
    return remote.RemoteCommands(store=None, keyring=None, monitoring=fake, limits=remote.SshLimits())  # type: ignore[arg-type]


MCIS = pb.Mcis(name="web")
VMS = [pb.McisVm(name="vm-1", status=common.RUNNING), pb.McisVm(name="vm-2", status=common.RUNNING)]


async def test_a_command_right_after_running_waits_for_the_agents_coming_up() -> None:
    up = {"vm-1": heard(dpb.HEALTHY), "vm-2": heard(dpb.HEALTHY)}
    # Neither registered, then vm-1 registered but silent, then both heard.
    monitoring = FakeMonitoring([{}, {"vm-1": dpb.Agent(health=dpb.UNHEALTHY)}, up])
    results = await commands(monitoring).run("ns", MCIS, VMS, "hostname", 10.0)
    assert [(r.vm, r.via, r.error) for r in results] == [("vm-1", "agent", ""), ("vm-2", "agent", "")]
    assert monitoring.lists == 3
    (asked, timeout), = monitoring.asked
    assert asked == ["vm-1", "vm-2"] and 9.0 < timeout < 10.0  # the wait came out of the command's timeout


async def test_the_wait_is_bounded_by_half_the_timeout_then_ssh_is_tried() -> None:
    monitoring = FakeMonitoring([{}])
    results = await commands(monitoring).run("ns", MCIS, VMS[:1], "hostname", 0.6)
    assert results[0].via == "ssh" and "none registered" in results[0].error
    assert 2 <= monitoring.lists <= 3 and monitoring.asked == []


async def test_an_agent_that_went_silent_is_not_waited_for() -> None:
    monitoring = FakeMonitoring([{"vm-1": heard(dpb.UNHEALTHY)}])
    results = await commands(monitoring).run("ns", MCIS, VMS[:1], "hostname", 60.0)
    assert monitoring.lists == 1
    assert results[0].via == "ssh" and results[0].error.startswith("no healthy agent (Unhealthy); ssh:")
