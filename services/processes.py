"""Child processes of the launcher and of the tests: etcd, NATS, and our own servers.

Every process binds 127.0.0.1 on a port chosen here, keeps its data and its
log under one run directory, and is stopped by its PID. Each one is given its own
certificate, issued by the CA of the process that starts it (`tls_env`): etcd serves
and peers over mutual TLS, our servers read theirs from `CB_TLS_…`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services import tls
from services.rpc.client import is_serving

BIN = Path(sys.executable).parent


# Ports handed out by this process: never twice, even before their server binds them.
_given: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now, below the kernel's ephemeral range.

    A port taken from the ephemeral range (bind to 0) can be given by the kernel to an outgoing
    connection of another process before our server binds it ("Address already in use"); below
    that range only listeners compete, and each is checked free here."""
    low, _ = _ephemeral_range()
    first = 20_000
    if low - first >= 1_000:
        for _ in range(200):
            port = random.randrange(first, low)
            if port in _given:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
            _given.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def binary(name: str) -> str:
    """A program installed in this environment (etcd, nats-server), else from PATH."""
    here = BIN / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed; run `make setup`")
    return found


@dataclass
class Proc:
    """A child process with its log file; stopped by its own PID."""

    name: str
    argv: list[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        env = {**os.environ, **self.env}
        # A new session so a Ctrl-C in the terminal reaches the launcher only,
        # which then stops the children in order.
        self.popen = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True)
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit within `timeout`."""
        if not self.alive():
            return
        assert self.popen is not None
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


async def wait_until(check: object, what: str, proc: Proc | None = None, timeout: float = 30.0) -> None:
    """Poll an async `check()` until it is true; fail early if `proc` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited while starting:\n{proc.tail()}")
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{what} did not become ready in {timeout:.0f}s" + (f":\n{proc.tail()}" if proc else ""))


