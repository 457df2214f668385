"""Real servers for tests: etcd, CloudTwin and spider, each on a free loopback port."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as tw_grpc
from cbapi.spider.v1 import spider_pb2 as pb
from cbapi.spider.v1 import spider_pb2_grpc
from services import processes as procs
from services.rpc.client import channel


@dataclass
class Server:
    proc: procs.Proc
    port: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.stop()


async def start_etcd(run_dir: Path) -> Server:
    port = procs.free_port()
    proc = procs.etcd(run_dir, port, durable=False)
    await procs.start_tcp(proc, port)
    return Server(proc, port)


@dataclass
class EtcdCluster:
    """Three etcd members on loopback (mutual TLS for clients and peers)."""

    members: list[Server]

    @property
    def endpoints(self) -> str:
        """`CB_ETCD_ENDPOINTS` for every member."""
        return ",".join(m.address for m in self.members)

    def stop(self) -> None:
        for member in self.members:
            member.stop()


async def start_etcd_cluster(run_dir: Path, size: int = 3) -> EtcdCluster:
    """A fresh cluster of `size` members; each waits for the others, so they start together."""
    peers = {f"m{i}": procs.free_port() for i in range(size)}
    clients = {name: procs.free_port() for name in peers}
    members = [Server(procs.etcd(run_dir, clients[name], durable=False, member=name, cluster=peers), clients[name])
               for name in peers]
    await asyncio.gather(*(procs.start_tcp(m.proc, m.port) for m in members))
    return EtcdCluster(members)


async def restart(server: Server, grpc_health: bool = True) -> None:
    """Start the same program again on the same port (after stop or kill)."""
    server.proc.popen = None
    if grpc_health:
        await procs.start_grpc(server.proc, server.port)
    else:
        await procs.start_tcp(server.proc, server.port)


async def start_moto(run_dir: Path) -> Server:
    """moto's AWS emulation as a server on loopback (the aws driver's test cloud)."""
    port = procs.free_port()
    env = {"MOTO_ENABLE_AMI_VALIDATION": "true", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    proc = procs.Proc("moto", [procs.binary("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                      run_dir / "logs" / "moto.log", env=env)
    await procs.start_tcp(proc, port)
    return Server(proc, port, env)


async def start_cloudtwin(run_dir: Path, **env: str) -> Server:
    port = procs.free_port()
    # Its own SSH port: twins running at once hand out the same VM addresses.
    full = {"CB_CLOUDTWIN_PORT": str(port), "CB_CLOUDTWIN_HOST": "127.0.0.1",
            "CB_CLOUDTWIN_SSH_PORT": str(procs.free_port()), **env}
    proc = procs.python_service("cloudtwin", "spider.cloudtwin.server", run_dir, full)
    await procs.start_grpc(proc, port)
    return Server(proc, port, full)


async def start_spider(run_dir: Path, etcd: Server, **env: str) -> Server:
    port = procs.free_port()
    full = {
        "CB_SPIDER_PORT": str(port), "CB_SPIDER_HOST": "127.0.0.1",
        "CB_ETCD_ENDPOINTS": etcd.address, "CB_SECRET_KEY_FILE": str(run_dir / "secret.key"),
        "CB_SPIDER_CALL_LOG_FILE": str(run_dir / "logs" / f"spider-calls-{port}.jsonl"),
        "CB_GRACE_SECONDS": "1", **env,
    }
    proc = procs.python_service(f"spider-{port}", "spider.server", run_dir, full)
    await procs.start_grpc(proc, port)
    return Server(proc, port, full)


async def start_tumblebug(run_dir: Path, etcd: Server, spider: Server, **env: str) -> Server:
    port = procs.free_port()
    full = {
        "CB_TUMBLEBUG_PORT": str(port), "CB_TUMBLEBUG_HOST": "127.0.0.1", "CB_ETCD_ENDPOINTS": etcd.address,
        "CB_TUMBLEBUG_SPIDER_ADDR": spider.address, "CB_GRACE_SECONDS": "1", "CB_TUMBLEBUG_POLL_INTERVAL_S": "0.2",
        "CB_TUMBLEBUG_LEADER_TTL_S": "2", "CB_TUMBLEBUG_DRAGONFLY_ADDR": "",
        "CB_SECRET_KEY_FILE": str(run_dir / "secret.key"), **env,
    }
    proc = procs.python_service(f"tumblebug-{port}", "tumblebug.server", run_dir, full)
    await procs.start_grpc(proc, port)
    return Server(proc, port, full)


async def start_ladybug(run_dir: Path, etcd: Server, tumblebug: Server, dragonfly_addr: str, **env: str) -> Server:
    """Ladybug on a free port; `dragonfly_addr` is where its workloads go (a dragonfly server)."""
    port = procs.free_port()
    full = {
        "CB_LADYBUG_PORT": str(port), "CB_LADYBUG_HOST": "127.0.0.1", "CB_ETCD_ENDPOINTS": etcd.address,
        "CB_LADYBUG_TUMBLEBUG_ADDR": tumblebug.address, "CB_LADYBUG_DRAGONFLY_ADDR": dragonfly_addr,
        "CB_GRACE_SECONDS": "1", "CB_LADYBUG_LEADER_TTL_S": "2", "CB_LADYBUG_ACTIVE_RESYNC_S": "0.2",
        "CB_LADYBUG_RESYNC_S": "1", "CB_LADYBUG_DRAIN_S": "0.5", "CB_LADYBUG_REPLACE_AFTER_S": "2", **env,
    }
    proc = procs.python_service(f"ladybug-{port}", "ladybug.server", run_dir, full)
    await procs.start_grpc(proc, port)
    return Server(proc, port, full)


def spider_stub(channel: grpc.aio.Channel) -> spider_pb2_grpc.SpiderStub:
    return spider_pb2_grpc.SpiderStub(channel)


async def twin_regions(twin: Server) -> list[tuple[str, str]]:
    """(provider, region) pairs the twin offers."""
    async with channel(twin.address) as ch:
        reply = await tw_grpc.CloudTwinStub(ch).ListProviders(tw.ListProvidersRequest())
    return [(p.name, r) for p in reply.providers for r in p.regions]


@dataclass
class TwinConnection:
    name: str
    provider: str
    region: str
    access_key: str
    secret_key: str = ""


async def make_connection(stub: spider_pb2_grpc.SpiderStub, twin: Server, provider: str, region: str,
                          name: str = "", limits: pb.ConnectionLimits | None = None) -> TwinConnection:
    """A credential (a fresh CloudTwin account), a region and a connection, all new."""
    tag = uuid.uuid4().hex[:8]
    name = name or f"c-{tag}"
    access = f"acct-{tag}"
    await stub.CreateCredential(pb.CreateCredentialRequest(credential=pb.Credential(
        name=f"cred-{tag}", driver="mock", values={"access_key": access, "secret_key": f"s3cret-{tag}"})))
    await stub.CreateRegion(pb.CreateRegionRequest(region=pb.Region(
        name=f"reg-{tag}", driver="mock", region=region, settings={"endpoint": twin.address, "provider": provider})))
    await stub.CreateConnection(pb.CreateConnectionRequest(connection=pb.Connection(
        name=name, driver="mock", credential=f"cred-{tag}", region=f"reg-{tag}", limits=limits)))
    return TwinConnection(name, provider, region, access, f"s3cret-{tag}")
