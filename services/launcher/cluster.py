"""The clustered topology on one machine: 3 etcd members, 3 NATS nodes, 2 replicas of every
service, one gateway in front of them all, everything on 127.0.0.1.

It is what the docker-compose/Kubernetes `prod` deployments run, on loopback: for trying the
suite's failover and for the fault tests (tests/integration/cluster) and bench/cluster_faults.py,
which kill its processes by PID. Each service's replicas share `CB_ETCD_ENDPOINTS` and
`CB_NATS_URL` listing every member; a caller of a service gets every replica as one address list
(`127.0.0.1:a,127.0.0.1:b`, balanced round robin by gRPC). Reconcilers run in the leader only
(etcd election); dragonfly's collectors share NATS queue groups. CloudTwin (the cloud) and
VictoriaMetrics (the metric engine both dragonfly replicas write to) are one process each.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dragonfly.storage import victoriametrics
from services import natsauth, secrets
from services import processes as procs
from services.gateway import launch as gateway_launch

ETCD_MEMBERS = 3
NATS_NODES = 3
REPLICAS = 2
SERVICES = ("spider", "dragonfly", "tumblebug", "ladybug")


@dataclass
class Member:
    """One process of the topology: its role (`etcd`, `nats`, `spider`, …), port and process."""

    role: str
    port: int
    proc: procs.Proc

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Cluster:
    """Start with `start()`, stop with `stop()`; `extra_env` adds settings per role."""

    run_dir: Path
    gateway_port: int = 0
    extra_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    members: list[Member] = field(default_factory=list)

    def of(self, role: str) -> list[Member]:
        return [m for m in self.members if m.role == role]

    def addresses(self, role: str) -> str:
        """Every replica of `role`, as one address list."""
        return ",".join(m.address for m in self.of(role))

    @property
    def etcd_endpoints(self) -> str:
        return self.addresses("etcd")

    @property
    def nats_url(self) -> str:
        return ",".join(f"nats://{m.address}" for m in self.of("nats"))

    @property
    def gateway_url(self) -> str:
        return f"http://{self.of('gateway')[0].address}"

    async def start(self) -> Cluster:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        await self._start_etcd()
        self.auth = natsauth.write_suite_auth(self.run_dir / "nats-auth")
        await self._start_nats()
        self.env = {"CB_ETCD_ENDPOINTS": self.etcd_endpoints, "CB_NATS_URL": self.nats_url,
                    "CB_SECRET_KEY_FILE": str(self.run_dir / "secret.key"),
                    "CB_NATS_CREDS_FILE": str(self.auth.dragonfly_creds)}
        # Made once here: replicas starting together would race to create it.
        secrets.load_key("", str(self.run_dir / "secret.key"))
        twin_port = procs.free_port()
        await self._one("cloudtwin", "spider.cloudtwin.server", twin_port, {
            "CB_CLOUDTWIN_PORT": str(twin_port),
            "CB_CLOUDTWIN_STATE_FILE": str(self.run_dir / "cloudtwin" / "state.bin"),
            "CB_CLOUDTWIN_PROVIDERS": os.environ.get("CB_CLOUDTWIN_PROVIDERS", "3")})
        # Every replica's port is chosen first: callers of a service are given all of its replicas.
        ports = {s: [procs.free_port() for _ in range(REPLICAS)] for s in SERVICES}
        addr = {s: ",".join(f"127.0.0.1:{p}" for p in ps) for s, ps in ports.items()}
        dragonfly = {"CB_DRAGONFLY_AGENT_SIGNER_FILE": str(self.auth.signer),
                     "CB_DRAGONFLY_ACCOUNT_ADMIN_FILE": str(self.auth.account_admin)}
        if shutil.which(victoriametrics.BINARY):
            vm_port = procs.free_port()
            victoria = victoriametrics.process(self.run_dir, vm_port)
            self.members.append(Member("victoria-metrics", vm_port, victoria))
            await procs.start_tcp(victoria, vm_port)
            dragonfly |= {"CB_DRAGONFLY_STORAGE": "victoriametrics",
                          "CB_DRAGONFLY_VM_URL": f"http://127.0.0.1:{vm_port}"}
        per_service = {
            "spider": ("spider.server", {}),
            "dragonfly": ("dragonfly.server", dragonfly),
            "tumblebug": ("tumblebug.server", {"CB_TUMBLEBUG_SPIDER_ADDR": addr["spider"],
                                               "CB_TUMBLEBUG_DRAGONFLY_ADDR": addr["dragonfly"]}),
            "ladybug": ("ladybug.server", {"CB_LADYBUG_TUMBLEBUG_ADDR": addr["tumblebug"],
                                           "CB_LADYBUG_DRAGONFLY_ADDR": addr["dragonfly"],
                                           "CB_LADYBUG_ENDPOINT_RUN_DIR": str(self.run_dir / "endpoints")}),
        }
        # All replicas at once: they find each other through etcd and lazy gRPC channels.
        await asyncio.gather(*(self._replica(service, module, port, env)
                               for service, (module, env) in per_service.items() for port in ports[service]))
        port = self.gateway_port or procs.free_port()
        gateway = gateway_launch.suite_process(self.run_dir, {**self.env, **self.extra_env.get("gateway", {})},
                                               port, addr)
        self.members.append(Member("gateway", port, gateway))
        await gateway_launch.start(gateway, port)
        return self

    async def _start_etcd(self) -> None:
        peers = {f"etcd{i}": procs.free_port() for i in range(ETCD_MEMBERS)}
        for name in peers:
            port = procs.free_port()
            self.members.append(Member("etcd", port, procs.etcd(self.run_dir, port, member=name, cluster=peers)))
        # Each member waits for a quorum: they start together.
        await asyncio.gather(*(procs.start_tcp(m.proc, m.port) for m in self.of("etcd")))

    async def _start_nats(self) -> None:
        routes = [procs.free_port() for _ in range(NATS_NODES)]
        for i, route in enumerate(routes):
            name = f"nats{i}"
            config = procs.nats_node_config(self.auth.server_config, self.run_dir / "nats-auth", name, route, routes)
            port = procs.free_port()
            # No JetStream: the suite uses core NATS only (request/reply, queue groups).
            self.members.append(Member("nats", port, procs.nats(self.run_dir, port, config, name, jetstream=False)))
        await asyncio.gather(*(procs.start_tcp(m.proc, m.port) for m in self.of("nats")))

    async def _one(self, role: str, module: str, port: int, env: Mapping[str, str]) -> Member:
        proc = procs.python_service(f"{role}-{port}", module, self.run_dir,
                                    {**self.env, **env, **self.extra_env.get(role, {})})
        member = Member(role, port, proc)
        self.members.append(member)
        await procs.start_grpc(proc, port, timeout=60)
        return member

    async def _replica(self, service: str, module: str, port: int, env: Mapping[str, str]) -> Member:
        prefix = f"CB_{service.upper()}_"
        own = {f"{prefix}PORT": str(port), f"{prefix}HOST": "127.0.0.1"}
        if service == "spider":
            own["CB_SPIDER_CALL_LOG_FILE"] = str(self.run_dir / "logs" / f"spider-calls-{port}.jsonl")
        return await self._one(service, module, port, {**env, **own})

    async def restart(self, member: Member) -> None:
        """Start a stopped member again, on its port, with its data."""
        member.proc.popen = None
        if member.role in SERVICES or member.role == "cloudtwin":
            await procs.start_grpc(member.proc, member.port, timeout=60)
        else:
            await procs.start_tcp(member.proc, member.port)

    def stop(self) -> None:
        """Stop every process, by PID, the last started first, and the apps' endpoints."""
        for member in reversed(self.members):
            member.proc.stop()
        stop_app_endpoints(self.run_dir / "endpoints")


def stop_app_endpoints(directory: Path) -> None:
    """The apps' HAProxy endpoints outlive ladybug on purpose (a restarted ladybug adopts them);
    stopping the suite stops them too, by their PID files."""
    for pid_file in directory.glob("*/haproxy.pid"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
