"""`python -m dragonfly.agent.guests`: many CloudTwin guests' agents in one process.

CloudTwin starts one or a few of these and tells each, one JSON line on stdin
at a time, which guests to boot (`{"op": "boot", "id", "user_data", "twin"}`)
and halt (`{"op": "halt", "id"}`), and where every running twin VM is
(`{"op": "peers", "put": {ip: [lat, lon]}, "drop": [ip]}`, for the RTT of
benchmarks). Each guest is a full agent with its own NATS
connection and its own credential, so the server's per-VM permissions hold for
twins exactly as for real VMs. Its commands run in the guest's sandbox with
`CB_VM_IP` set to the VM's loopback address, and so do its workloads (under
`{sandbox}/cb-workloads`, HOST the VM's IP). When stdin closes (CloudTwin
stopped or died), every guest halts and the process exits.

Thousands of guests share one event loop, so the process is careful with
bursts: user-data is read with libyaml, the boot orders of a burst are read a
few at a time so handshakes already under way keep their deadlines, each guest
starts at a random moment of its first interval (so their batches do not all
fall in the same instant), and every (re)connect takes its turn from one pacer.
Young garbage collections run every 50,000 allocations rather than every 700:
with thousands of agents each sending every second they took a fifth of the
process's CPU, and nearly all that garbage goes by reference counting anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dragonfly.agent import CONNECT_RATE_ENV
from dragonfly.agent.agent import Agent, ConnectPacer
from dragonfly.agent.commands import Runner
from dragonfly.agent.sources import TwinSource
from dragonfly.agent.twinbench import Peers, TwinBench
from dragonfly.protocol.config import SECTION, AgentConfig, TwinPerf, TwinSpec, from_section
from services import logs
from services.stdin import open_stdin

log = logging.getLogger("cb-agent.guests")

# libyaml reads a guest's user-data in a twentieth of the time of the pure-Python loader.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Connects of one helper: new handshakes per second (CloudTwin gives each helper its share of a
# total, in CONNECT_RATE_ENV) and at most this many in flight. A helper with 5,000 guests on a busy
# machine kept every handshake within NATS's 2 s authentication deadline at 200 a second.
CONNECT_RATE = 150.0
CONNECT_CONCURRENCY = 50
# Boot orders handled between two turns of the event loop.
ORDERS_PER_TURN = 20
GC_YOUNG_THRESHOLD = 50_000
# A guest starts within this long (or its interval, if shorter) of its boot order.
START_SPREAD_S = 5.0


def read_config(user_data: str, twin: TwinSpec) -> AgentConfig:
    """The agent's configuration from its user-data (as `config.parse`, with libyaml)."""
    try:
        doc = yaml.load(user_data, Loader=_LOADER)
    except yaml.YAMLError as err:
        raise ValueError(f"user-data is neither YAML nor JSON: {err}") from err
    section = doc.get(SECTION) if isinstance(doc, dict) else None
    if not isinstance(section, dict):
        raise ValueError(f"user-data has no {SECTION!r} section")
    return from_section(section, twin)


def connect_rate() -> float:
    try:
        rate = float(os.environ.get(CONNECT_RATE_ENV, CONNECT_RATE))
    except ValueError:
        return CONNECT_RATE
    return rate if rate > 0 else CONNECT_RATE


def twin_spec(twin: dict[str, Any]) -> TwinSpec:
    """A guest's `twin` section of its boot order (`perf` and the place may be missing)."""
    perf = twin.get("perf")
    return TwinSpec(ip=str(twin["ip"]), vcpu=max(1, int(twin["vcpu"])), memory_bytes=int(twin["memory_bytes"]),
                    disk_bytes=int(twin["disk_bytes"]), sandbox=str(twin["sandbox"]),
                    latitude=float(twin.get("latitude", 0.0)), longitude=float(twin.get("longitude", 0.0)),
                    perf=TwinPerf(**{k: float(v) for k, v in perf.items()}) if perf else None)


@dataclass
class Guest:
    agent: Agent
    runner: Runner
    stop: asyncio.Event
    task: asyncio.Task[None]


class GuestHost:
    """The guests of one shard."""

    def __init__(self, pacer: ConnectPacer | None = None) -> None:
        self.guests: dict[str, Guest] = {}
        self.pacer = pacer or ConnectPacer(connect_rate(), CONNECT_CONCURRENCY)
        self.peers = Peers()

    def boot(self, vm_id: str, user_data: str, twin: dict[str, Any]) -> None:
        if vm_id in self.guests:
            return
        spec = twin_spec(twin)
        try:
            config = read_config(user_data, spec)
        except ValueError as err:
            log.warning("guest has no usable agent user-data", extra={"vm_id": vm_id, "error": str(err)})
            return
        Path(spec.sandbox).mkdir(parents=True, exist_ok=True)
        runner = Runner(spec.sandbox, {"CB_VM_IP": spec.ip, "CB_VM_ID": vm_id, "CB_VM_NAME": config.vm.vm,
                                       "HOME": spec.sandbox})
        agents: list[Agent] = []
        # The usage of the VM counts its commands' and its workloads' processes.
        source = TwinSource(spec, config.vm.key,
                            lambda: runner.pgids | (agents[0].supervisor.pgids if agents else set()))
        bench = TwinBench(spec.vcpu, spec.perf, spec.latitude, spec.longitude, self.peers)
        agent = Agent(config, source, runner, bench, pacer=self.pacer)
        agents.append(agent)
        stop = asyncio.Event()
        self.guests[vm_id] = Guest(agent, runner, stop, asyncio.create_task(self._run(agent, stop)))
        log.info("guest booted", extra={"vm_id": vm_id, "vm": config.vm.key, "ip": spec.ip})

    @staticmethod
    async def _run(agent: Agent, stop: asyncio.Event) -> None:
        # A VM boots at a moment of its own: guests ordered together do not all sample together.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), random.uniform(0.0, min(agent.interval_s, START_SPREAD_S)))
        if not stop.is_set():
            await agent.run(stop)

    async def halt(self, vm_id: str) -> None:
        guest = self.guests.pop(vm_id, None)
        if guest is None:
            return
        guest.stop.set()
        with contextlib.suppress(Exception):
            await guest.task
        # The VM is off: nothing it started keeps running.
        guest.runner.stop_all()
        log.info("guest halted", extra={"vm_id": vm_id})

    async def halt_all(self) -> None:
        await asyncio.gather(*(self.halt(vm_id) for vm_id in list(self.guests)))

    async def handle(self, line: bytes) -> None:
        try:
            order = json.loads(line)
            op = order["op"]
            if op == "boot":
                self.boot(str(order["id"]), str(order["user_data"]), dict(order["twin"]))
            elif op == "halt":
                await self.halt(str(order["id"]))
            elif op == "peers":
                self.peers.update(dict(order["put"]), list(order["drop"]))
            else:
                log.warning("unknown order", extra={"op": op})
        except (ValueError, KeyError, TypeError) as err:
            log.warning("bad order", extra={"error": str(err)})


async def serve(stdin: asyncio.StreamReader) -> None:
    host = GuestHost()
    handled = 0
    try:
        while line := await stdin.readline():
            await host.handle(line)
            handled += 1
            if handled % ORDERS_PER_TURN == 0:
                # A burst of orders is all in the buffer already: let the running guests have a turn.
                await asyncio.sleep(0)
    finally:
        await host.halt_all()


async def _main() -> None:
    await serve(await open_stdin())


def main() -> None:
    logs.setup(os.environ.get("CB_LOG_LEVEL", "INFO"))
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
    asyncio.run(_main())


if __name__ == "__main__":
    main()
