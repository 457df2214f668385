"""What a workload is on the wire between dragonfly and an agent, checked before anything runs.

A set request (`cb.agent.{vm}.workloads`) is one app's whole set:

    {"app": "web", "blobs": {sha256 hex: base64}, "workloads": [
        {"id": "web-1", "app": "web", "revision": 3, "command": "python3 app.py",
         "env": {"K": "V"}, "files": {"app.py": sha256 hex}, "ports": [8080],
         "health": {"kind": "http", "http_path": "/healthz", "command": "", "port": 0,
                    "interval_s": 2, "timeout_s": 1, "healthy_threshold": 1, "unhealthy_threshold": 3},
         "restart": {"initial_backoff_s": 0.5, "max_backoff_s": 30, "crash_loop_restarts": 5,
                     "crash_loop_window_s": 60},
         "stop_grace_s": 5}]}

File contents travel once per request in `blobs`, named by their SHA-256 (the instances of
one app on a VM usually carry the same files), and each workload's files name their blob.
Zero means "the default" for every number, as in the protobuf contract. Everything is
checked here, and a body that does not pass is refused whole: nothing of it runs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any

NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# Files of one workload, decoded, all together.
MAX_FILES_BYTES = 1 << 20
MAX_FILES = 256
MAX_COMMAND_CHARS = 8192
MAX_ENV_BYTES = 64 << 10
MAX_PORTS = 16
MAX_WORKLOADS_PER_APP = 64
PROBE_KINDS = ("none", "http", "tcp", "command")
# The agent sets these itself; a workload's env cannot override them.
RESERVED_ENV = ("PORT", "HOST", "CB_APP", "CB_REVISION", "CB_INSTANCE")


class SpecError(ValueError):
    """A body that cannot be run, with what is wrong in words a person can act on."""


@dataclass(frozen=True)
class HealthSpec:
    kind: str = "none"
    http_path: str = ""
    command: str = ""
    port: int = 0
    interval_s: float = 2.0
    timeout_s: float = 1.0
    healthy_threshold: int = 1
    unhealthy_threshold: int = 3


@dataclass(frozen=True)
class RestartSpec:
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    crash_loop_restarts: int = 5
    crash_loop_window_s: float = 60.0


@dataclass(frozen=True)
class WorkloadSpec:
    """One process to keep running, as the agent keeps it (file contents decoded)."""

    id: str
    app: str
    revision: int
    command: str
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    ports: tuple[int, ...] = ()
    health: HealthSpec = HealthSpec()
    restart: RestartSpec = RestartSpec()
    stop_grace_s: float = 5.0

    def to_wire(self) -> dict[str, Any]:
        """Self-contained JSON (files inline, base64): what the agent persists."""
        out = asdict(self)
        out["files"] = {p: base64.b64encode(c).decode() for p, c in self.files.items()}
        out["ports"] = list(self.ports)
        return out

    @property
    def probe_port(self) -> int:
        return self.health.port or (self.ports[0] if self.ports else 0)


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float, what: str) -> float:
    value = body.get(key, 0) or 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{what}.{key} must be a number")
    if value == 0:
        return default
    if not low <= value <= high:
        raise SpecError(f"{what}.{key} must be between {low:g} and {high:g} (0 = default {default:g})")
    return float(value)


def _int(body: dict[str, Any], key: str, default: int, low: int, high: int, what: str) -> int:
    value = _number(body, key, default, low, high, what)
    if value != int(value):
        raise SpecError(f"{what}.{key} must be a whole number")
    return int(value)


def _text(body: dict[str, Any], key: str, what: str, limit: int) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise SpecError(f"{what}.{key} must be a string")
    if len(value) > limit:
        raise SpecError(f"{what}.{key} is longer than {limit} characters")
    return value


def _object(body: dict[str, Any], key: str, what: str) -> dict[str, Any]:
    value = body.get(key) or {}
    if not isinstance(value, dict):
        raise SpecError(f"{what}.{key} must be an object")
    return value


def parse_health(body: dict[str, Any], what: str) -> HealthSpec:
    kind = body.get("kind", "none") or "none"
    if kind not in PROBE_KINDS:
        raise SpecError(f"{what}.kind must be one of {', '.join(PROBE_KINDS)}")
    path = _text(body, "http_path", what, 2048)
    command = _text(body, "command", what, MAX_COMMAND_CHARS)
    if kind == "http" and not path.startswith("/"):
        raise SpecError(f"{what}.http_path must start with '/'")
    if kind == "command" and not command.strip():
        raise SpecError(f"{what}.command is required for a command probe")
    return HealthSpec(kind=kind, http_path=path if kind == "http" else "",
                      command=command if kind == "command" else "",
                      port=_int(body, "port", 0, 1, 65535, what),
                      interval_s=_number(body, "interval_s", 2.0, 0.05, 3600, what),
                      timeout_s=_number(body, "timeout_s", 1.0, 0.01, 600, what),
                      healthy_threshold=_int(body, "healthy_threshold", 1, 1, 100, what),
                      unhealthy_threshold=_int(body, "unhealthy_threshold", 3, 1, 100, what))


def parse_restart(body: dict[str, Any], what: str) -> RestartSpec:
    initial = _number(body, "initial_backoff_s", 0.5, 0.01, 3600, what)
    most = _number(body, "max_backoff_s", max(30.0, initial), 0.01, 86400, what)
    if most < initial:
        raise SpecError(f"{what}.max_backoff_s must be at least initial_backoff_s")
    return RestartSpec(initial, most, _int(body, "crash_loop_restarts", 5, 1, 10_000, what),
                       _number(body, "crash_loop_window_s", 60.0, 0.1, 86400, what))


def _relative(path: Any, what: str) -> str:
    if not isinstance(path, str) or not path:
        raise SpecError(f"{what}: a file path must be a non-empty string")
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\x00" in path or len(path) > 512:
        raise SpecError(f"{what}: file path {path[:80]!r} must be relative, inside the workload's directory")
    return str(pure)


def parse_workload(body: Any, app: str, blobs: dict[str, bytes], index: int) -> WorkloadSpec:
    what = f"workloads[{index}]"
    if not isinstance(body, dict):
        raise SpecError(f"{what} must be an object")
    wid = body.get("id")
    if not isinstance(wid, str) or not NAME.match(wid):
        raise SpecError(f"{what}.id must be lowercase letters, digits and '-', at most 63")
    what = f"workload {wid!r}"
    if body.get("app", app) != app:
        raise SpecError(f"{what} belongs to app {body.get('app')!r}, not {app!r}")
    revision = body.get("revision", 0)
    if isinstance(revision, str) and revision.isdigit():
        revision = int(revision)
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise SpecError(f"{what}.revision must be a whole number >= 0")
    command = _text(body, "command", what, MAX_COMMAND_CHARS)
    if not command.strip():
        raise SpecError(f"{what}.command is required")
    env = _object(body, "env", what)
    for key, value in env.items():
        if not isinstance(value, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise SpecError(f"{what}.env: {key[:80]!r} must be a variable name with a string value")
        if key in RESERVED_ENV:
            raise SpecError(f"{what}.env: {key} is set by the agent")
    if sum(len(k) + len(v) for k, v in env.items()) > MAX_ENV_BYTES:
        raise SpecError(f"{what}.env is over {MAX_ENV_BYTES} bytes")
    files: dict[str, bytes] = {}
    refs = _object(body, "files", what)
    if len(refs) > MAX_FILES:
        raise SpecError(f"{what} has more than {MAX_FILES} files")
    for path, digest in refs.items():
        if digest not in blobs:
            raise SpecError(f"{what}: file {str(path)[:80]!r} names a blob the request does not carry")
        files[_relative(path, what)] = blobs[digest]
    total = sum(len(c) for c in files.values())
    if total > MAX_FILES_BYTES:
        raise SpecError(f"{what}: its files are {total} bytes, over the cap of {MAX_FILES_BYTES} (1 MiB)")
    ports = body.get("ports") or []
    if (not isinstance(ports, list) or len(ports) > MAX_PORTS
            or any(isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 65535 for p in ports)):
        raise SpecError(f"{what}.ports must be at most {MAX_PORTS} port numbers between 1 and 65535")
    health = parse_health(_object(body, "health", what), f"{what}.health")
    if health.kind in ("http", "tcp") and not (health.port or ports):
        raise SpecError(f"{what}.health: an {health.kind} probe needs a port (health.port or ports)")
    return WorkloadSpec(id=wid, app=app, revision=revision, command=command, env=dict(env), files=files,
                        ports=tuple(ports), health=health,
                        restart=parse_restart(_object(body, "restart", what), f"{what}.restart"),
                        stop_grace_s=_number(body, "stop_grace_s", 5.0, 0.01, 600, what))


def parse_blobs(body: Any) -> dict[str, bytes]:
    if not isinstance(body, dict):
        raise SpecError("blobs must be an object")
    out: dict[str, bytes] = {}
    for digest, text in body.items():
        try:
            content = base64.b64decode(text, validate=True)
        except (binascii.Error, TypeError, ValueError) as err:
            raise SpecError(f"blob {str(digest)[:16]} is not base64") from err
        if hashlib.sha256(content).hexdigest() != digest:
            raise SpecError(f"blob {str(digest)[:16]} does not match its SHA-256")
        out[digest] = content
    return out


def parse_set(body: Any) -> tuple[str, list[WorkloadSpec]]:
    """(app, its whole set) from a set request; SpecError says what is wrong."""
    if not isinstance(body, dict):
        raise SpecError("a workloads request is a JSON object")
    app = body.get("app")
    if not isinstance(app, str) or not NAME.match(app):
        raise SpecError("app must be lowercase letters, digits and '-', at most 63")
    items = body.get("workloads") or []
    if not isinstance(items, list) or len(items) > MAX_WORKLOADS_PER_APP:
        raise SpecError(f"workloads must be a list of at most {MAX_WORKLOADS_PER_APP}")
    blobs = parse_blobs(body.get("blobs") or {})
    specs = [parse_workload(item, app, blobs, i) for i, item in enumerate(items)]
    ids = [s.id for s in specs]
    if len(set(ids)) != len(ids):
        raise SpecError("workload IDs must be unique")
    return app, specs


def set_body(app: str, specs: list[WorkloadSpec]) -> dict[str, Any]:
    """The set request for `specs` (blobs deduplicated): parse_set's inverse."""
    blobs: dict[str, str] = {}
    workloads = []
    for spec in specs:
        wire = spec.to_wire()
        refs = {}
        for path, content in spec.files.items():
            digest = hashlib.sha256(content).hexdigest()
            blobs[digest] = base64.b64encode(content).decode()
            refs[path] = digest
        wire["files"] = refs
        workloads.append(wire)
    return {"app": app, "blobs": blobs, "workloads": workloads}


def from_saved(body: dict[str, Any]) -> WorkloadSpec:
    """A spec persisted with `to_wire` (files inline)."""
    files = {p: base64.b64decode(c) for p, c in dict(body.get("files") or {}).items()}
    blobs = {hashlib.sha256(c).hexdigest(): c for c in files.values()}
    refs = {p: hashlib.sha256(c).hexdigest() for p, c in files.items()}
    return parse_workload({**body, "files": refs}, str(body.get("app", "")), blobs, 0)
