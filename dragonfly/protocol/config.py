"""The agent's configuration, read from its VM's user-data (YAML or JSON).

    cb_agent:
      ns: demo
      mcis: web
      vm: web-1
      nats_url: nats://10.0.0.5:4222
      creds: |              # the VM's own NATS credential (.creds text)
        -----BEGIN NATS USER JWT-----
        …
      interval_s: 5         # optional; dragonfly may change it per MCIS
      work_dir: /var/tmp    # optional; where disk benchmarks write and workloads live (default: the agent's directory)
      ip: 10.0.0.7          # optional; the IP workloads serve on (default: the address that reaches NATS)

A CloudTwin guest gets a `twin` section from the emulator (its IP, spec, sandbox, where its
region is, and its spec's true performance there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from dragonfly.protocol.benchmarks import MAX_BUDGET_S
from dragonfly.protocol.subjects import VmId
from services.natsauth import Creds

SECTION = "cb_agent"


@dataclass(frozen=True)
class TwinPerf:
    """The emulator's hidden true performance of a guest's spec in its region, in the units
    the benchmarks report (`benchmarks.FIELDS`)."""

    cpu_single_ops_per_s: float
    cpu_multi_ops_per_s: float
    memory_read_bytes_per_s: float
    memory_write_bytes_per_s: float
    disk_read_bytes_per_s: float
    disk_write_bytes_per_s: float


@dataclass(frozen=True)
class TwinSpec:
    """What a CloudTwin guest is: its address, its size, its sandbox directory, where its
    region is (degrees), and how fast its spec truly is (None if the emulator cannot say)."""

    ip: str
    vcpu: int
    memory_bytes: int
    disk_bytes: int
    sandbox: str
    latitude: float = 0.0
    longitude: float = 0.0
    perf: TwinPerf | None = None


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent needs to run."""

    vm: VmId
    nats_url: str
    creds: Creds
    interval_s: float = 5.0
    # Metric batches kept while nobody can take them; beyond, the oldest are dropped (and counted).
    backlog_max: int = 1000
    # Limits of `cmd` requests: a request may ask for less, never for more.
    command_timeout_max_s: float = 600.0
    output_limit_bytes: int = 1024 * 1024
    # Limit of `bench` requests: the seconds all benchmarks of one request share.
    bench_budget_max_s: float = MAX_BUDGET_S
    # Where disk benchmarks write their scratch file; empty = the agent's working directory.
    work_dir: str = ""
    # The VM's IP its workloads serve on (HOST); empty = the address this host reaches NATS from.
    ip: str = ""
    twin: TwinSpec | None = None


def is_agent_user_data(text: str) -> bool:
    """Whether a VM's user-data asks for an agent (cheap: no credential check)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    return isinstance(doc, dict) and isinstance(doc.get(SECTION), dict)


def parse(text: str, twin: TwinSpec | None = None) -> AgentConfig:
    """The agent's configuration from user-data; ValueError names what is wrong."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"user-data is neither YAML nor JSON: {err}") from err
    section = doc.get(SECTION) if isinstance(doc, dict) else None
    if not isinstance(section, dict):
        raise ValueError(f"user-data has no {SECTION!r} section")
    return from_section(section, twin)


def from_section(section: dict[str, Any], twin: TwinSpec | None = None) -> AgentConfig:
    missing = [k for k in ("ns", "mcis", "vm", "nats_url", "creds") if not section.get(k)]
    if missing:
        raise ValueError(f"user-data {SECTION} lacks {', '.join(missing)}")
    interval = float(section.get("interval_s", 5.0))
    if not 0.1 <= interval <= 3600:
        raise ValueError("interval_s must be between 0.1 and 3600")
    return AgentConfig(vm=VmId(str(section["ns"]), str(section["mcis"]), str(section["vm"])),
                       nats_url=str(section["nats_url"]), creds=Creds.parse(str(section["creds"])),
                       interval_s=interval, backlog_max=int(section.get("backlog_max", 1000)),
                       work_dir=str(section.get("work_dir") or ""), ip=str(section.get("ip") or ""), twin=twin)


# libyaml writes a VM's user-data in a fifteenth of the time of the pure-Python emitter, with the
# same text (the emitter was half of what issuing a credential cost dragonfly when VMs were made
# by the thousand).
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def render(vm: VmId, nats_url: str, creds_text: str, interval_s: float = 5.0) -> str:
    """User-data that starts an agent for `vm` (what dragonfly hands out with a credential)."""
    return yaml.dump({SECTION: {"ns": vm.ns, "mcis": vm.mcis, "vm": vm.vm, "nats_url": nats_url,
                                "creds": creds_text, "interval_s": interval_s}}, Dumper=_DUMPER, sort_keys=False)
