"""`python -m dragonfly.agent.guests`: many CloudTwin guests' agents in one process.

CloudTwin starts one or a few of these and tells each, one JSON line on stdin
at a time, which guests to boot (`{"op": "boot", "id", "user_data", "twin"}`)
and halt (`{"op": "halt", "id"}`). Each guest is a full agent with its own NATS
connection and its own credential, so the server's per-VM permissions hold for
twins exactly as for real VMs. Its commands run in the guest's sandbox with
`CB_VM_IP` set to the VM's loopback address. When stdin closes (CloudTwin
stopped or died), every guest halts and the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dragonfly.agent.agent import Agent
from dragonfly.agent.commands import Runner
from dragonfly.agent.config import TwinSpec, parse
from dragonfly.agent.sources import TwinSource
from services import logs

log = logging.getLogger("cb-agent.guests")


@dataclass
class Guest:
    agent: Agent
    runner: Runner
    stop: asyncio.Event
    task: asyncio.Task[None]


class GuestHost:
    """The guests of one shard."""

    def __init__(self) -> None:
        self.guests: dict[str, Guest] = {}

    def boot(self, vm_id: str, user_data: str, twin: dict[str, Any]) -> None:
        if vm_id in self.guests:
            return
        spec = TwinSpec(ip=str(twin["ip"]), vcpu=max(1, int(twin["vcpu"])), memory_bytes=int(twin["memory_bytes"]),
                        disk_bytes=int(twin["disk_bytes"]), sandbox=str(twin["sandbox"]))
        try:
            config = parse(user_data, spec)
        except ValueError as err:
            log.warning("guest has no usable agent user-data", extra={"vm_id": vm_id, "error": str(err)})
            return
        Path(spec.sandbox).mkdir(parents=True, exist_ok=True)
        runner = Runner(spec.sandbox, {"CB_VM_IP": spec.ip, "CB_VM_ID": vm_id, "CB_VM_NAME": config.vm.vm,
                                       "HOME": spec.sandbox})
        source = TwinSource(spec, config.vm.key, lambda: runner.pgids)
        agent = Agent(config, source, runner, kind="twin")
        stop = asyncio.Event()
        self.guests[vm_id] = Guest(agent, runner, stop, asyncio.create_task(agent.run(stop)))
        log.info("guest booted", extra={"vm_id": vm_id, "vm": config.vm.key, "ip": spec.ip})

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
            op, vm_id = order["op"], str(order["id"])
            if op == "boot":
                self.boot(vm_id, str(order["user_data"]), dict(order["twin"]))
            elif op == "halt":
                await self.halt(vm_id)
            else:
                log.warning("unknown order", extra={"op": op})
        except (ValueError, KeyError, TypeError) as err:
            log.warning("bad order", extra={"error": str(err)})


async def serve(stdin: asyncio.StreamReader) -> None:
    host = GuestHost()
    try:
        while line := await stdin.readline():
            await host.handle(line)
    finally:
        await host.halt_all()


async def _main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    # SIGTERM halts the guests as a closed stdin does (their commands must not outlive them).
    loop.add_signal_handler(signal.SIGTERM, reader.feed_eof)
    await serve(reader)


def main() -> None:
    logs.setup(os.environ.get("CB_LOG_LEVEL", "INFO"))
    asyncio.run(_main())


if __name__ == "__main__":
    main()
