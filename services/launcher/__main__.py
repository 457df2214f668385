"""`python -m services.launcher`: the whole suite on loopback until Ctrl-C.

Starts etcd and NATS (JetStream) with their data under one run directory, then
CloudTwin, spider, tumblebug and the gateway, waits for each to be healthy,
registers the demo clouds and the demo namespace, prints where everything
listens, and on one Ctrl-C stops every process it started, by PID, in reverse
order. Every hop is mutual TLS: the CA in run_dir/tls (made on the first run,
or the operator's own placed there) issues each process its certificate; the
launcher itself calls as `admin`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from dragonfly.storage import victoriametrics
from services import natsauth, tls
from services import processes as procs
from services.gateway import launch as gateway_launch
from services.launcher import cluster, demo
from services.settings import CommonSettings


@dataclass
class Endpoint:
    name: str
    address: str
    proc: procs.Proc


def _port_of(address: str, default: int) -> int:
    tail = address.rsplit(":", 1)[-1].strip("/")
    return int(tail) if tail.isdigit() else default


def _already_running(run_dir: Path) -> str:
    """A message when another launcher holds this run directory, else ""."""
    pid_file = run_dir / "launcher.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return ""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return ""
    except PermissionError:
        pass
    return (f"The suite is already running (launcher pid {pid}, run directory {run_dir}).\n"
            f"Use it as it is, or stop it first: Ctrl-C in its terminal, or `kill {pid}`.")


# CloudTwin serves SSH on each VM's own loopback address; its first VM gets this one.
FIRST_VM_ADDRESS = "127.0.1.1"


def _busy_ports(ports: dict[str, int], cloudtwin_ssh_port: int = 0) -> str:
    busy = [f"{name} port {port}" for name, port in ports.items() if procs.port_in_use(port)]
    if cloudtwin_ssh_port and procs.port_in_use(cloudtwin_ssh_port, FIRST_VM_ADDRESS):
        busy.append(f"cloudtwin SSH port {cloudtwin_ssh_port}")
    if not busy:
        return ""
    return ("Cannot start: " + ", ".join(busy) + " already in use by another program.\n"
            "Stop that program or choose other ports (CB_ETCD_ENDPOINTS, CB_NATS_URL, CB_CLOUDTWIN_PORT, "
            "CB_CLOUDTWIN_SSH_PORT, CB_SPIDER_PORT, CB_DRAGONFLY_PORT, CB_TUMBLEBUG_PORT, CB_LADYBUG_PORT, "
            "CB_GATEWAY_PORT, CB_VICTORIAMETRICS_PORT).")


async def _start_all(run_dir: Path, env: dict[str, str], ports: dict[str, int], started: list[Endpoint]) -> None:
    """Start each process in order, waiting for it to be healthy before the next."""

    async def grpc_service(name: str, module: str, extra: dict[str, str]) -> None:
        proc = procs.python_service(name, module, run_dir, {**env, **extra})
        started.append(Endpoint(name, f"127.0.0.1:{ports[name]}", proc))
        await procs.start_grpc(proc, ports[name])

    etcd = procs.etcd(run_dir, ports["etcd"])
    started.append(Endpoint("etcd", f"https://127.0.0.1:{ports['etcd']}", etcd))
    await procs.start_tcp(etcd, ports["etcd"])
    # NATS admits only JWT users: dragonfly (the one service on NATS) has its own, each agent its own.
    auth = natsauth.write_suite_auth(run_dir / "nats-auth")
    env["CB_NATS_CREDS_FILE"] = str(auth.dragonfly_creds)
    nats = procs.nats(run_dir, ports["nats"], auth.server_config)
    started.append(Endpoint("nats", f"nats://127.0.0.1:{ports['nats']}", nats))
    await procs.start_tcp(nats, ports["nats"])
    await grpc_service("cloudtwin", "spider.cloudtwin.server", {
        "CB_CLOUDTWIN_PORT": str(ports["cloudtwin"]),
        "CB_CLOUDTWIN_STATE_FILE": str(run_dir / "cloudtwin" / "state.bin"),
        "CB_CLOUDTWIN_PROVIDERS": os.environ.get("CB_CLOUDTWIN_PROVIDERS", "5"),
    })
    await grpc_service("spider", "spider.server", {
        "CB_SPIDER_PORT": str(ports["spider"]),
        "CB_SPIDER_CALL_LOG_FILE": str(run_dir / "logs" / "spider-calls.jsonl"),
    })
    dragonfly_env = {"CB_DRAGONFLY_PORT": str(ports["dragonfly"]), "CB_DRAGONFLY_AGENT_SIGNER_FILE": str(auth.signer),
                     "CB_DRAGONFLY_ACCOUNT_ADMIN_FILE": str(auth.account_admin)}
    if "victoria-metrics" in ports:  # the shared metric engine, when installed (Grafana reads it too)
        vm_port = ports["victoria-metrics"]
        victoria = victoriametrics.process(run_dir, vm_port)
        started.append(Endpoint("victoria-metrics", f"http://127.0.0.1:{vm_port}", victoria))
        await procs.start_tcp(victoria, vm_port)
        dragonfly_env |= {"CB_DRAGONFLY_STORAGE": "victoriametrics", "CB_DRAGONFLY_VM_URL": f"http://127.0.0.1:{vm_port}"}
    await grpc_service("dragonfly", "dragonfly.server", dragonfly_env)
    await grpc_service("tumblebug", "tumblebug.server", {
        "CB_TUMBLEBUG_PORT": str(ports["tumblebug"]),
        "CB_TUMBLEBUG_SPIDER_ADDR": f"127.0.0.1:{ports['spider']}",
        "CB_TUMBLEBUG_DRAGONFLY_ADDR": f"127.0.0.1:{ports['dragonfly']}",
    })
    await grpc_service("ladybug", "ladybug.server", {
        "CB_LADYBUG_PORT": str(ports["ladybug"]),
        "CB_LADYBUG_TUMBLEBUG_ADDR": f"127.0.0.1:{ports['tumblebug']}",
        "CB_LADYBUG_DRAGONFLY_ADDR": f"127.0.0.1:{ports['dragonfly']}",
        "CB_LADYBUG_ENDPOINT_RUN_DIR": str(run_dir / "endpoints"),
    })
    # Last, the REST gateway in front of every service started above (CloudTwin is a cloud, not a service).
    backends = {ep.name: ep.address for ep in started if ep.name not in ("etcd", "nats", "cloudtwin", "victoria-metrics")}
    gateway = gateway_launch.suite_process(run_dir, env, ports["gateway"], backends)
    started.append(Endpoint("gateway", f"http://127.0.0.1:{ports['gateway']}", gateway))
    await gateway_launch.start(gateway, ports["gateway"])


def _cbctl() -> str:
    """How to call cbctl from here: the venv's script is not on PATH unless the venv is activated."""
    script = Path(sys.executable).parent / "cbctl"
    if shutil.which("cbctl") == str(script) or not script.exists():
        return "cbctl"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)