async def tcp_open(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def own_authority(directory: Path) -> tls.Authority:
    """The CA this process issues its children's certificates from: the one its settings name
    (a test session's, say), else a new one in `directory`, this process then being `admin`."""
    if os.environ.get("CB_TLS_CA_FILE"):
        with contextlib.suppress(FileNotFoundError):
            return tls.authority_of_this_process()
    authority = tls.Authority.ensure(directory)
    authority.identity("admin").install()
    return authority


def identity(name: str) -> tls.Identity:
    """The certificate of a child called `name`, issued by this process's own CA."""
    return tls.authority_of_this_process().identity(name)


def tls_env(name: str) -> dict[str, str]:
    """`CB_TLS_…` that make a child process the identity `name`."""
    return identity(name).env()


def go_env() -> dict[str, str]:
    """The scheduler setting of a Go server (etcd, nats-server) that shares the machine with the
    rest of the suite: at most half the CPUs this process may use (at least one), unless
    GOMAXPROCS is set already. Go's default, one P per CPU, keeps idle Ps spinning for work after
    every wake-up; on 2 cores with one P, nats-server took a quarter less CPU for the same 1,000
    agents (ARCHITECTURE, "Go servers get half the CPUs")."""
    if "GOMAXPROCS" in os.environ:
        return {}
    return {"GOMAXPROCS": str(max(1, len(os.sched_getaffinity(0)) // 2))}


def etcd(run_dir: Path, port: int, peer_port: int | None = None, durable: bool = True,
         member: str = "cb", cluster: Mapping[str, int] | None = None) -> Proc:
    """etcd with its data under run_dir/etcd, clients and peers on mutual TLS (identity `etcd`).
    `durable=False` skips fsync (tests). A member of a cluster is named `member` and given every
    member's peer port in `cluster` (name → port, its own included); its data and log are its own."""
    peer = (cluster or {}).get(member) or peer_port or free_port()
    members = cluster or {member: peer}
    me = identity("etcd")
    suffix = "" if cluster is None else f"-{member}"
    argv = [
        binary("etcd"), "--name", member, "--data-dir", str(run_dir / f"etcd{suffix}"),
        "--listen-client-urls", f"https://127.0.0.1:{port}", "--advertise-client-urls", f"https://127.0.0.1:{port}",
        "--listen-peer-urls", f"https://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"https://127.0.0.1:{peer}",
        "--initial-cluster", ",".join(f"{name}=https://127.0.0.1:{p}" for name, p in members.items()),
        "--initial-cluster-token", "cb", "--log-level", "warn",
        "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1h",
        # Only a client with a certificate of our CA gets in; the same for peers.
        "--client-cert-auth", "--trusted-ca-file", str(me.ca_file),
        "--cert-file", str(me.cert_file), "--key-file", str(me.key_file),
        "--peer-client-cert-auth", "--peer-trusted-ca-file", str(me.ca_file),
        "--peer-cert-file", str(me.cert_file), "--peer-key-file", str(me.key_file),
    ]
    if not durable:
        argv.append("--unsafe-no-fsync")
    return Proc(f"etcd{suffix}", argv, run_dir / "logs" / f"etcd{suffix}.log", env=go_env())


def nats(run_dir: Path, port: int, config: Path | None = None, name: str = "nats", jetstream: bool = True) -> Proc:
    """nats-server (with JetStream unless told not), its store under run_dir/`name`."""
    argv = [binary("nats-server"), "-a", "127.0.0.1", "-p", str(port)]
    if jetstream:
        argv += ["-js", "-sd", str(run_dir / name)]
    if config is not None:
        argv += ["-c", str(config)]
    return Proc(name, argv, run_dir / "logs" / f"{name}.log", env=go_env())


def nats_node_config(auth_config: Path, directory: Path, name: str, route_port: int, routes: list[int]) -> Path:
    """The config of one node of a NATS cluster on loopback: the suite's operator-mode auth
    (`auth_config`, from natsauth.write_suite_auth) with the node's own copy of the account
    resolver's directory (a full resolver keeps one per server; they sync over the routes),
    its name, and routes to every node (`routes`: their cluster ports, its own included)."""
    text = auth_config.read_text()
    match = re.search(r'dir: "([^"]+)"', text)
    if match is None:
        raise ValueError(f"{auth_config} has no resolver directory")
    own = directory / f"{name}-accounts"
    shutil.rmtree(own, ignore_errors=True)
    shutil.copytree(match.group(1), own)
    own.chmod(0o700)
    text = text.replace(match.group(0), f'dir: "{own.resolve()}"')
    route_urls = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes if p != route_port)
    text += "\n".join([f"server_name: {name}", "cluster {", "  name: cb", f"  listen: 127.0.0.1:{route_port}",
                       f"  routes: [{route_urls}]", "}", ""])
    path = directory / f"{name}.conf"
    path.write_text(text)
    path.chmod(0o600)
    return path


def python_service(name: str, module: str, run_dir: Path, env: Mapping[str, str]) -> Proc:
    """One of our servers, run as `python -m module` with its settings in `env`.

    Its TLS identity is `name` up to the first "-" (`spider-4242` is `spider`), with a
    certificate from this process's CA, unless `env` names certificate files already."""
    full = dict(env)
    if "CB_TLS_CERT_FILE" not in full:
        full |= tls_env(name.split("-")[0])
    return Proc(name, [sys.executable, "-m", module], run_dir / "logs" / f"{name}.log", env=full)


async def start_grpc(proc: Proc, port: int, timeout: float = 30.0) -> Proc:
    """Start a gRPC server process and wait until its health check says SERVING."""
    proc.start()

    async def healthy() -> bool:
        return await is_serving(f"127.0.0.1:{port}", timeout=0.5)

    await wait_until(healthy, f"{proc.name} on 127.0.0.1:{port}", proc, timeout)
    return proc


async def start_tcp(proc: Proc, port: int, timeout: float = 30.0) -> Proc:
    """Start a process and wait until it accepts TCP connections on `port`."""
    proc.start()
    await wait_until(lambda: tcp_open(port), f"{proc.name} on 127.0.0.1:{port}", proc, timeout)
    return proc
