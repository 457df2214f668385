"""The spider scenario: one script of requests that must run unchanged on every driver.

VPC with a subnet, security group, key pair, two VMs, suspend, resume, reboot,
a disk attached and detached, then everything terminated and deleted.
Returns timings: wall time, time inside spider RPCs, time spent in cloud calls
(from spider's call log), and time waiting for the cloud to change state.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from cbapi.spider.v1 import spider_pb2_grpc


@dataclass
class Timings:
    wall_s: float = 0.0
    rpc_s: float = 0.0
    waiting_s: float = 0.0
    cloud_s: float = 0.0
    rpcs: int = 0
    cloud_calls: int = 0
    steps: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        spider_own = max(self.rpc_s - self.cloud_s, 0.0)
        return {"wall_s": round(self.wall_s, 3), "in_spider_rpcs_s": round(self.rpc_s, 3),
                "in_cloud_calls_s": round(self.cloud_s, 3), "waiting_for_cloud_state_s": round(self.waiting_s, 3),
                "spider_own_s": round(spider_own, 3),
                "spider_own_share_of_rpc_time": round(spider_own / self.rpc_s, 3) if self.rpc_s else 0.0,
                "rpcs": self.rpcs, "cloud_calls": self.cloud_calls,
                "steps_s": {k: round(v, 3) for k, v in self.steps.items()}}


class Scenario:
    def __init__(self, stub: spider_pb2_grpc.SpiderStub, connection: str, image: str, spec: str) -> None:
        self.stub = stub
        self.c = connection
        self.image = image
        self.spec = spec
        self.t = Timings()
        self.tag = uuid.uuid4().hex[:6]

    async def rpc(self, call: Callable[[Any], Awaitable[Any]], request: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await call(request)
        finally:
            self.t.rpc_s += time.perf_counter() - t0
            self.t.rpcs += 1

    async def until(self, what: str, check: Callable[[], Awaitable[bool]], timeout: float = 120.0) -> None:
        """Poll until the cloud reaches a state; the polling RPCs count as RPC time, the gaps as waiting."""
        deadline = time.monotonic() + timeout
        while not await check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not happen within {timeout:.0f}s")
            t0 = time.perf_counter()
            await asyncio.sleep(0.1)
            self.t.waiting_s += time.perf_counter() - t0

    async def vm_is(self, name: str, status: common.VmStatus) -> bool:
        got = await self.rpc(self.stub.GetVmStatus, pb.GetResourceRequest(connection=self.c, name=name))
        return bool(got.status == status)

    async def all_vms(self, names: list[str], status: common.VmStatus) -> None:
        async def check() -> bool:
            return all(await asyncio.gather(*(self.vm_is(n, status) for n in names)))

        await self.until(f"VMs {common.VmStatus.Name(status)}", check)

    async def delete_when_free(self, call: Callable[[Any], Awaitable[Any]], request: Any) -> None:
        """Delete; while the cloud still holds a dependency (a VM terminating), wait and retry."""
        async def check() -> bool:
            try:
                await self.rpc(call, request)
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.FAILED_PRECONDITION:
                    raise
                return False
            return True

        await self.until("delete", check)

    async def step(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        t0 = time.perf_counter()
        await body()
        self.t.steps[name] = time.perf_counter() - t0

    async def run(self) -> Timings:
        since = Timestamp()
        since.GetCurrentTime()
        start = time.perf_counter()
        c, stub, tag = self.c, self.stub, self.tag
        vpc, sg, kp, disk = f"vpc-{tag}", f"sg-{tag}", f"kp-{tag}", f"disk-{tag}"
        vms = [f"vm-{tag}-1", f"vm-{tag}-2"]

        async def network() -> None:
            await self.rpc(stub.CreateVpc, pb.CreateVpcRequest(connection=c, request_id=uuid.uuid4().hex, vpc=pb.Vpc(
                iid=common.IID(name=vpc), ipv4_cidr="10.20.0.0/16",
                subnets=[pb.Subnet(iid=common.IID(name="main"), ipv4_cidr="10.20.1.0/24")])))
            rule = pb.SecurityRule(direction="inbound", protocol="tcp", from_port=22, to_port=22, cidr="0.0.0.0/0")
            await self.rpc(stub.CreateSecurityGroup, pb.CreateSecurityGroupRequest(
                connection=c, security_group=pb.SecurityGroup(iid=common.IID(name=sg), vpc=vpc, rules=[rule])))
            await self.rpc(stub.CreateKeyPair, pb.CreateKeyPairRequest(connection=c, key_pair=pb.KeyPair(
                iid=common.IID(name=kp))))

        async def start_vms() -> None:
            await asyncio.gather(*(self.rpc(stub.CreateVm, pb.CreateVmRequest(
                connection=c, request_id=uuid.uuid4().hex, vm=pb.Vm(
                    iid=common.IID(name=n), image=self.image, spec=self.spec, vpc=vpc, subnet="main",
                    security_groups=[sg], key_pair=kp))) for n in vms))
            await self.all_vms(vms, common.RUNNING)

        async def verbs() -> None:
            for verb, after in ((stub.SuspendVm, common.SUSPENDED), (stub.ResumeVm, common.RUNNING),
                                (stub.RebootVm, common.RUNNING)):
                await asyncio.gather(*(self.rpc(verb, pb.VmActionRequest(connection=c, name=n)) for n in vms))
                await self.all_vms(vms, after)

        async def a_disk() -> None:
            await self.rpc(stub.CreateDisk, pb.CreateDiskRequest(connection=c, disk=pb.Disk(
                iid=common.IID(name=disk), size_gib=8)))

            async def available() -> bool:
                got = await self.rpc(stub.GetDisk, pb.GetResourceRequest(connection=c, name=disk))
                return bool(got.status == "available")

            await self.until("disk available", available)
            await self.rpc(stub.AttachDisk, pb.AttachDiskRequest(connection=c, name=disk, vm=vms[0]))
            await self.rpc(stub.DetachDisk, pb.DetachDiskRequest(connection=c, name=disk))
            await self.until("disk available", available)

        async def teardown() -> None:
            await asyncio.gather(*(self.rpc(stub.DeleteVm, pb.DeleteResourceRequest(connection=c, name=n))
                                   for n in vms))
            await self.delete_when_free(stub.DeleteDisk, pb.DeleteResourceRequest(connection=c, name=disk))
            await self.delete_when_free(stub.DeleteKeyPair, pb.DeleteResourceRequest(connection=c, name=kp))
            await self.delete_when_free(stub.DeleteSecurityGroup, pb.DeleteResourceRequest(connection=c, name=sg))
            await self.delete_when_free(stub.DeleteVpc, pb.DeleteResourceRequest(connection=c, name=vpc))

        for name, body in (("network", network), ("start_vms", start_vms), ("suspend_resume_reboot", verbs),
                           ("disk", a_disk), ("teardown", teardown)):
            await self.step(name, body)
        self.t.wall_s = time.perf_counter() - start
        log = await stub.ListCallLog(pb.ListCallLogRequest(connection=c, since=since, page_size=1000))
        self.t.cloud_s = sum(e.elapsed_seconds for e in log.entries)
        self.t.cloud_calls = len(log.entries)
        return self.t