def _print_table(started: list[Endpoint], connections: list[str], run_dir: Path, example: str) -> None:
    print("\nThe suite is running on loopback:\n")
    for ep in started:
        print(f"  {ep.name:<16} {ep.address:<28} pid {ep.proc.pid:<8} log {ep.proc.log_path}")
    print(f"\n  {len(connections)} demo connections registered in spider: {', '.join(connections)}")
    print(f"  tumblebug namespace: {demo.NAMESPACE} (cbctl's default here)")
    print(f"  run directory: {run_dir}")
    print(f"  {gateway_launch.key_note(run_dir)}")
    gateway = next(ep.address for ep in started if ep.name == "gateway")
    cli = _cbctl()
    print(f"\nTry:  {cli} get connections        (REST API {gateway}, docs {gateway}/docs)")
    if example:
        print(f"      {example.replace('cbctl', cli, 1)}")
        print(f"      {demo.app_example(run_dir).replace('cbctl', cli, 1)}   "
              f"(then: {cli} get apps; {cli} rollout status hello)")
    spider = next(ep.address for ep in started if ep.name == "spider")
    tls_dir = run_dir / "tls"
    print(f"      grpcurl -cacert {tls_dir}/ca.crt -cert {tls_dir}/admin.crt -key {tls_dir}/admin.key {spider} list"
          "   (mutual TLS; reflection is on)")
    print("Press Ctrl-C once to stop everything.\n", flush=True)


def _start_failure(err: Exception) -> str:
    """What to tell the person who ran the launcher when the suite or its demo did not come up."""
    if isinstance(err, grpc.aio.AioRpcError):
        return f"The suite could not set up its demo: {err.code().name}: {err.details()}"
    return f"The suite could not start: {err}"


def _clustered() -> bool:
    """`python -m services.launcher --cluster` or CB_CLUSTER=1: the clustered topology (services/launcher/cluster.py)."""
    return "--cluster" in sys.argv[1:] or os.environ.get("CB_CLUSTER", "").strip().lower() in ("1", "true", "yes")


