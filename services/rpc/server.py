"""The gRPC server runtime every service runs on.

It adds the standard health service and server reflection, installs the
interceptors, serves Prometheus metrics, and stops gracefully on SIGTERM/SIGINT:
health turns NOT_SERVING, in-flight RPCs get `grace` seconds, then the app's
own resources are released.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from services import logs
from services.rpc import loop_health
from services.rpc.authz import AuthzInterceptor
from services.rpc.interceptors import ServerInterceptor
from services.rpc.tls import server_credentials
from services.settings import CommonSettings, ServerSettings
from services.tasks import cancel_tasks

log = logging.getLogger("server")

OPTIONS = [
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    ("grpc.max_send_message_length", 32 * 1024 * 1024),
    ("grpc.so_reuseport", 0),
]


@dataclass(frozen=True)
class Binding:
    """One gRPC service to serve: its full name, its servicer and the generated adder."""

    name: str
    servicer: Any
    add: Callable[[Any, grpc.aio.Server], None]


class App(Protocol):
    """What a service gives the runtime."""

    name: str

    def bindings(self) -> Sequence[Binding]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Server:
    """A started gRPC server with health and reflection."""

    def __init__(self, bindings: Sequence[Binding], address: str) -> None:
        self.grpc = grpc.aio.server(interceptors=[ServerInterceptor(), AuthzInterceptor()], options=OPTIONS)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        for b in bindings:
            b.add(b.servicer, self.grpc)
        names = [b.name for b in bindings]
        reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.grpc)
        self.names = names
        # Mutual TLS only: a caller without a certificate of our CA is refused in the handshake.
        self.port = self.grpc.add_secure_port(address, server_credentials())
        if self.port == 0:
            raise OSError(f"cannot bind {address}")

    async def start(self) -> None:
        await self.grpc.start()
        await self.set_serving(True)

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ["", *self.names]:
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        await self.set_serving(False)
        await self.grpc.stop(grace)


async def serve(app: App, server_settings: ServerSettings, common: CommonSettings) -> None:
    """Run `app` until SIGTERM or SIGINT, then stop it gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    await app.start()
    server = Server(app.bindings(), server_settings.address)
    await server.start()
    probe: asyncio.Task[None] | None = None
    if server_settings.metrics_port:
        start_http_server(server_settings.metrics_port, addr=server_settings.host)
        loop_health.watch_gc()
        probe = asyncio.create_task(loop_health.probe_forever())
    log.info("serving", extra={"service": app.name, "address": f"{server_settings.host}:{server.port}"})
    await stop.wait()
    log.info("stopping", extra={"service": app.name})
    if probe is not None:
        await cancel_tasks([probe])
    await server.stop(common.grace_seconds)
    await app.stop()
    log.info("stopped", extra={"service": app.name})


def run(app_factory: Callable[[], App], server_settings: ServerSettings, common: CommonSettings,
        gc_thresholds: tuple[int, int, int] | None = None) -> None:
    """Console-script entry: logs, then serve the app on a fresh event loop. `gc_thresholds`:
    the cyclic collector's (`gc.set_threshold`), for a service whose measurements ask for others."""
    logs.setup(common.log_level)
    # Everything imported so far (modules, descriptors: ~50,000 objects in tumblebug) lives as long
    # as the process: out of the cyclic collector's sight, a full collection no longer scans it
    # (measured in tumblebug: 0.15-0.3 s per full collection on a busy machine, a stall of the loop
    # that every in-flight request waits out).
    gc.collect()
    gc.freeze()
    if gc_thresholds is not None:
        gc.set_threshold(*gc_thresholds)

    async def main() -> None:
        # The app is built inside the loop: gRPC channels bind to the loop they are made in.
        await serve(app_factory(), server_settings, common)

    asyncio.run(main())
