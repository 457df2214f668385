"""Ladybug's records in etcd: applications, their revisions, events and wanted instances.

Every record is one key holding a binary protobuf message; read-modify-write goes through
compare-and-swap on the key's mod_revision (`Store.modify`). An application record holds the
spec being rolled out and its status; each revision's spec is kept under its own key (written
after the app record, and repaired by the controller if a crash fell in between); events are one
bounded log per app; the instances the controller wants are one record per app (its intent).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from google.protobuf.timestamp_pb2 import Timestamp

from cbapi.ladybug.v1 import ladybug_pb2 as pb
from ladybug import keyspace
from services import errors
from services.store import Store, Versioned

PAGE_DEFAULT = 50
PAGE_MAX = 500


def now_ts() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def _what(ns: str, name: str) -> str:
    return f"application {name!r} in namespace {ns!r}"


class Records:
    """Typed access to `/cb/ladybug/…` for the servicer and the controller."""

    def __init__(self, store: Store, events_max: int = 200, revisions_max: int = 50) -> None:
        self.store = store
        self.events_max = events_max
        self.revisions_max = revisions_max

    # ------------------------------------------------------------ applications

    async def get(self, ns: str, name: str) -> Versioned[pb.Application]:
        return await self.store.must_get(keyspace.app(ns, name), pb.Application, _what(ns, name))

    async def find(self, ns: str, name: str) -> Versioned[pb.Application] | None:
        return await self.store.get(keyspace.app(ns, name), pb.Application)

    async def create(self, app: pb.Application) -> pb.Application:
        """Record a new application (revision 1) and its first revision."""
        app.revision = 1
        app.generation = 1
        app.status.latest_revision = 1
        app.status.phase = pb.PROGRESSING
        app.create_time.CopyFrom(now_ts())
        app.update_time.CopyFrom(app.create_time)
        await self.store.create(keyspace.app(app.namespace, app.name), app)
        await self.put_revision(app.namespace, app.name, 1, app.spec)
        return app

    async def page(self, ns: str, size: int, token: str) -> tuple[list[pb.Application], str]:
        size = PAGE_DEFAULT if size <= 0 else min(size, PAGE_MAX)
        got = await self.store.page(keyspace.apps(ns), pb.Application, size, token)
        return [v.value for v in got.items], got.next_key

    async def modify(self, ns: str, name: str, change: Callable[[pb.Application], pb.Application | None]
                     ) -> pb.Application:
        return await self.store.modify(keyspace.app(ns, name), pb.Application, change, _what(ns, name))

    async def new_revision(self, ns: str, name: str, spec: pb.AppSpec,
                           edit: Callable[[pb.Application], None] | None = None) -> pb.Application:
        """Make `spec` the next revision and the one to roll out; FAILED_PRECONDITION while deleting."""

        def change(app: pb.Application) -> pb.Application:
            if app.deleting:
                raise errors.FailedPrecondition(f"{_what(ns, name)} is being deleted")
            latest = max(app.status.latest_revision, app.revision)
            app.spec.CopyFrom(spec)
            app.revision = latest + 1
            app.status.latest_revision = app.revision
            app.status.failed_revision = 0
            app.status.rollout.promoted = False
            app.generation += 1
            app.status.phase = pb.PROGRESSING
            app.update_time.CopyFrom(now_ts())
            if edit is not None:
                edit(app)
            return app

        app = await self.modify(ns, name, change)
        await self.put_revision(ns, name, app.revision, app.spec)
        return app

    async def forget(self, ns: str, name: str) -> None:
        """Remove the application and everything kept for it."""
        await self.store.delete_prefix(keyspace.revisions(ns, name))
        await self.store.delete(keyspace.events(ns, name))
        await self.store.delete(keyspace.instances(ns, name))
        await self.store.delete(keyspace.app(ns, name))

    # --------------------------------------------------------------- revisions

    async def put_revision(self, ns: str, name: str, number: int, spec: pb.AppSpec, outcome: str = "") -> None:
        """Write revision `number` (same number, same spec: harmless to repeat) and trim the history."""
        rev = pb.Revision(revision=number, spec=spec, create_time=now_ts(), outcome=outcome)
        await self.store.put(keyspace.revision(ns, name, number), rev)
        prefix = keyspace.revisions(ns, name)
        if await self.store.count(prefix) > self.revisions_max:
            old = await self.store.page(prefix, pb.Revision, await self.store.count(prefix) - self.revisions_max)
            for item in old.items:
                await self.store.delete(item.key)

    async def revision(self, ns: str, name: str, number: int) -> pb.Revision | None:
        got = await self.store.get(keyspace.revision(ns, name, number), pb.Revision)
        return got.value if got else None

    async def revisions(self, ns: str, name: str) -> list[pb.Revision]:
        return [v.value for v in await self.store.list_all(keyspace.revisions(ns, name), pb.Revision)]

    async def mark_revision(self, ns: str, name: str, number: int, outcome: str) -> None:
        def change(rev: pb.Revision) -> pb.Revision | None:
            if rev.outcome == outcome:
                return None
            rev.outcome = outcome
            return rev

        with contextlib.suppress(errors.NotFound):  # trimmed from the history
            await self.store.modify(keyspace.revision(ns, name, number), pb.Revision, change, f"revision {number}")

    # ------------------------------------------------------------------ events

    async def add_events(self, ns: str, name: str, events: list[pb.AppEvent]) -> None:
        """Append to the app's log, dropping the oldest beyond `events_max`."""
        if not events:
            return
        key = keyspace.events(ns, name)
        for event in events:
            if not event.HasField("time"):
                event.time.CopyFrom(now_ts())
        for _ in range(20):
            cur = await self.store.get(key, pb.EventLog)
            log = pb.EventLog() if cur is None else cur.value
            log.events.extend(events)
            if len(log.events) > self.events_max:
                del log.events[: len(log.events) - self.events_max]
            try:
                if cur is None:
                    await self.store.create(key, log)
                else:
                    await self.store.update(key, log, cur.mod_revision)
                return
            except (errors.Aborted, errors.AlreadyExists):
                continue
        raise errors.Aborted(f"the events of {_what(ns, name)} are being written by many at once; retry")

    async def events(self, ns: str, name: str) -> list[pb.AppEvent]:
        got = await self.store.get(keyspace.events(ns, name), pb.EventLog)
        return list(got.value.events) if got else []

    # --------------------------------------------------------------- instances

    async def instances(self, ns: str, name: str) -> Versioned[pb.InstanceSet] | None:
        return await self.store.get(keyspace.instances(ns, name), pb.InstanceSet)

    async def put_instances(self, ns: str, name: str, wanted: pb.InstanceSet, mod_revision: int | None) -> None:
        """Write the wanted instances under CAS (None: the record must not exist yet)."""
        key = keyspace.instances(ns, name)
        if mod_revision is None:
            await self.store.create(key, wanted)
        else:
            await self.store.update(key, wanted, mod_revision)
