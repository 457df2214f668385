"""The local suite: `cbctl up`, `cbctl down`, `cbctl status`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import sys
import time
from pathlib import Path

import httpx
import typer
from rich.console import Console
from rich.table import Table

console = Console()


def _run_dir() -> Path:
    return Path(os.environ.get("CB_RUN_DIR", ".run")).resolve()


def up() -> None:
    """Start the whole suite on loopback in the foreground (Ctrl-C stops it)."""
    os.execv(sys.executable, [sys.executable, "-m", "services.launcher"])


def down(timeout: float = 30.0) -> None:
    """Stop the suite that `cbctl up` / `make run` started from this directory."""
    pid_file = _run_dir() / "launcher.pid"
    if not pid_file.exists():
        console.print("The suite is not running here.")
        raise typer.Exit(0)
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        console.print("The suite is not running (stale pid file removed).")
        raise typer.Exit(0) from None
    deadline = time.monotonic() + timeout
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    console.print("Stopped." if not pid_file.exists() else f"Still stopping; check pid {pid}.")


def status() -> None:
    """Show what the local suite runs and whether each part is healthy."""
    from services.rpc.client import is_serving  # grpc only for this command: cbctl starts faster

    suite_file = _run_dir() / "suite.json"
    if not suite_file.exists():
        console.print("The suite is not running here. Start it with `make run` or `cbctl up`.")
        raise typer.Exit(1)
    suite = json.loads(suite_file.read_text())
    table = Table("service", "address", "pid", "health")
    for name, info in suite.items():
        address = info["address"]
        if address.startswith(("http://", "https://")):
            health = "SERVING" if _http_healthy(name, address) else "NOT SERVING"
        elif "://" in address:
            health = "running" if _alive(info["pid"]) else "stopped"
        else:
            health = "SERVING" if asyncio.run(is_serving(address)) else "NOT SERVING"
        table.add_row(name, address, str(info["pid"]), health)
    console.print(table)


# Where each HTTP server of the suite says it is healthy: etcd and VictoriaMetrics answer
# /health (etcd with {"health": "true"}); the gateway, ours, answers /healthz.
HEALTH_PATHS = {"etcd": "/health", "victoria-metrics": "/health"}


def _http_healthy(name: str, base_url: str) -> bool:
    """The server answers 200 on its health path (etcd also says `"health": "true"` in its body)."""
    url = f"{base_url}{HEALTH_PATHS.get(name, '/healthz')}"
    try:
        if url.startswith("https://"):
            # etcd requires a client certificate of the suite's CA: cbctl's own (admin by default).
            # Imported here: the TLS settings pull in pydantic-settings, half a second on every cbctl call.
            from services import tls

            me = tls.configured()
            context = ssl.create_default_context(cafile=str(me.ca_file))
            context.load_cert_chain(str(me.cert_file), str(me.key_file))
            reply = httpx.get(url, timeout=1.0, verify=context)
        else:
            reply = httpx.get(url, timeout=1.0)
    except (httpx.HTTPError, OSError):
        return False
    if reply.status_code != 200:
        return False
    return name != "etcd" or reply.json().get("health") == "true"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True

