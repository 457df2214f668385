"""The gateway process (`cb-gateway`, or `python -m services.gateway.server`).

Reads its settings, refuses to start without a single API key (every route would answer 401),
loads the proto comments, then serves with uvicorn (uvloop, httptools) on
`CB_GATEWAY_HOST:CB_GATEWAY_PORT` until SIGTERM or SIGINT. With `CB_GATEWAY_WORKERS` > 1 this
process only supervises that many workers, each a copy of it bound to the same port with
SO_REUSEPORT: one Python process holds one core at most, and the HTTP side is what costs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import FrameType

import uvicorn
import uvloop
from prometheus_client import start_http_server
from starlette.applications import Starlette
from starlette.types import ASGIApp

from services import logs
from services.gateway.apikeys import ApiKeyRegistry
from services.gateway.app import Gateway, create_app, running
from services.gateway.auth import Authenticator, KeyStore
from services.gateway.backends import Backends
from services.gateway.descriptors import default_proto_path, load_comments
from services.gateway.keyservice import KeyService
from services.gateway.ratelimit import RateLimiter
from services.gateway.settings import GatewaySettings, backend_addresses
from services.settings import CommonSettings
from services.store.etcd import Store

log = logging.getLogger("gateway")


def build(settings: GatewaySettings) -> Gateway:
    """The gateway's parts from its settings; raises ValueError for a setting that cannot work."""
    registry = ApiKeyRegistry(Store.from_endpoints(CommonSettings().etcd_endpoints)) if settings.stored_keys else None
    keys = KeyStore.from_settings(settings.keys_file, registry)
    if not len(keys):
        # The first admin key cannot come from etcd: only an admin may create keys there.
        raise ValueError("no API keys: set CB_ADMIN_API_KEY or CB_GATEWAY_KEYS_FILE (client:bcrypt-hash lines)")
    addresses = backend_addresses(settings)
    if not addresses:
        raise ValueError("no backend services: set CB_GATEWAY_SERVICES and CB_<NAME>_ADDR")
    backends = Backends(addresses, settings.refresh_seconds, settings.timeout_seconds)
    proto_path = Path(settings.proto_path) if settings.proto_path else default_proto_path()
    return Gateway(settings, backends,
                   Authenticator(keys, settings.auth_failures_per_second, settings.auth_concurrency),
                   RateLimiter(settings.rate_per_second, settings.rate_burst), load_comments(proto_path),
                   KeyService(keys, registry, settings.key_hash_rounds), registry)


def app_for(gw: Gateway) -> ASGIApp:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running(gw):
            log.info("serving", extra={"address": f"{gw.settings.host}:{gw.settings.port}",
                                       "routes": len(gw.backends.table)})
            yield

    return create_app(gw, lifespan)


# Set by the supervisor in each worker's environment: its number (0, 1, …).
WORKER_ENV = "CB_GATEWAY_WORKER_INDEX"


def shared_port_socket(host: str, port: int) -> socket.socket:
    """A socket bound with SO_REUSEPORT, not yet listening: uvicorn listens once the routes are
    loaded, and the kernel gives connections only to listening sockets, so none waits on a
    worker that is still starting."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


async def serve(settings: GatewaySettings, worker: int | None = None) -> None:
    gw = build(settings)
    if settings.metrics_port:
        # Each worker has its own counters, so its own port: metrics_port + its number.
        start_http_server(settings.metrics_port + (worker or 0), addr=settings.host)
    # httptools parses HTTP/1.1 in C (h11 is pure Python and was a third of the request's cost).
    config = uvicorn.Config(app_for(gw), host=settings.host, port=settings.port, log_config=None,
                            access_log=False, lifespan="on", proxy_headers=False, http="httptools",
                            timeout_graceful_shutdown=int(CommonSettings().grace_seconds) or 1)
    sockets = None if worker is None else [shared_port_socket(settings.host, settings.port)]
    await uvicorn.Server(config).serve(sockets=sockets)


def supervise(settings: GatewaySettings) -> int:
    """Run `settings.workers` workers on the one port until SIGTERM/SIGINT, which goes on to each.
    A worker that ends on its own ends them all (exit 1): the launcher or the orchestrator
    restarts the gateway as a whole, as it would a single process."""
    argv = [sys.executable, "-m", "services.gateway.server"]
    children = [subprocess.Popen(argv, env={**os.environ, "CB_GATEWAY_WORKERS": "1", WORKER_ENV: str(i)})
                for i in range(settings.workers)]
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("workers", extra={"workers": [c.pid for c in children], "port": settings.port})
    while any(c.poll() is None for c in children):
        if not stopping and any(c.returncode is not None for c in children):
            log.error("a worker ended; stopping the others",
                      extra={"codes": [c.returncode for c in children]})
            stop(signal.SIGTERM, None)
        time.sleep(0.2)
    return 0 if stopping else 1


def main() -> None:
    settings = GatewaySettings()
    logs.setup(settings.log_level)
    worker = os.environ.get(WORKER_ENV, "")
    if settings.workers > 1 and not worker:
        sys.exit(supervise(settings))
    try:
        # uvloop: the event loop in C (libuv); gRPC's asyncio client runs on it unchanged.
        uvloop.run(serve(settings, int(worker) if worker.isdigit() else None))
    except ValueError as exc:
        log.error("cannot start", extra={"error": str(exc)})
        print(f"cb-gateway: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
