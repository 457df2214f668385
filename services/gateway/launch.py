"""Starting the gateway as a child process and waiting until it answers (launcher and tests)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import httpx

from services.launcher import processes as procs


def process(run_dir: Path, env: Mapping[str, str], name: str = "gateway") -> procs.Proc:
    """`python -m services.gateway.server` with its settings in `env`, logging under run_dir/logs."""
    return procs.python_service(name, "services.gateway.server", run_dir, env)


async def is_healthy(base_url: str, timeout: float = 0.5) -> bool:
    """True when the gateway's /healthz answers 200."""
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            return (await client.get(f"{base_url}/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


async def start(proc: procs.Proc, port: int, timeout: float = 30.0) -> procs.Proc:
    """Start the process and wait until /healthz answers (its routes are loaded by then)."""
    proc.start()
    base = f"http://127.0.0.1:{port}"
    await procs.wait_until(lambda: is_healthy(base), f"{proc.name} on {base}", proc, timeout)
    return proc
