"""The NATS subjects agents and dragonfly speak on, and what an agent's credential allows.

A VM is named by `{ns}.{mcis}.{vm}` everywhere (VM names are unique only inside
their MCIS), so an agent's own subjects are `cb.agent.{ns}.{mcis}.{vm}.>`.
Names follow the suite's rule (lowercase letters, digits, hyphens): no dots or
wildcards can slip into a subject.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from services.natsauth import Permissions

_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")

# What dragonfly subscribes to: exactly `cb.{kind}.{ns}.{mcis}.{vm}`, which its NATS user is
# allowed (services/natsauth.py: dragonfly_permissions), nothing longer or shorter.
METRICS_ALL = "cb.metrics.*.*.*"
HEARTBEAT_ALL = "cb.heartbeat.*.*.*"
REGISTER_ALL = "cb.register.*.*.*"
WORKLOADS_ALL = "cb.workloads.*.*.*"


@dataclass(frozen=True)
class VmId:
    """A VM's identity as its agent and dragonfly know it."""

    ns: str
    mcis: str
    vm: str

    def __post_init__(self) -> None:
        for field, value in (("ns", self.ns), ("mcis", self.mcis), ("vm", self.vm)):
            if not _NAME.match(value):
                raise ValueError(f"{field} {value!r} is not a valid name (lowercase letters, digits, '-')")

    # Cached: the collector asks for these on every batch (a frozen dataclass still has a __dict__).
    @cached_property
    def key(self) -> str:
        return f"{self.ns}.{self.mcis}.{self.vm}"

    @classmethod
    def from_key(cls, key: str) -> VmId:
        parts = key.split(".")
        if len(parts) != 3:
            raise ValueError(f"{key!r} is not ns.mcis.vm")
        return cls(*parts)

    # -- what the agent sends ---------------------------------------------------

    @property
    def metrics(self) -> str:
        return f"cb.metrics.{self.key}"

    @property
    def heartbeat(self) -> str:
        return f"cb.heartbeat.{self.key}"

    @property
    def register(self) -> str:
        return f"cb.register.{self.key}"

    @property
    def workloads(self) -> str:
        """Where the agent reports its workloads' statuses (on change and periodically)."""
        return f"cb.workloads.{self.key}"

    # -- what the agent answers -----------------------------------------------------

    @property
    def requests(self) -> str:
        return f"cb.agent.{self.key}.>"

    def request(self, verb: str) -> str:
        """`metrics` (on-demand read), `cmd`, `bench`, `status`, `workloads` (set one app's set), `logs`."""
        return f"cb.agent.{self.key}.{verb}"

    @cached_property
    def inbox_prefix(self) -> str:
        """Replies to the agent's own requests come here, and nobody else's."""
        return f"_INBOX.{self.key}"

    @property
    def acks(self) -> str:
        """Where collectors acknowledge the agent's batches (in its own inbox: see protocol/acks.py)."""
        return f"{self.inbox_prefix}.acks"

    @property
    def mcis_config(self) -> str:
        return mcis_config(self.ns, self.mcis)

    def permissions(self) -> Permissions:
        """An agent may send only as itself and hear only its own requests and its MCIS's settings."""
        return Permissions(publish=[self.metrics, self.heartbeat, self.register, self.workloads],
                           subscribe=[self.requests, f"{self.inbox_prefix}.>", self.mcis_config],
                           respond=True)


def mcis_config(ns: str, mcis: str) -> str:
    """Where dragonfly announces an MCIS's monitoring settings (the interval) to its agents."""
    return f"cb.config.{ns}.{mcis}"


def alerts(ns: str, mcis: str) -> str:
    """Where alert events (firing, resolved) of an MCIS's VMs are published."""
    return f"cb.alerts.{ns}.{mcis}"


def vm_of(subject: str) -> VmId:
    """The VM a `cb.{kind}.{ns}.{mcis}.{vm}` subject is about (its last three tokens)."""
    parts = subject.split(".")
    if len(parts) != 5:
        raise ValueError(f"unexpected subject {subject!r}")
    return VmId(parts[2], parts[3], parts[4])
