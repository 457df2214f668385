"""Starting the gateway as a child process and waiting until it answers (launcher and tests)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import httpx

from services import processes as procs
from services.gateway.auth import ADMIN, admin_key, hash_key, write_keys_file


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


def suite_process(run_dir: Path, env: Mapping[str, str], port: int, backends: Mapping[str, str]) -> procs.Proc:
    """The gateway of a local suite: the admin key (CB_ADMIN_API_KEY, else a key generated into
    run_dir/admin.key with mode 0600) goes to the gateway only as a bcrypt hash in a keys file."""
    key, _ = admin_key(run_dir)
    keys_file = run_dir / "gateway-keys"
    write_keys_file(keys_file, {ADMIN: hash_key(key)})
    full = {**env, "CB_GATEWAY_PORT": str(port), "CB_GATEWAY_KEYS_FILE": str(keys_file),
            "CB_GATEWAY_SERVICES": ",".join(backends),
            **{f"CB_{name.upper()}_ADDR": address for name, address in backends.items()}}
    # The plain key must not reach the gateway's environment (it would inherit ours): only the hash does.
    full["CB_ADMIN_API_KEY"] = ""
    return process(run_dir, full)


def key_note(run_dir: Path) -> str:
    """Where a user finds the admin key of a local suite."""
    if os.environ.get("CB_ADMIN_API_KEY", "").strip():
        return "admin API key: the value of CB_ADMIN_API_KEY"
    return f"admin API key: in {run_dir / 'admin.key'} (mode 0600; cbctl reads it from there)"
