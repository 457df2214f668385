"""`cb-agent`: run the agent of this machine from its user-data, reading the host with psutil."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from dragonfly.agent.agent import Agent
from dragonfly.agent.commands import Runner
from dragonfly.agent.hostbench import HostBench
from dragonfly.agent.sources import HostSource
from dragonfly.protocol.config import parse
from services import logs

DEFAULT_USER_DATA = "/var/lib/cloud/instance/user-data.txt"


async def _run(user_data: str) -> None:
    config = parse(user_data)
    agent = Agent(config, HostSource(), Runner(), HostBench(config.work_dir or None))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.run(stop)


def main() -> None:
    parser = argparse.ArgumentParser(prog="cb-agent", description=__doc__)
    parser.add_argument("--user-data", default=os.environ.get("CB_AGENT_USER_DATA", DEFAULT_USER_DATA),
                        help="the VM's user-data file (YAML or JSON with a cb_agent section)")
    args = parser.parse_args()
    logs.setup(os.environ.get("CB_LOG_LEVEL", "INFO"))
    try:
        text = Path(args.user_data).read_text()
        parse(text)
    except (OSError, ValueError) as err:
        print(f"cb-agent: {err}", file=sys.stderr)
        sys.exit(2)
    asyncio.run(_run(text))


if __name__ == "__main__":
    main()
