"""The gateway's settings (`CB_GATEWAY_…`) and where its backend services listen.

A backend is a gRPC service the gateway routes to. Its address is `CB_<NAME>_ADDR`
(`CB_SPIDER_ADDR=127.0.0.1:2048`); the names come from `CB_GATEWAY_SERVICES`. Adding a
service is a setting: list its name and give its address; its routes come from its
own descriptors.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from pydantic_settings import BaseSettings, SettingsConfigDict

# The suite's own services and their default ports (DESIGN §3). Only defaults: any name
# listed in CB_GATEWAY_SERVICES works when CB_<NAME>_ADDR is set.
DEFAULT_PORTS: dict[str, int] = {"spider": 2048, "tumblebug": 50252, "dragonfly": 9999, "ladybug": 50254}

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class GatewaySettings(BaseSettings):
    """Settings of the gateway process (prefix `CB_GATEWAY_`)."""

    model_config = SettingsConfigDict(env_prefix="CB_GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    # Backend names, comma-separated; each one's address is CB_<NAME>_ADDR.
    services: str = "spider,tumblebug,dragonfly,ladybug"
    # How often backends are asked again for their descriptors (new RPCs, a backend back up).
    refresh_seconds: float = 30.0
    # Deadline of one unary call to a backend, unless the client sends `Grpc-Timeout`.
    timeout_seconds: float = 30.0
    # The longest `Grpc-Timeout` honoured (a command may run an hour, plus its answer).
    max_timeout_seconds: float = 3700.0
    # API keys: a file of `client:bcrypt-hash[:role[:namespace]]` lines (role admin when not given).
    # CB_ADMIN_API_KEY adds client `admin`.
    keys_file: str = ""
    # Keys made at run time (POST /gateway/v1/apikeys) are kept in etcd (CB_ETCD_ENDPOINTS).
    stored_keys: bool = True
    # bcrypt cost of the keys this gateway makes (12: about a quarter second per check).
    key_hash_rounds: int = 12
    # Requests per second and burst, per client (API key).
    rate_per_second: float = 50.0
    rate_burst: int = 100
    # Failed authentications per second allowed from one address (bcrypt is deliberately slow);
    # the burst is twice that. An attempt is counted before bcrypt runs.
    auth_failures_per_second: float = 5.0
    # bcrypt checks running at once, over all addresses.
    auth_concurrency: int = 2
    # Origins allowed by CORS, comma-separated ("*" for any); empty: no CORS headers.
    cors_origins: str = ""
    # Where the .proto sources are, for their comments in the OpenAPI document; empty: next to
    # the installed generated code if it is there.
    proto_path: str = ""
    # A server-streaming response sends a comment this often so proxies keep it open.
    sse_keepalive_seconds: float = 15.0
    # Prometheus /metrics on its own port; 0 = not served.
    metrics_port: int = 0
    log_level: str = "INFO"
    # Processes serving the one port (SO_REUSEPORT; the kernel spreads connections over them).
    # 1: this process serves. Each worker has its own key cache, rate limits and login limiter.
    workers: int = 1

    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]


def backend_addresses(settings: GatewaySettings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Backend name → address, from CB_GATEWAY_SERVICES and CB_<NAME>_ADDR.

    A listed name with no address and no default port is a configuration error; an empty
    CB_<NAME>_ADDR switches that backend off."""
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for raw in settings.services.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        if not _NAME.match(name):
            raise ValueError(f"CB_GATEWAY_SERVICES: {name!r} is not a service name (letters, digits, _)")
        key = f"CB_{name.upper()}_ADDR"
        if key in env:
            address = env[key].strip()
            if address:
                out[name] = address
        elif name in DEFAULT_PORTS:
            out[name] = f"127.0.0.1:{DEFAULT_PORTS[name]}"
        else:
            raise ValueError(f"{key} is not set: where does service {name!r} listen?")
    return out