async def run_cluster(run_dir: Path) -> int:
    """The clustered topology on loopback until Ctrl-C: 3 etcd members, 3 NATS nodes, 2 replicas
    of every service (free ports), the gateway on CB_GATEWAY_PORT (8000)."""
    gateway_port = int(os.environ.get("CB_GATEWAY_PORT", "8000"))
    message = _busy_ports({"gateway": gateway_port})
    if message:
        print(message, file=sys.stderr)
        return 1
    (run_dir / "launcher.pid").write_text(str(os.getpid()))
    tls.Authority.ensure(run_dir / "tls").identity("admin").install()
    suite = cluster.Cluster(run_dir, gateway_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    try:
        print(f"Starting the clustered suite (run directory {run_dir}) …", flush=True)
        starting = asyncio.create_task(suite.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            starting.cancel()
            return 130
        starting.result()
        connections = await demo.register(suite.addresses("spider"), suite.addresses("cloudtwin"))
        (run_dir / "namespace").write_text(await demo.namespace(suite.addresses("tumblebug")) + "\n")
        (run_dir / "suite.json").write_text(json.dumps(
            {f"{m.role}-{m.port}": {"address": m.address, "pid": m.proc.pid} for m in suite.members}, indent=2))
        print("\nThe clustered suite is running on loopback:\n")
        for m in suite.members:
            print(f"  {m.role:<17} {m.address:<22} pid {m.proc.pid:<8} log {m.proc.log_path}")
        print(f"\n  {len(connections)} demo connections; gateway {suite.gateway_url}; "
              f"{gateway_launch.key_note(run_dir)}")
        print("Stop one member by its PID to see the others take over. Press Ctrl-C once to stop everything.\n",
              flush=True)
        await stop.wait()
    except (RuntimeError, TimeoutError, OSError, grpc.aio.AioRpcError) as err:
        print(_start_failure(err), file=sys.stderr)
        code = 1
    finally:
        print("Stopping …", flush=True)
        suite.stop()  # the apps' endpoints too
        for name in ("launcher.pid", "suite.json", "namespace"):
            (run_dir / name).unlink(missing_ok=True)
        print("Stopped; nothing left running.", flush=True)
    return code


async def main() -> int:
    common = CommonSettings()
    run_dir = Path(os.environ.get("CB_RUN_DIR", ".run")).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    message = _already_running(run_dir)
    if message:
        print(message, file=sys.stderr)
        return 1
    if _clustered():
        return await run_cluster(run_dir)
    ports = {
        "etcd": _port_of(common.etcd_endpoints, 2379),
        "nats": _port_of(common.nats_url, 4222),
        "cloudtwin": int(os.environ.get("CB_CLOUDTWIN_PORT", "7000")),
        "spider": int(os.environ.get("CB_SPIDER_PORT", "2048")),
        "dragonfly": int(os.environ.get("CB_DRAGONFLY_PORT", "9999")),
        "tumblebug": int(os.environ.get("CB_TUMBLEBUG_PORT", "50252")),
        "ladybug": int(os.environ.get("CB_LADYBUG_PORT", "50254")),
        "gateway": int(os.environ.get("CB_GATEWAY_PORT", "8000")),
    }
    if shutil.which(victoriametrics.BINARY):
        # A fixed port, so a Grafana data source (or a bookmark) outlives a restart.
        ports["victoria-metrics"] = int(os.environ.get("CB_VICTORIAMETRICS_PORT", "8428"))
    message = _busy_ports(ports, int(os.environ.get("CB_CLOUDTWIN_SSH_PORT", "2222")))
    if message:
        print(message, file=sys.stderr)
        return 1
    pid_file = run_dir / "launcher.pid"
    pid_file.write_text(str(os.getpid()))
    # The suite's private CA (or the operator's, placed there beforehand), reused across runs:
    # every child gets its own certificate from it; the launcher itself calls as `admin`.
    tls.Authority.ensure(run_dir / "tls").identity("admin").install()
    env = {
        "CB_ETCD_ENDPOINTS": f"127.0.0.1:{ports['etcd']}",
        "CB_NATS_URL": f"nats://127.0.0.1:{ports['nats']}",
        "CB_SECRET_KEY_FILE": str(run_dir / "secret.key"),
    }
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGHUP too: a closed terminal must not leave the children running.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    started: list[Endpoint] = []
    code = 0
    try:
        print(f"Starting the suite (run directory {run_dir}) …", flush=True)
        t0 = time.monotonic()
        starting = asyncio.create_task(_start_all(run_dir, env, ports, started))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            starting.cancel()
            return 130
        starting.result()
        connections = await demo.register(f"127.0.0.1:{ports['spider']}", f"127.0.0.1:{ports['cloudtwin']}")
        tumblebug = f"127.0.0.1:{ports['tumblebug']}"
        # cbctl's default namespace when run from here (as it finds admin.key here).
        (run_dir / "namespace").write_text(await demo.namespace(tumblebug) + "\n")
        example = await demo.mcis_example(tumblebug, connections)
        (run_dir / "suite.json").write_text(json.dumps(
            {ep.name: {"address": ep.address, "pid": ep.proc.pid} for ep in started}, indent=2))
        _print_table(started, connections, run_dir, example)
        print(f"Ready in {time.monotonic() - t0:.1f}s.", flush=True)
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            for ep in started:
                if not ep.proc.alive():
                    print(f"{ep.name} exited unexpectedly; last lines of {ep.proc.log_path}:\n{ep.proc.tail()}",
                          file=sys.stderr, flush=True)
                    stop.set()
                    code = 1
    except (RuntimeError, TimeoutError, OSError, grpc.aio.AioRpcError) as err:
        print(_start_failure(err), file=sys.stderr)
        code = 1
    finally:
        print("Stopping …", flush=True)
        for ep in reversed(started):
            ep.proc.stop()
        cluster.stop_app_endpoints(run_dir / "endpoints")
        pid_file.unlink(missing_ok=True)
        (run_dir / "suite.json").unlink(missing_ok=True)
        (run_dir / "namespace").unlink(missing_ok=True)
        print("Stopped; nothing left running.", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
