"""Requests passed on to the VMs' agents or SSH (commands) and to dragonfly (metrics)."""

from __future__ import annotations

from cbapi.dragonfly.v1 import dragonfly_pb2 as dpb
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.store import Store
from tumblebug import keyspace
from tumblebug.mcis.reads import McisReads
from tumblebug.mcis.remote import RemoteCommands
from tumblebug.monitoring import Monitoring


class McisProxies:
    """McisCommand and McisMetrics."""

    def __init__(self, store: Store, reads: McisReads, remote: RemoteCommands, monitoring: Monitoring) -> None:
        self.store = store
        self.reads = reads
        self.remote = remote
        self.monitoring = monitoring

    async def command(self, req: pb.McisCommandRequest) -> pb.McisCommandResponse:
        """Run a command on every running VM in scope (through its agent, or over SSH); one result per VM."""
        if not req.command.strip():
            raise errors.InvalidArgument.field("command", "is required")
        if req.timeout_s < 0 or req.timeout_s > 3600:
            raise errors.InvalidArgument.field("timeout_s", "must be within 0..3600 seconds")
        mcis = await self.reads.get(req.namespace, req.name)
        vms = [v.value for v in await self.store.list_all(keyspace.vms(req.namespace, req.name), pb.McisVm)
               if not v.value.removing and (not req.subgroup or v.value.subgroup == req.subgroup)
               and (not req.vm or v.value.name == req.vm)]
        if not vms:
            raise errors.NotFound(f"no VM of MCIS {req.name!r} matches subgroup={req.subgroup!r} vm={req.vm!r}")
        vms.sort(key=lambda v: (v.subgroup, v.index))
        results = await self.remote.run(req.namespace, mcis, vms, req.command, req.timeout_s or 60.0)
        return pb.McisCommandResponse(results=results)

    async def metrics(self, req: pb.McisMetricsRequest) -> dpb.QueryMetricsResponse:
        await self.reads.get(req.namespace, req.name)
        if not req.group:
            raise errors.InvalidArgument.field("group", "is required: cpu, cpufreq, memory, disk, diskio or network")
        got = await self.monitoring.metrics(dpb.QueryMcisMetricsRequest(
            ns=req.namespace, mcis=req.name, group=req.group, period=req.period or "m",
            aggregate=req.aggregate or "avg", duration=req.duration or "10m"))
        # Dragonfly names a VM `{ns}.{mcis}.{vm}`; here it is the VM of this MCIS, named as in ListMcisVms.
        prefix = f"{req.namespace}.{req.name}."
        for series in got.series:
            series.vm = series.vm.removeprefix(prefix)
        return got

