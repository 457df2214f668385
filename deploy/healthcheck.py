#!/usr/bin/env python3
"""Container health check of one process of the suite: exit 0 when it serves, 1 when not.

`cb-healthcheck [SERVICE]`. SERVICE is spider, tumblebug, dragonfly, ladybug, cloudtwin or
gateway; without it, the one this container runs (PID 1's command, e.g. `cb-spider`). A gRPC
service is asked the standard health check over the suite's mutual TLS, presenting this
container's own certificate (`CB_TLS_…`), on the port its own settings name; the gateway's
`/healthz` is asked over HTTP. Kubernetes runs the same script as its exec probe, because a
native `grpc:` probe cannot present a client certificate.
"""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.request
from pathlib import Path

# The port each service listens on unless its settings say otherwise (DESIGN §3).
DEFAULT_PORTS = {"spider": 2048, "tumblebug": 50252, "ladybug": 50254, "dragonfly": 9999, "cloudtwin": 7000,
                 "gateway": 8000}
SERVICES = tuple(DEFAULT_PORTS)


def service_of_pid1() -> str:
    """The service PID 1 runs (`cb-spider`, `python -m spider.server`, …), else ""."""
    try:
        argv = Path("/proc/1/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    words = " ".join(a.decode(errors="replace") for a in argv)
    for name in SERVICES:
        if f"cb-{name}" in words or f"{name}.server" in words:
            return name
    return ""


def address(service: str) -> tuple[str, int]:
    """(host to dial, port) of `service` in this process's environment, as the service reads it."""
    prefix = f"CB_{service.upper()}_"
    host = os.environ.get(prefix + "HOST", "127.0.0.1")
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: dial loopback
        host = "127.0.0.1"
    return host, int(os.environ.get(prefix + "PORT", DEFAULT_PORTS[service]))


def gateway_healthy(timeout: float) -> bool:
    """The gateway's /healthz, with the standard library (importing an HTTP client library costs
    seconds on a busy machine, longer than a health check may take)."""
    host, port = address("gateway")
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def grpc_healthy(service: str, timeout: float) -> bool:
    """The standard health check, over the suite's mutual TLS with this process's certificate."""
    host, port = address(service)
    from services.rpc.client import is_serving

    return await is_serving(f"{host}:{port}", timeout=timeout)


def main(argv: list[str]) -> int:
    service = argv[1] if len(argv) > 1 else service_of_pid1()
    if service not in SERVICES:
        print(f"cb-healthcheck: which service? say one of {', '.join(SERVICES)}", file=sys.stderr)
        return 2
    timeout = float(os.environ.get("HEALTHCHECK_TIMEOUT", "3"))
    ok = gateway_healthy(timeout) if service == "gateway" else asyncio.run(grpc_healthy(service, timeout))
    print(f"{service}: {'SERVING' if ok else 'NOT SERVING'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
