"""The gateway process (`cb-gateway`, or `python -m services.gateway.server`).

Reads its settings, refuses to start without a single API key (every route would answer 401),
loads the proto comments, then serves with uvicorn on `CB_GATEWAY_HOST:CB_GATEWAY_PORT` until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from prometheus_client import start_http_server
from starlette.applications import Starlette

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


def app_for(gw: Gateway) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running(gw):
            log.info("serving", extra={"address": f"{gw.settings.host}:{gw.settings.port}",
                                       "routes": len(gw.backends.table)})
            yield

    return create_app(gw, lifespan)


async def serve(settings: GatewaySettings) -> None:
    gw = build(settings)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.host)
    config = uvicorn.Config(app_for(gw), host=settings.host, port=settings.port, log_config=None,
                            access_log=False, lifespan="on", proxy_headers=False,
                            timeout_graceful_shutdown=int(CommonSettings().grace_seconds) or 1)
    await uvicorn.Server(config).serve()


def main() -> None:
    settings = GatewaySettings()
    logs.setup(settings.log_level)
    try:
        asyncio.run(serve(settings))
    except ValueError as exc:
        log.error("cannot start", extra={"error": str(exc)})
        print(f"cb-gateway: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
