"""The HAProxy configuration of one application's endpoint, rendered from its settings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ladybug.endpoint.settings import EndpointSettings

BACKEND = "app"
SLOT_PREFIX = "s"
# Named relative to the endpoint's directory, HAProxy's working directory (`-C`): a Unix socket's
# address holds at most 107 bytes (HAProxy takes 97), which a deep run dir or a long app name
# would exceed as an absolute path.
ADMIN_SOCKET = "admin.sock"
_APP_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class HealthCheck:
    """How HAProxy probes each instance: an HTTP GET of `http_path` (2xx/3xx is healthy), else a
    TCP connect."""

    http_path: str | None = None


@dataclass(frozen=True)
class Files:
    """Where one endpoint keeps its files (all under its own directory)."""

    dir: Path

    @property
    def config(self) -> Path:
        return self.dir / "haproxy.cfg"

    @property
    def admin_socket(self) -> Path:
        return self.dir / ADMIN_SOCKET

    @property
    def pid(self) -> Path:
        return self.dir / "haproxy.pid"

    @property
    def server_state(self) -> Path:
        return self.dir / "servers.state"

    @property
    def slots(self) -> Path:
        return self.dir / "slots.json"

    @property
    def log(self) -> Path:
        return self.dir / "haproxy.log"


def check_app_name(app: str) -> None:
    """App names go into paths and HAProxy's config: keep them to DNS labels."""
    if not _APP_NAME.match(app):
        raise ValueError(f"application name {app!r} must be a DNS label: a-z, 0-9 and '-', at most 63")


def slot_name(index: int) -> str:
    """The name HAProxy gives slot `index` (1-based) of `server-template`."""
    return f"{SLOT_PREFIX}{index}"


def render(app: str, host: str, port: int, slots: int, check: HealthCheck, files: Files,
           settings: EndpointSettings, placed: Mapping[int, tuple[str, int, int]] | None = None) -> str:
    """The whole config file. Every instance lives in a pre-allocated slot (maintenance while
    free), so adding, moving, draining or removing an instance is a runtime-API command.

    The slots are written out like `server-template` would make them, with the instances already
    `placed` ({slot: (ip, port, weight)}) at their addresses: HAProxy 2.6 restores a slot's
    state but not its IP address from the server-state file across a reload."""
    s = settings
    placed = placed or {}
    servers = "".join(
        f"    server {slot_name(i)} {placed[i][0]}:{placed[i][1]} weight {placed[i][2]}\n" if i in placed
        else f"    server {slot_name(i)} 0.0.0.0:0 disabled\n" for i in range(1, slots + 1))
    if check.http_path is not None:
        if not check.http_path.startswith("/") or any(c.isspace() for c in check.http_path):
            raise ValueError(f"health path {check.http_path!r} must start with '/' and have no spaces")
        probe = f"    option httpchk GET {check.http_path}\n"
    else:
        probe = ""  # `check` without httpchk is a TCP connect
    return f"""\
# Endpoint of application {app}; written by ladybug, changed through {files.admin_socket.name}.
global
    nbthread {s.threads}
    stats socket unix@{ADMIN_SOCKET} mode 600 level admin expose-fd listeners
    server-state-file {files.server_state}
    log stdout format raw local0 notice

defaults
    mode http
    log global
    timeout connect {s.connect_timeout_ms}ms
    timeout client {s.client_timeout_s}s
    timeout server {s.server_timeout_s}s
    timeout check {s.check_timeout_ms}ms
    # A request an instance refused or dropped goes to another instance; only idempotent
    # requests are re-sent once their bytes may have reached the instance.
    retries {s.retries}
    option redispatch 1
    load-server-state-from-file global

frontend {app}
    bind {host}:{port}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    retry-on conn-failure empty-response response-timeout
    http-request disable-l7-retry if !METH_GET
{probe}    default-server check inter {s.check_interval_ms}ms fastinter {s.check_interval_ms // 2}ms \
downinter {s.check_interval_ms}ms fall {s.fall} rise {s.rise} observe layer4 error-limit 1 on-error fastinter
{servers}"""
