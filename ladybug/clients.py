"""Ladybug's calls to tumblebug (the MCIS and its VMs) and dragonfly (workloads, metrics)."""

from __future__ import annotations

from cbapi.dragonfly.v1 import dragonfly_pb2 as dpb
from cbapi.dragonfly.v1 import dragonfly_pb2_grpc
from cbapi.dragonfly.v1 import workloads_pb2 as wpb
from cbapi.tumblebug.v1 import tumblebug_pb2 as tpb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services.rpc.client import call, channel


class Tumblebug:
    """The MCIS an application runs on."""

    def __init__(self, address: str, timeout: float) -> None:
        self._channel = channel(address)
        self.stub = tumblebug_pb2_grpc.TumblebugStub(self._channel)
        self.timeout = timeout

    async def mcis(self, ns: str, name: str) -> tpb.Mcis:
        """The MCIS with its VMs (NotFound when it is not there)."""
        return await call(self.stub.GetMcis, tpb.GetMcisRequest(namespace=ns, name=name, vms=True),
                          self.timeout, "tumblebug")

    async def scale(self, ns: str, mcis: str, subgroup: str, size: int) -> tpb.Mcis:
        return await call(self.stub.ScaleSubgroup, tpb.ScaleSubgroupRequest(
            namespace=ns, mcis=mcis, subgroup=subgroup, size=size), self.timeout, "tumblebug")

    async def close(self) -> None:
        await self._channel.close()


class Dragonfly:
    """Workloads on the VMs' agents, and metrics."""

    def __init__(self, address: str, timeout: float) -> None:
        self._channel = channel(address)
        self.stub = dragonfly_pb2_grpc.DragonflyStub(self._channel)
        self.timeout = timeout

    async def set_workloads(self, ns: str, mcis: str, vm: str, app: str,
                            workloads: list[wpb.Workload]) -> wpb.SetWorkloadsResponse:
        return await call(self.stub.SetWorkloads, wpb.SetWorkloadsRequest(
            ns=ns, mcis=mcis, vm=vm, app=app, workloads=workloads), self.timeout, "dragonfly")

    async def list_workloads(self, ns: str, mcis: str, app: str) -> wpb.ListWorkloadsResponse:
        return await call(self.stub.ListWorkloads, wpb.ListWorkloadsRequest(ns=ns, mcis=mcis, app=app),
                          self.timeout, "dragonfly")

    async def logs(self, ns: str, mcis: str, vm: str, workload: str, tail: int) -> wpb.WorkloadLogs:
        return await call(self.stub.ReadWorkloadLogs, wpb.ReadWorkloadLogsRequest(
            ns=ns, mcis=mcis, vm=vm, id=workload, tail_lines=tail), self.timeout, "dragonfly")

    async def mcis_average(self, ns: str, mcis: str, group: str, field: str, window_s: float,
                           vms: set[str]) -> float | None:
        """The average of `group`/`field` over the last `window_s` across `vms` (None: no data)."""
        reply = await call(self.stub.QueryMcisMetrics, dpb.QueryMcisMetricsRequest(
            ns=ns, mcis=mcis, group=group, aggregate="avg", duration=f"{max(int(window_s), 1)}s"),
            self.timeout, "dragonfly")
        values = [p.values[field] for s in reply.series if not vms or s.vm in vms
                  for p in s.points if field in p.values]
        return sum(values) / len(values) if values else None

    async def close(self) -> None:
        await self._channel.close()
