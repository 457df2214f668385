"""Between records (protobuf) and the decisions' plain values."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from cbapi.common.v1 import common_pb2 as cpb
from cbapi.dragonfly.v1 import workloads_pb2 as wpb
from cbapi.ladybug.v1 import ladybug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2 as tpb
from ladybug.decisions.model import Observed, Strategy, Vm, Want

# An agent that is merely unknown (dragonfly briefly away) keeps its VM usable: moving every
# instance because monitoring blinked would do more harm than waiting.
UNUSABLE_AGENT = ("Unhealthy", "Pending")
# VM statuses that mean the VM stopped serving (as opposed to Creating).
BROKEN = (cpb.SUSPENDING, cpb.SUSPENDED, cpb.TERMINATING, cpb.TERMINATED, cpb.FAILED, cpb.NOT_EXIST)


def seconds(ts: Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9


def stamp(value: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(value * 1e9))
    return ts


def vms_of(mcis: tpb.Mcis, subgroups: list[str]) -> list[Vm]:
    out = []
    for vm in mcis.vms:
        if subgroups and vm.subgroup not in subgroups:
            continue
        ip = vm.public_ip or vm.private_ip
        usable = (vm.status == cpb.RUNNING and not vm.removing and bool(ip)
                  and vm.agent_status not in UNUSABLE_AGENT)
        failed = not vm.removing and (vm.agent_status == "Unhealthy" or vm.status in BROKEN)
        out.append(Vm(vm.name, vm.subgroup, vm.connection, vm.provider, vm.region, ip, usable, failed))
    return out


def want_of(inst: pb.Instance) -> Want:
    return Want(inst.id, inst.revision, inst.slot, inst.vm, inst.port, inst.canary,
                seconds(inst.placed_time), seconds(inst.drain_time) if inst.draining else None)


def instance_of(w: Want, vms: dict[str, Vm], before: pb.Instance | None) -> pb.Instance:
    inst = pb.Instance(id=w.id, revision=w.revision, slot=w.slot, vm=w.vm, port=w.port, canary=w.canary,
                       draining=w.draining, placed_time=stamp(w.placed_at))
    if w.drain_at is not None:
        inst.drain_time.CopyFrom(stamp(w.drain_at))
    vm = vms.get(w.vm)
    if vm is not None:
        inst.subgroup, inst.connection, inst.provider, inst.region, inst.ip = (
            vm.subgroup, vm.connection, vm.provider, vm.region, vm.ip)
    elif before is not None and before.vm == w.vm:
        inst.subgroup, inst.connection, inst.provider, inst.region, inst.ip = (
            before.subgroup, before.connection, before.provider, before.region, before.ip)
    return inst


def observed_of(status: wpb.WorkloadStatus) -> Observed:
    since = seconds(status.healthy_time) if status.healthy and status.HasField("healthy_time") else None
    return Observed(status.state, status.healthy, since, status.restarts, status.message)


def strategy_of(up: pb.UpdateStrategy) -> Strategy:
    kind = pb.StrategyType.Name(up.type) if up.type else "ALL_AT_ONCE"
    return Strategy(
        type=kind,
        max_parallel=up.max_parallel or 1,
        min_healthy_time=up.min_healthy_time_s if up.min_healthy_time_s else 5.0,
        healthy_deadline=up.healthy_deadline_s or 10.0,
        progress_deadline=up.progress_deadline_s or 300.0,
        canaries=up.canaries,
        auto_promote=up.auto_promote,
        auto_revert=up.auto_revert if up.HasField("auto_revert") else True,
    )


def workload_of(app: pb.Application, spec: pb.AppSpec, inst: pb.Instance) -> wpb.Workload:
    """What the agent runs for one instance: the spec of its revision, shifted to its port."""
    base = spec.ports[0].port if spec.ports else 0
    offset = inst.port - base if base else 0
    ports = [p.port + offset for p in spec.ports] or ([inst.port] if inst.port else [])
    health = wpb.WorkloadHealthCheck()
    health.CopyFrom(spec.health_check)
    if health.port:
        health.port += offset
    # PORT, HOST, CB_APP, CB_REVISION and CB_INSTANCE are the agent's to set.
    return wpb.Workload(id=inst.id, app=app.name, revision=inst.revision, command=spec.artifact.command,
                        env=dict(spec.env), files=dict(spec.artifact.files), ports=ports,
                        health=health if health.WhichOneof("probe") else None, restart=spec.restart)
