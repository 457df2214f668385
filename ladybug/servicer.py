"""The gRPC face of ladybug: records and intents; the controller does the rest."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc
from google.protobuf import empty_pb2

from cbapi.dragonfly.v1 import workloads_pb2 as wpb
from cbapi.ladybug.v1 import ladybug_pb2 as pb
from cbapi.ladybug.v1 import ladybug_pb2_grpc
from ladybug import keyspace, validation
from ladybug.clients import Dragonfly, Tumblebug
from ladybug.records import Records, now_ts
from services import errors
from services.names import check_name, require

Ctx: TypeAlias = grpc.aio.ServicerContext
EMPTY = empty_pb2.Empty()
EVENTS_PAGE = 100


class LadybugServicer(ladybug_pb2_grpc.LadybugServicer):
    """cbapi.ladybug.v1.Ladybug: applications, their revisions, instances and events."""

    def __init__(self, records: Records, tumblebug: Tumblebug, dragonfly: Dragonfly) -> None:
        self.records = records
        self.tumblebug = tumblebug
        self.dragonfly = dragonfly

    async def _check_mcis(self, ns: str, app: pb.Application) -> None:
        """The MCIS exists, and so do the VM groups the spec names."""
        try:
            mcis = await self.tumblebug.mcis(ns, app.mcis)
        except errors.NotFound as err:
            raise errors.InvalidArgument.field("application.mcis", f"MCIS {app.mcis!r} does not exist in namespace "
                                                                   f"{ns!r}; create it first") from err
        groups = {sg.name for sg in mcis.subgroups}
        for i, sg in enumerate(app.spec.subgroups):
            if sg not in groups:
                raise errors.InvalidArgument.field(f"application.spec.subgroups[{i}]",
                                                   f"MCIS {app.mcis!r} has no VM group {sg!r}")
        grow = app.spec.scaling.grow_subgroup
        if grow and grow not in groups:
            raise errors.InvalidArgument.field("application.spec.scaling.grow_subgroup",
                                               f"MCIS {app.mcis!r} has no VM group {grow!r}")

    # ------------------------------------------------------------- standard

    async def CreateApplication(self, request: pb.CreateApplicationRequest, context: Ctx) -> pb.Application:
        """Record the app (revision 1) and return at once; the controller rolls it out."""
        ns = check_name(request.namespace, "namespace")
        app = pb.Application()
        app.CopyFrom(request.application)
        app.namespace = ns
        validation.check_application(app)
        if request.request_id:
            found = await self.records.find(ns, app.name)
            if found is not None and found.value.request_id == request.request_id:
                return found.value  # the same request again: its answer again
        await self._check_mcis(ns, app)
        for field in ("status", "revision", "generation", "observed_generation", "deleting"):
            app.ClearField(field)
        app.request_id = request.request_id
        if request.validate_only:
            if await self.records.find(ns, app.name) is not None:
                raise errors.AlreadyExists(f"application {app.name!r} already exists in namespace {ns!r}")
            return app
        try:
            return await self.records.create(app)
        except errors.AlreadyExists as err:
            raise errors.AlreadyExists(f"application {app.name!r} already exists in namespace {ns!r}") from err

    async def GetApplication(self, request: pb.GetApplicationRequest, context: Ctx) -> pb.Application:
        return (await self.records.get(require(request.namespace, "namespace"), require(request.name, "name"))).value

    async def ListApplications(self, request: pb.ListApplicationsRequest, context: Ctx) -> pb.ListApplicationsResponse:
        items, token = await self.records.page(check_name(request.namespace, "namespace"), request.page_size,
                                               request.page_token)
        return pb.ListApplicationsResponse(applications=items, next_page_token=token)

    async def UpdateApplication(self, request: pb.UpdateApplicationRequest, context: Ctx) -> pb.Application:
        """A changed spec becomes a new revision; the same spec again changes nothing."""
        ns, name = require(request.namespace, "namespace"), require(request.name, "name")
        given = request.application
        if given.name and given.name != name:
            raise errors.InvalidArgument.field("application.name", "cannot be changed (it names the app)")
        cur = (await self.records.get(ns, name)).value
        if given.mcis and given.mcis != cur.mcis:
            raise errors.InvalidArgument.field("application.mcis", "cannot be changed; create a new application")
        validation.check_spec(given.spec)
        probe = pb.Application()
        probe.CopyFrom(cur)
        probe.spec.CopyFrom(given.spec)
        await self._check_mcis(ns, probe)
        if request.validate_only or given.spec == cur.spec:
            return probe if request.validate_only else cur

        def describe(app: pb.Application) -> None:
            if given.description:
                app.description = given.description

        return await self.records.new_revision(ns, name, given.spec, describe)

    async def DeleteApplication(self, request: pb.DeleteApplicationRequest, context: Ctx) -> empty_pb2.Empty:
        """Mark it deleting; the controller stops every instance, drops the endpoint, then forgets it."""
        ns, name = require(request.namespace, "namespace"), require(request.name, "name")

        def change(app: pb.Application) -> pb.Application | None:
            if app.deleting:
                return None
            app.deleting = True
            app.status.phase = pb.DELETING
            app.update_time.CopyFrom(now_ts())
            return app

        await self.records.modify(ns, name, change)
        return EMPTY

    # -------------------------------------------------------------- rollouts

    async def ListRevisions(self, request: pb.ListRevisionsRequest, context: Ctx) -> pb.ListRevisionsResponse:
        ns, name = require(request.namespace, "namespace"), require(request.name, "name")
        await self.records.get(ns, name)
        return pb.ListRevisionsResponse(revisions=await self.records.revisions(ns, name))

    async def RollbackApplication(self, request: pb.RollbackApplicationRequest, context: Ctx) -> pb.Application:
        """Roll out an earlier revision's spec again, as a new revision (0: the last stable one)."""
        ns, name = require(request.namespace, "namespace"), require(request.name, "name")
        cur = (await self.records.get(ns, name)).value
        number = request.revision or cur.status.stable_revision
        if number <= 0:
            raise errors.FailedPrecondition(f"application {name!r} has no stable revision yet; name a revision")
        rev = await self.records.revision(ns, name, number)
        if rev is None:
            raise errors.NotFound(f"revision {number} of application {name!r} not found (see ListRevisions)")
        spec = pb.AppSpec()
        spec.CopyFrom(rev.spec)
        spec.instances = cur.spec.instances  # a rollback changes the version, not the size
        app = await self.records.new_revision(ns, name, spec)
        await self.records.add_events(ns, name, [pb.AppEvent(
            type="Rollback", reason="Requested", revision=app.revision,
            message=f"revision {app.revision} rolls out the spec of revision {number}")])
        return app

    async def PromoteApplication(self, request: pb.PromoteApplicationRequest, context: Ctx) -> pb.Application:
        """Let a canary rollout go on to every instance."""
        ns, name = require(request.namespace, "namespace"), require(request.name, "name")

        def change(app: pb.Application) -> pb.Application | None:
            if app.spec.update.type != pb.CANARY or app.revision == app.status.stable_revision \
                    or app.status.failed_revision == app.revision:
                raise errors.FailedPrecondition(f"application {name!r} has no canary rollout to promote")
            if app.status.rollout.promoted:
                return None
            app.status.rollout.promoted = True
            return app

        app = await self.records.modify(ns, name, change)
        await self.records.add_events(ns, name, [pb.AppEvent(type="Promote", reason="Requested",
                                                             revision=app.revision, message="promoted by hand")])
        return app

    async def AbortRollout(self, request: pb.AbortRolloutRequest, context: Ctx) -> pb.Application:
        """Stop the rollout in progress and go back to the last stable revision."""
        ns, name = require(request.namespace, "namespace"), require(request.name, "name")
        cur = (await self.records.get(ns, name)).value
        stable = cur.status.stable_revision
        if cur.revision == stable:
            raise errors.FailedPrecondition(f"application {name!r} has no rollout in progress")
        if not stable:
            raise errors.FailedPrecondition(f"application {name!r} has no stable revision to go back to; "
                                            "update or delete it")
        rev = await self.records.revision(ns, name, stable)
        if rev is None:
            raise errors.FailedPrecondition(f"the stable revision {stable} is no longer in the history")
        aborted = cur.revision

        def change(app: pb.Application) -> pb.Application:
            if app.revision != aborted:
                raise errors.Aborted("the application changed meanwhile; retry")
            instances = app.spec.instances
            app.spec.CopyFrom(rev.spec)
            app.spec.instances = instances
            app.revision = stable
            app.status.failed_revision = aborted
            app.generation += 1
            return app

        app = await self.records.modify(ns, name, change)
        await self.records.mark_revision(ns, name, aborted, "aborted")
        await self.records.add_events(ns, name, [pb.AppEvent(
            type="Abort", reason="Requested", revision=stable,
            message=f"rollout of revision {aborted} aborted; back to revision {stable}")])
        return app

    async def ScaleApplication(self, request: pb.ScaleApplicationRequest, context: Ctx) -> pb.Application:
        """A new count (or new bounds of the metric rule); not a new revision."""
        ns, name = require(request.namespace, "namespace"), require(request.name, "name")
        if request.instances < 0 or request.min_instances < 0 or request.max_instances < 0:
            raise errors.InvalidArgument.field("instances", "counts must not be negative")
        if not (request.instances or request.min_instances or request.max_instances):
            raise errors.InvalidArgument.field("instances", "give instances, or min_instances/max_instances")

        def change(app: pb.Application) -> pb.Application:
            if app.deleting:
                raise errors.FailedPrecondition(f"application {name!r} is being deleted")
            if request.instances:
                app.spec.instances = request.instances
            if request.min_instances or request.max_instances:
                sc = app.spec.scaling
                sc.min_instances = request.min_instances or sc.min_instances
                sc.max_instances = request.max_instances or sc.max_instances
                if sc.max_instances < sc.min_instances:
                    raise errors.InvalidArgument.field("max_instances", "must not be below min_instances")
            app.generation += 1
            return app

        app = await self.records.modify(ns, name, change)
        await self.records.add_events(ns, name, [pb.AppEvent(
            type="Scale", reason="Requested", revision=app.revision,
            message=f"instances {app.spec.instances}" + (
                f", bounds {app.spec.scaling.min_instances}-{app.spec.scaling.max_instances}"
                if app.spec.HasField("scaling") else ""))])
        return app

    # ------------------------------------------------------------- instances

    async def ListInstances(self, request: pb.ListInstancesRequest, context: Ctx) -> pb.ListInstancesResponse:
        """The instances the controller wants, with what their agents last reported."""
        ns, name = require(request.namespace, "namespace"), require(request.name, "name")
        app = (await self.records.get(ns, name)).value
        held = await self.records.instances(ns, name)
        out = list(held.value.instances) if held else []
        try:
            reported = await self.dragonfly.list_workloads(ns, app.mcis, name)
        except errors.DomainError as err:
            for inst in out:
                inst.message = f"status unknown: {err.message}"
            return pb.ListInstancesResponse(instances=out)
        status = {s.id: s for v in reported.vms for s in v.statuses}
        for inst in out:
            s = status.get(inst.id)
            if s is None:
                inst.message = "not reported by its agent yet"
                continue
            inst.state, inst.healthy, inst.restarts, inst.message = s.state, s.healthy, s.restarts, s.message
        return pb.ListInstancesResponse(instances=out)

    async def GetInstanceLogs(self, request: pb.GetInstanceLogsRequest, context: Ctx) -> wpb.WorkloadLogs:
        ns, name = require(request.namespace, "namespace"), require(request.name, "name")
        iid = require(request.instance, "instance")
        app = (await self.records.get(ns, name)).value
        held = await self.records.instances(ns, name)
        inst = next((i for i in (held.value.instances if held else []) if i.id == iid), None)
        if inst is None:
            raise errors.NotFound(f"instance {iid!r} of application {name!r} not found (see ListInstances)")
        return await self.dragonfly.logs(ns, app.mcis, inst.vm, iid, request.tail_lines)

    # ---------------------------------------------------------------- events

    async def ListAppEvents(self, request: pb.ListAppEventsRequest, context: Ctx) -> pb.ListAppEventsResponse:
        """Oldest first; the page token is the position to go on from."""
        ns, name = require(request.namespace, "namespace"), require(request.name, "name")
        await self.records.get(ns, name)
        events = await self.records.events(ns, name)
        try:
            start = int(request.page_token or "0")
        except ValueError as err:
            raise errors.InvalidArgument.field("page_token", "is not a token of this list; pass the "
                                                             "next_page_token this list returned") from err
        size = request.page_size if request.page_size > 0 else EVENTS_PAGE
        page = events[start:start + size]
        token = str(start + size) if start + size < len(events) else ""
        return pb.ListAppEventsResponse(events=page, next_page_token=token)

    async def WatchApplication(self, request: pb.WatchApplicationRequest, context: Ctx
                               ) -> AsyncIterator[pb.Application]:
        """The application now, then after every change, until it is deleted."""
        ns, name = require(request.namespace, "namespace"), require(request.name, "name")
        store = self.records.store
        start = await store.revision()
        cur = await self.records.get(ns, name)
        yield cur.value
        key = keyspace.app(ns, name)
        async for ev in store.watch(key, start + 1):
            if ev.key != key:
                continue  # another app whose name starts with this one's
            if ev.value is None:
                return
            if ev.revision > cur.mod_revision:
                yield pb.Application.FromString(ev.value)
