"""A scratch suite for benchmarks: etcd, CloudTwin, spider (and moto, and tumblebug) on loopback."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import grpc

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as tw_grpc
from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services import processes as procs
from services.rpc.client import channel


class Stack:
    """etcd + CloudTwin + spider in a scratch directory; tumblebug too when `tumblebug_env` is given
    (its `CB_TUMBLEBUG_…` settings; the ports and addresses are filled in here), and with
    `api_replica` a second, API-only tumblebug (`CB_TUMBLEBUG_CONTROLLER=false`) beside it."""

    def __init__(self, root: Path, twin_env: dict[str, str], moto: bool = False,
                 tumblebug_env: dict[str, str] | None = None, api_replica: bool = False) -> None:
        self.root = root
        self.twin_env = twin_env
        self.with_moto = moto
        self.moto_port = 0
        self.tumblebug_env = tumblebug_env
        self.tumblebug_port = 0
        self.tumblebug: procs.Proc | None = None
        self.tumblebug_starts = 0
        self.tb_channel: grpc.aio.Channel | None = None
        self.api_replica = api_replica
        self.api_port = 0
        self.api_metrics_port = 0
        self.api_channel: grpc.aio.Channel | None = None
        self.procs: list[procs.Proc] = []

    async def __aenter__(self) -> Stack:
        self.etcd_port, self.twin_port, self.spider_port = procs.free_port(), procs.free_port(), procs.free_port()
        # Prometheus text (RPC counts by method) of spider and tumblebug; etcd serves its own on its client port.
        self.spider_metrics_port = procs.free_port()
        self.tumblebug_metrics_port = 0
        procs.own_authority(self.root / "tls")
        etcd = procs.etcd(self.root, self.etcd_port)
        self.procs.append(etcd)
        await procs.start_tcp(etcd, self.etcd_port)
        twin = procs.python_service("cloudtwin", "spider.cloudtwin.server", self.root,
                                    {"CB_CLOUDTWIN_PORT": str(self.twin_port), **self.twin_env})
        self.procs.append(twin)
        await procs.start_grpc(twin, self.twin_port)
        spider = procs.python_service("spider", "spider.server", self.root, {
            "CB_SPIDER_PORT": str(self.spider_port), "CB_ETCD_ENDPOINTS": f"127.0.0.1:{self.etcd_port}",
            "CB_SECRET_KEY_FILE": str(self.root / "secret.key"), "CB_LOG_LEVEL": "WARNING",
            "CB_SPIDER_CALL_LOG_FILE": str(self.root / "calls.jsonl"),
            "CB_SPIDER_METRICS_PORT": str(self.spider_metrics_port)})
        self.procs.append(spider)
        await procs.start_grpc(spider, self.spider_port)
        if self.with_moto:
            self.moto_port = procs.free_port()
            moto = procs.Proc("moto", [procs.binary("moto_server"), "-H", "127.0.0.1", "-p", str(self.moto_port)],
                              self.root / "moto.log", env={"MOTO_ENABLE_AMI_VALIDATION": "true"})
            self.procs.append(moto)
            await procs.start_tcp(moto, self.moto_port)
        if self.tumblebug_env is not None:
            self.tumblebug_port, self.tumblebug_metrics_port = procs.free_port(), procs.free_port()
            self.tumblebug = procs.python_service("tumblebug", "tumblebug.server", self.root, {
                "CB_TUMBLEBUG_PORT": str(self.tumblebug_port), "CB_TUMBLEBUG_HOST": "127.0.0.1",
                "CB_TUMBLEBUG_SPIDER_ADDR": f"127.0.0.1:{self.spider_port}",
                "CB_ETCD_ENDPOINTS": f"127.0.0.1:{self.etcd_port}", "CB_LOG_LEVEL": "WARNING",
                "CB_TUMBLEBUG_METRICS_PORT": str(self.tumblebug_metrics_port),
                # No dragonfly in this stack: VMs get no agent (a setting may turn it on).
                "CB_TUMBLEBUG_DRAGONFLY_ADDR": "", **self.tumblebug_env})
            self.procs.append(self.tumblebug)
            await procs.start_grpc(self.tumblebug, self.tumblebug_port)
            self.tumblebug_starts = 1
            # A whole 10,000-VM MCIS (GetMcis with vms) is a few MB.
            self.tb_channel = channel(f"127.0.0.1:{self.tumblebug_port}", options=[
                ("grpc.max_receive_message_length", 256 << 20)])
            self.tb = tumblebug_pb2_grpc.TumblebugStub(self.tb_channel)
            if self.api_replica:
                await self._start_api_replica()
        self.channel = channel(f"127.0.0.1:{self.spider_port}")
        self.stub = spider_pb2_grpc.SpiderStub(self.channel)
        return self

    async def _start_api_replica(self) -> None:
        """The API-only tumblebug: the leader's settings, its own ports, never a leader."""
        assert self.tumblebug is not None
        self.api_port, self.api_metrics_port = procs.free_port(), procs.free_port()
        api = procs.python_service("tumblebug-api", "tumblebug.server", self.root, {
            **self.tumblebug.env, "CB_TUMBLEBUG_PORT": str(self.api_port),
            "CB_TUMBLEBUG_METRICS_PORT": str(self.api_metrics_port), "CB_TUMBLEBUG_CONTROLLER": "false"})
        self.procs.append(api)
        await procs.start_grpc(api, self.api_port)
        self.api_channel = channel(f"127.0.0.1:{self.api_port}", options=[
            ("grpc.max_receive_message_length", 256 << 20)])
        self.tb_api = tumblebug_pb2_grpc.TumblebugStub(self.api_channel)

    async def restart_tumblebug(self) -> None:
        """Stop tumblebug (SIGTERM) and start it again on the same ports with the same settings."""
        assert self.tumblebug is not None
        old = self.tumblebug
        old.stop()
        self.tumblebug = procs.python_service("tumblebug", "tumblebug.server", self.root, dict(old.env))
        self.procs[self.procs.index(old)] = self.tumblebug
        await procs.start_grpc(self.tumblebug, self.tumblebug_port)
        self.tumblebug_starts += 1

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.close()
        for ch in (self.tb_channel, self.api_channel):
            if ch is not None:
                await ch.close()
        for p in reversed(self.procs):
            p.stop()

    async def connections(self, count: int, limits: pb.ConnectionLimits | None = None) -> list[tuple[str, str, str]]:
        """`count` connections on distinct twin regions: (name, image, spec)."""
        async with channel(f"127.0.0.1:{self.twin_port}") as ch:
            providers = (await tw_grpc.CloudTwinStub(ch).ListProviders(tw.ListProvidersRequest())).providers
        regions = [(p.name, r) for p in providers for r in p.regions][:count]
        if len(regions) < count:
            raise SystemExit(f"the twin has only {len(regions)} regions")
        out = []
        for i, (provider, region) in enumerate(regions):
            tag = f"b{i}-{uuid.uuid4().hex[:4]}"
            await self.stub.CreateCredential(pb.CreateCredentialRequest(credential=pb.Credential(
                name=tag, driver="mock", values={"access_key": tag, "secret_key": "bench"})))
            await self.stub.CreateRegion(pb.CreateRegionRequest(region=pb.Region(
                name=tag, driver="mock", region=region,
                settings={"endpoint": f"127.0.0.1:{self.twin_port}", "provider": provider})))
            await self.stub.CreateConnection(pb.CreateConnectionRequest(connection=pb.Connection(
                name=tag, driver="mock", credential=tag, region=tag, limits=limits)))
            spec = (await self.stub.ListSpecs(pb.ListSpecsRequest(connection=tag))).specs[0].name
            image = (await self.stub.ListImages(pb.ListImagesRequest(connection=tag))).images[0].name
            out.append((tag, image, spec))
        return out

    async def aws_connection(self, region: str = "us-east-1") -> tuple[str, str, str]:
        """A connection to moto: (name, image, spec)."""
        name = f"aws-{uuid.uuid4().hex[:4]}"
        await self.stub.CreateCredential(pb.CreateCredentialRequest(credential=pb.Credential(
            name=name, driver="aws", values={"access_key": "bench", "secret_key": "bench"})))
        await self.stub.CreateRegion(pb.CreateRegionRequest(region=pb.Region(
            name=name, driver="aws", region=region, settings={"endpoint": f"http://127.0.0.1:{self.moto_port}"})))
        await self.stub.CreateConnection(pb.CreateConnectionRequest(connection=pb.Connection(
            name=name, driver="aws", credential=name, region=name)))
        images = await self.stub.ListImages(pb.ListImagesRequest(connection=name, filter="ubuntu", page_size=1000))
        image = next(i.name for i in images.images if i.architecture == "x86_64")
        return name, image, "t3.micro"

    async def create_vms(self, conns: list[tuple[str, str, str]], total: int, concurrency: int) -> float:
        """Create `total` VMs spread over `conns`; returns the wall time."""
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            name, image, spec = conns[i % len(conns)]
            async with gate:
                await self.stub.CreateVm(pb.CreateVmRequest(connection=name, request_id=uuid.uuid4().hex, vm=pb.Vm(
                    iid=common.IID(name=f"vm-{i:05d}"), image=image, spec=spec)))

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(total)))
        return time.perf_counter() - t0
