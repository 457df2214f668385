"""The application controller: on the shared controller runtime, in the elected leader only.

Each sync of one application reads the world (its record, the MCIS's VMs from tumblebug, its
workloads' statuses from dragonfly, the endpoint's counters), asks the pure decisions for the next
step, writes the wanted instances (intent first), then acts: each VM's whole set of this app's
workloads to dragonfly, the backends to the endpoint, tumblebug for room, and the status and
events to the record. Everything it needs to resume is in etcd, so a SIGKILL at any point loses
nothing: the next leader reads the same wanted set and the same deterministic instance IDs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from google.protobuf.message import Message

from cbapi.dragonfly.v1 import workloads_pb2 as wpb
from cbapi.ladybug.v1 import ladybug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2 as tpb
from ladybug import convert, keyspace
from ladybug.balancer import Balancers
from ladybug.clients import Dragonfly, Tumblebug
from ladybug.decisions import analysis, rollout, scaling
from ladybug.decisions.model import Event, Observed, Verdict, Vm, Want
from ladybug.endpoint import RuntimeApiError
from ladybug.records import Records, now_ts
from ladybug.settings import LadybugSettings
from services import errors
from services.controller import Controller
from services.store import Election, Informer

log = logging.getLogger("ladybug.controller")

Key = tuple[str, str]


def _decode(key: str, raw: bytes) -> Message | None:
    return pb.Application.FromString(raw) if keyspace.app_of(key) else None


class AppController:
    """Drives every application toward its spec (see the module's docstring)."""

    def __init__(self, records: Records, tumblebug: Tumblebug, dragonfly: Dragonfly,
                 endpoints: Balancers | None, settings: LadybugSettings,
                 clock: Callable[[], float] = time.time) -> None:
        self.records = records
        self.tumblebug = tumblebug
        self.dragonfly = dragonfly
        # None: applications run without a load-balanced endpoint (HAProxy is not installed).
        self.endpoints = endpoints
        self.settings = settings
        self.clock = clock
        self.controller: Controller[Key] = Controller("ladybug", self.sync, keyspace.app_of, workers=settings.workers,
                                                      quiet=(errors.Aborted,))
        self._informer: Informer | None = None
        # What each VM was last told, so a steady app does not resend its set every sync;
        # empty after a restart, so a new leader tells every VM once.
        self._sent: dict[tuple[str, str, str], bytes] = {}
        self._baselines: dict[tuple[str, str, int], tuple[float, analysis.Traffic]] = {}
        self._specs: dict[tuple[str, str, int], pb.AppSpec] = {}
        # (namespace, MCIS) → VM → when it was first seen failed (a new leader starts the wait afresh).
        self._failed_since: dict[tuple[str, str], dict[str, float]] = {}

    # ------------------------------------------------------------------ running

    def _sources(self) -> list[Informer]:
        self._sent.clear()
        self._informer = Informer(self.records.store, keyspace.APPS, _decode, self.controller.notify)
        return [self._informer]

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_s)
            if self._informer is not None:
                for key in list(self._informer.cache):
                    self.controller.notify(key)

    async def run(self, election: Election) -> None:
        alongside: list[Callable[[], Coroutine[Any, Any, None]]] = [self._resync]
        await self.controller.run_as_leader(election, self._sources, alongside)

    async def close(self) -> None:
        # The endpoints keep serving: the next leader adopts them.
        if self.endpoints is not None:
            self.endpoints.forget()

    # --------------------------------------------------------------------- sync

    async def sync(self, key: Key) -> None:
        """One level-triggered pass over an application. A failure the user can act on (tumblebug
        or dragonfly unreachable, a refused call) is written to its status message while the pass
        is retried with backoff; the next pass that succeeds clears it."""
        found = await self.records.find(*key)
        if found is None:
            return
        app = found.value
        try:
            await self._sync(key, app)
        except errors.Aborted:
            raise  # a concurrent write: the retry reads afresh, nothing to tell
        except errors.DomainError as err:
            with contextlib.suppress(errors.DomainError):
                await self._note(app, f"cannot sync (will retry): {err.message}", None)
            raise

    async def _sync(self, key: Key, app: pb.Application) -> None:
        ns, name = key
        if app.deleting:
            await self._undeploy(app)
            return
        if await self.records.revision(ns, name, app.revision) is None:
            # The app record was written and the process died before its revision: write it now.
            await self.records.put_revision(ns, name, app.revision, app.spec)
        try:
            mcis = await self.tumblebug.mcis(ns, app.mcis)
        except errors.NotFound:
            # Its VMs went with it: nothing runs, whatever was last counted.
            await self._note(app, f"MCIS {app.mcis!r} is not there", pb.DEGRADED,
                             pb.InstanceCounts(desired=app.status.counts.desired))
            self.controller.enqueue_after(key, self.settings.resync_s)
            return
        vms = convert.vms_of(mcis, list(app.spec.subgroups))
        try:
            reported = await self.dragonfly.list_workloads(ns, app.mcis, name)
        except errors.DomainError as err:
            raise type(err)(f"cannot read the instances' statuses from dragonfly: {err.message}") from err
        observed = {s.id: convert.observed_of(s) for v in reported.vms for s in v.statuses}
        held = await self.records.instances(ns, name)
        before = {i.id: i for i in held.value.instances} if held else {}
        now = self.clock()
        count = await self._count(app, vms, now)
        in_flight = await self._in_flight(app, before.values())
        situation = await self._situation(app, vms, [convert.want_of(i) for i in before.values()],
                                          observed, count, now, in_flight)
        step = rollout.step(situation)
        by_vm = {vm.name: vm for vm in vms}
        wanted = pb.InstanceSet(instances=[convert.instance_of(w, by_vm, before.get(w.id)) for w in step.wanted])
        if held is None or wanted != held.value:
            await self.records.put_instances(ns, name, wanted, held.mod_revision if held else None)
        await self._tell_agents(app, before, wanted, reported)
        endpoint = await self._endpoint(app, wanted)
        events = [self._event(app, e) for e in step.events]
        grow = await self._grow(app, mcis, vms, step, now, events)
        await self._record(app, step, count, endpoint, grow, now, events)
        await self.records.add_events(ns, name, events)
        if step.busy or step.failed:
            self.controller.enqueue_after(key, self.settings.active_resync_s)

    async def _count(self, app: pb.Application, vms: list[Vm], now: float) -> int:
        count = scaling.desired_count(app.spec.instances, sum(vm.usable for vm in vms))
        rule = app.spec.scaling
        if not app.spec.HasField("scaling"):
            return count
        metric = None
        if rule.group and rule.field:
            with contextlib.suppress(errors.DomainError):
                metric = await self.dragonfly.mcis_average(app.namespace, app.mcis, rule.group, rule.field,
                                                           rule.window_s or 300.0, {vm.name for vm in vms})
        scale_rule = scaling.ScaleRule(rule.min_instances, rule.max_instances, bool(rule.group), rule.scale_out_above,
                                       rule.scale_in_below, rule.cooldown_s or 60.0)
        last = convert.seconds(app.status.last_scale_time)
        target, why = scaling.verdict(scale_rule, count, metric, now, last)
        if target != count:
            await self._scaled(app, target, why)
            return target
        return count

    async def _scaled(self, app: pb.Application, target: int, why: str) -> None:
        before = app.spec.instances

        def change(cur: pb.Application) -> pb.Application:
            cur.spec.instances = target
            cur.status.last_scale_time.CopyFrom(now_ts())
            return cur

        await self.records.modify(app.namespace, app.name, change)
        app.spec.instances = target
        kind = "ScaleOut" if target > before else "ScaleIn"
        await self.records.add_events(app.namespace, app.name, [pb.AppEvent(
            type=kind, reason="ScalingRule", message=f"{before} → {target} instances: {why}", revision=app.revision)])

    async def _situation(self, app: pb.Application, vms: list[Vm], wanted: list[Want],
                         observed: dict[str, Observed], count: int, now: float,
                         in_flight: frozenset[str]) -> rollout.Situation:
        st = convert.strategy_of(app.spec.update)
        ro = app.status.rollout
        start = convert.seconds(ro.start_time) if ro.to_revision == app.revision and ro.HasField("start_time") else now
        stable = app.status.stable_revision
        hold = app.status.failed_revision == app.revision
        situation = rollout.Situation(
            app=app.name, revision=app.revision, stable=stable, count=count, strategy=st,
            max_per_vm=app.spec.max_per_vm or 1, base_port=app.spec.ports[0].port if app.spec.ports else 0,
            vms=vms, wanted=wanted, observed=observed, now=now, rollout_start=start, promoted=ro.promoted,
            drain_s=self.settings.drain_s, hold=hold, in_flight=in_flight)
        rule = app.spec.update.analysis
        if st.type == "CANARY" and rule.metric and not ro.promoted and rollout.canaries_ready(situation):
            verdict, note = await self._analyse(app, wanted, now)
            situation = rollout.Situation(**{**situation.__dict__, "analysis": verdict, "analysis_note": note})
        return situation

    async def _analyse(self, app: pb.Application, wanted: list[Want], now: float) -> tuple[Verdict, str]:
        endpoint = self.endpoints.get(app.namespace, app.name) if self.endpoints is not None else None
        if endpoint is None:
            return Verdict.WAIT, "waiting for the endpoint's counters"
        total = await endpoint.traffic({w.id for w in wanted if w.revision == app.revision and not w.draining})
        key = (app.namespace, app.name, app.revision)
        if key not in self._baselines:
            # Held in memory: a new leader starts the window over (it cannot know the old counters).
            self._baselines[key] = (now, total)
        t0, base = self._baselines[key]
        r = app.spec.update.analysis
        rule = analysis.Rule(r.metric, r.threshold, r.window_s or 30.0, r.min_requests or 20)
        return analysis.judge(rule, base, total, now - t0)

    # ------------------------------------------------------------------ actions

    async def _spec(self, app: pb.Application, revision: int) -> pb.AppSpec:
        if revision == app.revision:
            return app.spec
        key = (app.namespace, app.name, revision)
        if key not in self._specs:
            rev = await self.records.revision(app.namespace, app.name, revision)
            self._specs[key] = rev.spec if rev is not None else app.spec
        return self._specs[key]

    async def _tell_agents(self, app: pb.Application, before: dict[str, pb.Instance], wanted: pb.InstanceSet,
                           reported: wpb.ListWorkloadsResponse) -> None:
        """Each VM that holds or held an instance gets this app's whole set on it (draining ones
        included: they are stopped only when they leave the set)."""
        ns, name = app.namespace, app.name
        on_vm: dict[str, list[pb.Instance]] = {}
        for inst in wanted.instances:
            on_vm.setdefault(inst.vm, []).append(inst)
        running = {v.vm: {s.id for s in v.statuses} for v in reported.vms}
        for vm in set(on_vm) | {i.vm for i in before.values()} | {v for v, ids in running.items() if ids}:
            workloads = [convert.workload_of(app, await self._spec(app, i.revision), i)
                         for i in sorted(on_vm.get(vm, []), key=lambda i: i.id)]
            body = wpb.SetWorkloadsRequest(workloads=workloads).SerializeToString(deterministic=True)
            sent_key = (ns, name, vm)
            in_sync = running.get(vm, set()) == {w.id for w in workloads}
            if self._sent.get(sent_key) == body and in_sync:
                continue
            try:
                await self.dragonfly.set_workloads(ns, app.mcis, vm, name, workloads)
            except errors.DomainError as err:
                # One VM that cannot be told (gone, or its agent away) must not hold the others
                # nor the rest of the sync: it is told again on the next sync (not marked sent).
                # An agent that comes back restarts its persisted set; the difference from the
                # wanted set shows in its report and the set is resent then.
                if workloads or not isinstance(err, errors.NotFound | errors.FailedPrecondition | errors.Unavailable):
                    log.warning("cannot tell VM %s its workloads of %s/%s: %s", vm, ns, name, err.message)
                continue
            self._sent[sent_key] = body

    async def _in_flight(self, app: pb.Application, instances: Iterable[pb.Instance]) -> frozenset[str]:
        """Draining instances that still have requests in flight at the endpoint (not stopped yet)."""
        endpoint = self.endpoints.get(app.namespace, app.name) if self.endpoints is not None else None
        draining = [i.id for i in instances if i.draining]
        if endpoint is None or not draining:
            return frozenset()
        try:
            return frozenset(await endpoint.busy(draining))
        except (OSError, RuntimeApiError):
            return frozenset()

    async def _endpoint(self, app: pb.Application, wanted: pb.InstanceSet) -> str:
        """The app's endpoint balancing over exactly the wanted instances (draining ones drained)."""
        if self.endpoints is None:
            return ""
        endpoint = await self.endpoints.ensure(app, await self._endpoint_port(app))
        await endpoint.serve(wanted.instances)
        return endpoint.address

    async def _endpoint_port(self, app: pb.Application) -> int:
        """A port of its own for the app's endpoint, claimed in etcd (kept across restarts)."""
        if app.status.endpoint:
            return int(app.status.endpoint.rsplit(":", 1)[1])
        marker = pb.Application(namespace=app.namespace, name=app.name)
        for port in range(self.settings.endpoint_port_base, self.settings.endpoint_port_base + 10_000):
            held = await self.records.store.get(keyspace.endpoint_port(port), pb.Application)
            if held is not None:
                if (held.value.namespace, held.value.name) == (app.namespace, app.name):
                    return port
                continue
            with contextlib.suppress(errors.AlreadyExists):
                await self.records.store.create(keyspace.endpoint_port(port), marker)
                return port
        raise errors.ResourceExhausted("no endpoint port left for the application")

    async def _grow(self, app: pb.Application, mcis: tpb.Mcis, vms: list[Vm], step: rollout.Step, now: float,
                    events: list[pb.AppEvent]) -> bool:
        """Ask tumblebug for room: one replacement per failed VM (once, marked in etcd before the
        call so a restart does not ask twice), and the rule's VM group (or a failed VM's) when
        instances found no VM with room, at most once per cooldown."""
        sizes = {sg.name: sg.size for sg in mcis.subgroups}
        since = self._failed_since.setdefault((app.namespace, app.mcis), {})
        failed = scaling.lasting_failures(vms, since, now, self.settings.replace_after_s)
        fresh: dict[str, str] = {}
        for vm, subgroup in failed.items():
            marker = pb.AppEvent(type="GrowMcis", reason="ReplaceVm", message=f"replacing {vm} for {app.name}")
            with contextlib.suppress(errors.AlreadyExists):
                await self.records.store.create(keyspace.replaced(app.namespace, app.mcis, vm), marker)
                fresh[vm] = subgroup
        for group, target in scaling.replacements(fresh, sizes).items():
            gone = sorted(vm for vm, sg in fresh.items() if sg == group)
            await self._scale(app, group, target, "ReplaceVm",
                              f"asked tumblebug for a replacement of {', '.join(gone)}: VM group {group} "
                              f"to {target} VMs", events)
        rule = app.spec.scaling
        subgroup = rule.grow_subgroup or next(iter(failed.values()), "")
        # On their way: being made or booting, or failed too briefly to be given up (may come back).
        coming = sum(1 for vm in vms if not vm.usable and vm.name not in failed) + max(0, sum(sizes.values()) - len(vms))
        size = scaling.grow(step.no_room, subgroup, sizes.get(subgroup, 0), now,
                            convert.seconds(app.status.last_grow_time), rule.cooldown_s or 60.0, coming)
        if size is None or subgroup not in sizes:
            return False
        await self._scale(app, subgroup, size, "NoRoom", f"asked tumblebug to grow VM group {subgroup} to {size} "
                          f"VMs ({step.no_room} instances found no VM with room)", events)
        return True

    async def _scale(self, app: pb.Application, subgroup: str, size: int, reason: str, message: str,
                     events: list[pb.AppEvent]) -> None:
        try:
            await self.tumblebug.scale(app.namespace, app.mcis, subgroup, size)
        except errors.DomainError as err:
            events.append(pb.AppEvent(type="GrowMcis", reason="Refused", revision=app.revision,
                                      message=f"tumblebug refused to grow {subgroup} to {size}: {err.message}"))
            return
        events.append(pb.AppEvent(type="GrowMcis", reason=reason, revision=app.revision, message=message))

    async def _record(self, app: pb.Application, step: rollout.Step, count: int, endpoint: str, grew: bool,
                      now: float, events: list[pb.AppEvent]) -> None:
        """The status, and the rollout's end: stable, or failed (reverted when auto_revert)."""
        ns, name = app.namespace, app.name
        st = convert.strategy_of(app.spec.update)
        revert_to: pb.Revision | None = None
        if step.failed and app.status.failed_revision != app.revision:
            events.append(pb.AppEvent(type="Failed", reason="RolloutFailed", message=step.failed,
                                      revision=app.revision))
            await self.records.mark_revision(ns, name, app.revision, "failed")
            stable = app.status.stable_revision
            if st.auto_revert and stable and stable != app.revision:
                revert_to = await self.records.revision(ns, name, stable)
        if step.complete and app.status.stable_revision != app.revision:
            await self.records.mark_revision(ns, name, app.revision, "stable")
            events.append(pb.AppEvent(type="Available", reason="RolloutComplete", revision=app.revision,
                                      message=step.note))
        if revert_to is not None:
            events.append(pb.AppEvent(type="Rollback", reason="AutoRevert", revision=revert_to.revision,
                                      message=f"back to revision {revert_to.revision}: {step.failed}"))

        def change(cur: pb.Application) -> pb.Application | None:
            if cur.revision != app.revision or cur.deleting:
                return None  # changed meanwhile: the next sync decides again
            s = cur.status
            old = pb.AppStatus()
            old.CopyFrom(s)
            if s.rollout.to_revision != cur.revision:
                s.rollout.CopyFrom(pb.RolloutStatus(
                    from_revision=s.stable_revision, to_revision=cur.revision, type=cur.spec.update.type,
                    start_time=convert.stamp(now), deadline_time=convert.stamp(now + st.progress_deadline)))
            if step.promote:
                s.rollout.promoted = True
            s.rollout.step = step.note
            s.phase = getattr(pb, step.phase)
            s.message = step.failed or ""
            s.counts.CopyFrom(pb.InstanceCounts(desired=count, running=step.running, healthy=step.healthy,
                                                updated=step.updated, failed=step.given_up))
            s.endpoint = endpoint
            if grew:
                s.last_grow_time.CopyFrom(convert.stamp(now))
            if step.complete:
                s.stable_revision = cur.revision
            if step.failed:
                s.failed_revision = cur.revision
                if revert_to is not None:
                    cur.spec.CopyFrom(revert_to.spec)
                    cur.spec.instances = app.spec.instances
                    cur.revision = revert_to.revision
                    s.rollout.CopyFrom(pb.RolloutStatus(from_revision=app.revision, to_revision=cur.revision,
                                                        type=cur.spec.update.type, start_time=convert.stamp(now),
                                                        step=f"rolling back: {step.failed}"))
                    cur.generation += 1
            elif s.failed_revision > cur.revision and s.phase == pb.AVAILABLE:
                # Only while back on an older revision: a later revision that became available
                # has put the failure behind it.
                s.phase = pb.ROLLOUT_FAILED  # back on the stable revision; the failure stays visible
                s.message = f"revision {s.failed_revision} failed and was rolled back"
            cur.observed_generation = cur.generation
            if s == old and cur.observed_generation == app.observed_generation:
                return None
            return cur

        await self.records.modify(ns, name, change)

    async def _note(self, app: pb.Application, message: str, phase: pb.AppPhase | None,
                    counts: pb.InstanceCounts | None = None) -> None:
        def change(cur: pb.Application) -> pb.Application | None:
            if (cur.status.message == message and (phase is None or cur.status.phase == phase)
                    and (counts is None or cur.status.counts == counts)):
                return None
            cur.status.message = message
            if phase is not None:
                cur.status.phase = phase
            if counts is not None:
                cur.status.counts.CopyFrom(counts)
            return cur

        await self.records.modify(app.namespace, app.name, change)

    async def _undeploy(self, app: pb.Application) -> None:
        """Stop every instance (drained first at the endpoint), drop the endpoint, forget the app."""
        ns, name = app.namespace, app.name
        held = await self.records.instances(ns, name)
        key = (ns, name)
        endpoint = self.endpoints.get(ns, name) if self.endpoints is not None else None
        if endpoint is not None and held is not None:
            await endpoint.serve([pb.Instance(id=i.id, ip=i.ip, port=i.port, draining=True)
                                  for i in held.value.instances])
        for vm in sorted({i.vm for i in held.value.instances} if held else set()):
            # NotFound: the VM (or the MCIS) is gone, and its instances with it.
            with contextlib.suppress(errors.NotFound):
                await self.dragonfly.set_workloads(ns, app.mcis, vm, name, [])
        port = int(app.status.endpoint.rsplit(":", 1)[1]) if app.status.endpoint else 0
        if self.endpoints is not None:
            await self.endpoints.remove(app, port)
        if app.status.endpoint:
            with contextlib.suppress(errors.DomainError, ValueError):
                await self.records.store.delete(keyspace.endpoint_port(int(app.status.endpoint.rsplit(":", 1)[1])))
        await self.records.forget(ns, name)
        for k in [k for k in self._sent if k[:2] == key]:
            del self._sent[k]

    def _event(self, app: pb.Application, e: Event) -> pb.AppEvent:
        return pb.AppEvent(type=e.type, reason=e.reason, message=e.message, revision=app.revision, instance=e.instance)
