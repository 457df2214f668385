"""The lifecycle every connection resource shares: intent before the cloud call,
result after it, and a reconciler for what a crash leaves in between.

create: write the record (phase CREATING, with the cloud-side name and an
idempotency token) → call the cloud → complete the record (READY, cloud ID).
delete: mark DELETING → call the cloud → remove the record.
A spider that dies between the two steps leaves an intent whose owner is gone;
`recover` (run by the leader) finds the cloud resource by its cloud-side name and
adopts it, or drops the record when the cloud has nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from services.names import check_name, suffix
from services.paging import page_size as clamp_page
from services.proto_time import now
from services.store import Store, Versioned
from services.tasks import cancel_tasks
from spider import keyspace
from spider.connections import Connections, OpenConnection
from spider.kinds import BY_COLLECTION, Kind, R

log = logging.getLogger("spider.resources")

T = TypeVar("T")
Make = Callable[[R, str], Awaitable[R]]
# The longest pause between two background tries of a completion: etcd back, the record is READY
# within this much.
COMPLETE_RETRY_MAX_S = 2.0
# Raw values of the keys a create read with its intent (None: no such record).
Reads = Mapping[str, bytes | None]


def _token(conn: str, collection: str, name: str, request_id: str) -> str:
    if not request_id:
        return uuid.uuid4().hex
    return hashlib.sha256(f"{conn}/{collection}/{name}/{request_id}".encode()).hexdigest()[:32]


def _ambiguous(err: errors.DomainError) -> bool:
    """True when the cloud may have acted although the call failed (no answer came back)."""
    return isinstance(err, errors.Unavailable | errors.DeadlineExceeded) and not err.upstream_code


def kind_of(collection: str) -> Kind[Any]:
    found = BY_COLLECTION.get(collection)
    if found is None:
        raise errors.InvalidArgument.field("collection", f"unknown collection {collection!r}; "
                                                         f"one of {', '.join(sorted(BY_COLLECTION))}")
    return found


def reference_key(conn: str, kind: Kind[Any], name: str) -> str:
    """Where a record another resource refers to lives (to read it with `create_reading`)."""
    return keyspace.resource(conn, kind.collection, name)


def ready_in(reads: Reads, conn: str, kind: Kind[R], name: str, field: str) -> R:
    """`Resources.ready` from what a `create_reading` transaction read."""
    raw = reads.get(reference_key(conn, kind, name))
    return ready_record(conn, kind, name, field, None if raw is None else kind.message.FromString(raw))


def ready_record(conn: str, kind: Kind[R], name: str, field: str, found: R | None) -> R:
    """`found`, if it is READY to be referred to; else NotFound or FailedPrecondition naming `field`."""
    if found is None:
        raise errors.NotFound(f"{field}: {kind.noun} {name!r} not found in connection {conn!r}")
    if found.meta.phase != common.PHASE_READY:
        raise errors.FailedPrecondition(f"{field}: {kind.noun} {name!r} is not ready "
                                        f"({common.Phase.Name(found.meta.phase)})")
    return found


def _ready(kind: Kind[R], rec: R, made: R) -> R:
    """`rec` completed with what the cloud made: READY, owned by nobody."""
    kind.observe(rec, made)
    rec.meta.phase = common.PHASE_READY
    rec.meta.owner = ""
    rec.meta.update_time.CopyFrom(now())
    return rec


class Resources:
    """Generic create/get/list/delete/register/reconcile/recover over any Kind."""

    def __init__(self, store: Store, connections: Connections, identity: str, settle_s: float) -> None:
        self.store = store
        self.connections = connections
        self.identity = identity
        # How long the write that completes a create is tried again while etcd is away (a leader
        # change, a member restarting) before the caller is told; after that the write goes on in
        # the background (`_keep_completing`), since the cloud has acted.
        self.settle_s = settle_s
        # Keys whose create this process is running now. An intent it owns and works on neither
        # here nor in `_completing` is taken over by a retry of the same request.
        self._working: set[str] = set()
        # Completions etcd did not take within `settle_s`, tried again until they land.
        self._completing: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    async def close(self) -> None:
        """Stop the background completions (and start no more). A record one leaves CREATING is an
        intent of this instance, which recovery resolves (adopting the cloud resource by its name)
        once the instance key is gone."""
        self._closed = True
        await cancel_tasks(list(self._completing.values()))

    def handler(self, conn: OpenConnection, kind: Kind[Any]) -> Any:
        return conn.handler(kind.handler)

    # ------------------------------------------------------------------ reads

    async def get(self, conn: str, kind: Kind[R], name: str) -> Versioned[R]:
        return await self.store.must_get(keyspace.resource(conn, kind.collection, name), kind.message,
                                         f"{kind.noun} {name!r} in connection {conn!r}")

    async def ready(self, conn: str, kind: Kind[R], name: str, field: str) -> R:
        """A record that is READY, for use as a reference by another resource."""
        found = await self.store.get(keyspace.resource(conn, kind.collection, name), kind.message)
        return ready_record(conn, kind, name, field, None if found is None else found.value)

    async def records(self, conn: str, kind: Kind[R]) -> list[R]:
        """Every record of a kind in a connection."""
        return [r.value for r in await self.store.list_all(keyspace.resources(conn, kind.collection), kind.message)]

    async def names_by_csp_id(self, conn: str, kind: Kind[R]) -> dict[str, str]:
        """Cloud ID → spider name of every record of a kind in a connection."""
        return {r.iid.csp_id: r.iid.name for r in await self.records(conn, kind) if r.iid.csp_id}

    async def page(self, conn: str, kind: Kind[R], page_size: int, token: str) -> tuple[list[R], str]:
        await self.connections.get_connection(conn)
        page = await self.store.page(keyspace.resources(conn, kind.collection), kind.message,
                                     clamp_page(page_size), token)
        return [i.value for i in page.items], page.next_key

    # ---------------------------------------------------------------- create

    async def create(self, conn: OpenConnection, kind: Kind[R], desired: R, request_id: str,
                     make: Make[R]) -> tuple[R, R]:
        """Record the intent, make the resource, complete the record.

        Returns (record, what the cloud returned). A retry with the same
        request_id returns the first result, or finishes an interrupted create.
        Once started, a create runs to its end even if the caller goes away, so
        no intent is left owned by a live server that no longer works on it."""
        return await self.create_reading(conn, kind, desired, request_id, (), lambda _: make)

    async def create_reading(self, conn: OpenConnection, kind: Kind[R], desired: R, request_id: str,
                             reads: Sequence[str], prepare: Callable[[Reads], Make[R]]) -> tuple[R, R]:
        """`create`, reading `reads` (the records the resource refers to) in the transaction that
        writes the intent, or that finds the record of an earlier request: one round trip, where a
        read of the record, one per reference and the write were one each. `prepare` gets what
        the reads found and returns the cloud call; a DomainError from it (a reference missing or
        not ready) drops the intent just written and is raised."""
        return await asyncio.shield(self._create(conn, kind, desired, request_id, reads, prepare))

    async def _create(self, conn: OpenConnection, kind: Kind[R], desired: R, request_id: str,
                      reads: Sequence[str], prepare: Callable[[Reads], Make[R]]) -> tuple[R, R]:
        cname = conn.record.name
        name = check_name(desired.iid.name, f"{kind.message.DESCRIPTOR.name.lower()}.iid.name")
        key = keyspace.resource(cname, kind.collection, name)
        record = kind.message()
        record.CopyFrom(desired)
        record.iid.csp_name = conn.driver.name_rules.cloud_name(name, suffix())
        record.iid.csp_id = ""
        record.meta.CopyFrom(common.RecordMeta(
            phase=common.PHASE_CREATING, request_id=request_id, owner=self.identity,
            token=_token(cname, kind.collection, name, request_id), create_time=now(), update_time=now()))
        made_now = await self.store.create_and_read(key, record, reads)
        if made_now.created:
            rev = made_now.revision
        else:
            held = made_now.read[key]
            assert held is not None  # the key was taken in the very transaction that read it
            record, rev = await self._resume(key, kind, request_id, f"{kind.noun} {name!r}", cname,
                                             Versioned(key, kind.message.FromString(held[0]), held[1]))
            if record.meta.phase == common.PHASE_READY:
                return record, record
        self._working.add(key)  # this call owns the intent now
        try:
            return await self._act(conn, kind, key, record, rev, made_now.created, made_now.read, prepare)
        finally:
            self._working.discard(key)

    async def _act(self, conn: OpenConnection, kind: Kind[R], key: str, record: R, rev: int, created: bool,
                   read: Mapping[str, tuple[bytes, int] | None], prepare: Callable[[Reads], Make[R]]) -> tuple[R, R]:
        """The cloud call of an intent this process owns (written by it, `created`, or taken over),
        and the intent's completion."""
        try:
            make = prepare({k: (v[0] if v else None) for k, v in read.items() if k != key})
        except errors.DomainError:
            if created:
                with contextlib.suppress(errors.Aborted, errors.NotFound):
                    await self.store.delete(key, rev)  # the intent of a call never made
            raise
        try:
            made = await make(record, record.meta.token)
        except errors.DomainError as err:
            await self._failed_create(conn, kind, key, record, rev, err)
            raise
        return await self._finish(key, kind, record, rev, made), made

    async def _finish(self, key: str, kind: Kind[R], record: R, rev: int, made: R) -> R:
        """Complete the intent this create wrote at `rev` without reading it again (this process
        holds what it wrote); when something wrote it since (a status read stored what the cloud
        said), read it afresh and complete that."""
        done = kind.message()
        done.CopyFrom(record)
        _ready(kind, done, made)
        deadline = time.monotonic() + self.settle_s
        try:
            try:
                await _settled(lambda: self.store.update(key, done, rev), deadline)
            except errors.Aborted:
                # Written since, or this very write landed and its answer was lost: complete it afresh.
                return await _settled(lambda: self._complete(key, kind, made), deadline)
        except (errors.Unavailable, errors.DeadlineExceeded) as err:
            self._complete_later(key, kind, record, made)
            made_as = f" as {made.iid.csp_id!r}" if made.iid.csp_id else ""
            raise errors.Unavailable(
                f"{kind.noun} {record.iid.name!r} was made in the cloud{made_as}, but the store (etcd) did not "
                f"take its record within {self.settle_s:g} s; spider completes the record once etcd is back: "
                f"read it again shortly (a retry of the same request returns it)") from err
        return done

    def _complete_later(self, key: str, kind: Kind[R], intent: R, made: R) -> None:
        """Go on writing a completion in the background; meanwhile a retry to this process is told
        the create is still running (`_busy`), not sent to the cloud again."""
        if self._closed:
            return  # stopping: recovery resolves the intent once this instance is gone
        old = self._completing.get(key)
        if old is not None:
            old.cancel()  # an earlier intent under this key, gone (a forced delete): no longer ours
        task = asyncio.create_task(self._keep_completing(key, kind, intent, made), name=f"complete {key}")
        self._completing[key] = task

        def ended(t: asyncio.Task[None]) -> None:
            if self._completing.get(key) is t:
                del self._completing[key]
            if not t.cancelled() and t.exception() is not None:
                log.error("completing a create failed", exc_info=t.exception(), extra={"key": key})

        task.add_done_callback(ended)

    async def _keep_completing(self, key: str, kind: Kind[R], intent: R, made: R) -> None:
        """Write the completion until it lands, or until the record is no longer this create's intent."""
        delay = 0.2
        while True:
            await asyncio.sleep(delay)
            try:
                outcome = await self._complete_mine(key, kind, intent, made)
            except errors.DomainError as err:  # etcd still away, or a transient refusal: try again
                delay = min(delay * 2, COMPLETE_RETRY_MAX_S)
                log.debug("completion not written yet", extra={"key": key, "error": err.message})
                continue
            log.info("background completion ended", extra={"key": key, "outcome": outcome})
            return

    async def _complete_mine(self, key: str, kind: Kind[R], intent: R, made: R) -> str:
        """Complete the record if it is still `intent` (CREATING, owned by this process, same token
        and creation time): "completed". Otherwise leave it: "gone" (deleted: forgotten by a forced
        delete), "ready already" (a write landed whose answer was lost, or recovery adopted it) or
        "not mine" (DELETING; a newer intent under the same name). Writing over any of
        those would pair the record with a resource it no longer stands for."""
        wrote = False

        def change(rec: R) -> R | None:
            nonlocal wrote
            m = rec.meta
            wrote = (m.phase == common.PHASE_CREATING and m.owner == self.identity and m.token == intent.meta.token
                     and m.create_time == intent.meta.create_time)
            return _ready(kind, rec, made) if wrote else None

        try:
            now_held = await self.store.modify(key, kind.message, change, key)
        except errors.NotFound:
            return "gone"
        if wrote:
            return "completed"
        return "ready already" if now_held.meta.phase == common.PHASE_READY else "not mine"

    def _busy(self, key: str) -> bool:
        """Whether this process still works on the create of `key` (its cloud call, or its completion)."""
        return key in self._working or key in self._completing

    async def _resume(self, key: str, kind: Kind[R], request_id: str, what: str, conn: str,
                      found: Versioned[R]) -> tuple[R, int]:
        """The same request again: return its record (`found`), taking over an unfinished intent."""
        rec = found.value
        if not request_id or rec.meta.request_id != request_id:
            raise errors.AlreadyExists(f"{what} already exists in connection {conn!r}")
        if rec.meta.phase == common.PHASE_READY:
            return rec, found.mod_revision
        if rec.meta.phase == common.PHASE_DELETING:
            raise errors.FailedPrecondition(f"{what} is being deleted")
        # The first attempt is still running (here, even if this instance's key lapsed meanwhile, or
        # on another live instance): two cloud calls at once would race.
        if self._busy(key) or (rec.meta.owner and rec.meta.owner != self.identity and await self.store.get(
                keyspace.instance(rec.meta.owner), common.KeyValue) is not None):
            raise errors.Aborted(f"{what} is still being created by the first request; retry shortly")
        rec.meta.owner = self.identity
        return rec, await self.store.update(key, rec, found.mod_revision)

    async def _failed_create(self, conn: OpenConnection, kind: Kind[R], key: str, record: R, rev: int,
                             err: errors.DomainError) -> None:
        if not _ambiguous(err):
            await self.store.delete(key)
            return
        # The cloud may hold it: look now; if the cloud cannot say, leave it to recovery.
        try:
            await self._resolve(conn, kind, key, record, rev, await kind.list_cloud(self.handler(conn, kind)))
        except errors.DomainError:
            record.meta.owner = ""
            record.meta.last_error = err.message
            await self.store.update(key, record, rev)

    async def _complete(self, key: str, kind: Kind[R], made: R, rev: int | None = None) -> R:
        """Mark the record READY with what the cloud made; with `rev`, only if unchanged since."""

        def done(rec: R) -> R:
            return _ready(kind, rec, made)

        if rev is None:
            return await self.store.modify(key, kind.message, done, key)
        current = await self.store.must_get(key, kind.message, key)
        if current.mod_revision != rev:
            raise errors.Aborted(f"{key} changed while being resolved")
        record = done(current.value)
        await self.store.update(key, record, rev)
        return record

    # ---------------------------------------------------------------- update

    async def observe(self, conn: str, kind: Kind[R], name: str, seen: R) -> R:
        """Store what the cloud reports about a resource now."""

        def change(rec: R) -> R:
            kind.observe(rec, seen)
            rec.meta.update_time.CopyFrom(now())
            return rec

        return await self.store.modify(keyspace.resource(conn, kind.collection, name), kind.message, change,
                                       f"{kind.noun} {name!r}")

    async def modify(self, conn: str, kind: Kind[R], name: str, change: Callable[[R], R | None]) -> R:
        return await self.store.modify(keyspace.resource(conn, kind.collection, name), kind.message, change,
                                       f"{kind.noun} {name!r} in connection {conn!r}")

    # ---------------------------------------------------------------- delete

    async def delete(self, conn: OpenConnection, kind: Kind[R], name: str, force: bool,
                     destroy: Callable[[R], Awaitable[None]] | None = None) -> R:
        """Mark DELETING, delete in the cloud, forget. `force` forgets even when the cloud refuses."""
        cname = conn.record.name
        key = keyspace.resource(cname, kind.collection, name)
        found = await self.get(cname, kind, name)
        rec = found.value
        if rec.meta.phase == common.PHASE_CREATING and rec.meta.owner and not force:
            raise errors.FailedPrecondition(f"{kind.noun} {name!r} is still being created; retry shortly")
        rec.meta.phase = common.PHASE_DELETING
        rec.meta.owner = self.identity
        rev = await self.store.update(key, rec, found.mod_revision)
        try:
            if rec.iid.csp_id:
                await (destroy(rec) if destroy else kind.delete_cloud(self.handler(conn, kind), rec.iid.csp_id))
        except errors.NotFound:
            pass  # already gone from the cloud: forgetting it is the goal
        except errors.DomainError as err:
            if not force:
                rec.meta.phase = common.PHASE_READY
                rec.meta.owner = ""
                rec.meta.last_error = err.message
                await self.store.update(key, rec, rev)
                raise
        await self.store.delete(key)
        return rec

    # -------------------------------------------------------- register, reconcile

    async def register(self, conn: OpenConnection, kind: Kind[R], name: str, csp_id: str) -> R:
        """Adopt an existing cloud resource under `name`."""
        cname = conn.record.name
        check_name(name, "name")
        if not csp_id:
            raise errors.InvalidArgument.field("csp_id", "the cloud's ID of the resource is required")
        for rec in await self.store.list_all(keyspace.resources(cname, kind.collection), kind.message):
            if rec.value.iid.csp_id == csp_id:
                raise errors.AlreadyExists(f"{kind.noun} {csp_id!r} is already registered as {rec.value.iid.name!r}")
        seen = await kind.get_cloud(self.handler(conn, kind), csp_id)
        record = kind.message()
        record.CopyFrom(seen)
        record.iid.name = name
        record.meta.CopyFrom(common.RecordMeta(phase=common.PHASE_READY, create_time=now(), update_time=now()))
        kind.observe(record, seen)
        await self.store.create(keyspace.resource(cname, kind.collection, name), record)
        return record

    async def unregister(self, conn: str, kind: Kind[R], name: str) -> R:
        """Forget a resource and leave it in the cloud (CB-Spider's unregister).

        No cloud call: it works while the cloud is unreachable. Refused while a create or
        delete is in flight, since that call would complete a record that no longer exists."""
        found = await self.get(conn, kind, name)
        rec = found.value
        if rec.meta.phase != common.PHASE_READY and rec.meta.owner:
            doing = "created" if rec.meta.phase == common.PHASE_CREATING else "deleted"
            raise errors.FailedPrecondition(f"{kind.noun} {name!r} is being {doing}; unregister it when that is done")
        await self.store.delete(keyspace.resource(conn, kind.collection, name), found.mod_revision)
        return rec

    async def reconcile(self, conn: OpenConnection, kind: Kind[R]) -> pb.ReconcileResourcesResponse:
        """Compare the records with the cloud: mapped, only in spider, only in the cloud."""
        records = [r.value for r in await self.store.list_all(keyspace.resources(conn.record.name, kind.collection),
                                                               kind.message)]
        cloud = [c for c in await kind.list_cloud(self.handler(conn, kind)) if kind.live(c)]
        by_id = {c.iid.csp_id: c for c in cloud}
        by_name = {c.iid.csp_name: c for c in cloud}
        out = pb.ReconcileResourcesResponse()
        matched: set[str] = set()
        for rec in records:
            hit = by_id.get(rec.iid.csp_id) if rec.iid.csp_id else by_name.get(rec.iid.csp_name)
            if hit is None:
                out.only_spider.append(common.IID(name=rec.iid.name, csp_name=rec.iid.csp_name, csp_id=rec.iid.csp_id))
                continue
            matched.add(hit.iid.csp_id)
            out.mapped.append(common.IID(name=rec.iid.name, csp_name=hit.iid.csp_name, csp_id=hit.iid.csp_id))
        out.only_cloud.extend(common.IID(csp_name=c.iid.csp_name, csp_id=c.iid.csp_id)
                              for c in cloud if c.iid.csp_id not in matched)
        return out

    # --------------------------------------------------------------- recovery

    async def recover(self, alive: set[str]) -> int:
        """Resolve every intent whose owner is gone. Returns how many were resolved."""
        resolved = 0
        for conn_rec in await self.store.list_all(keyspace.connection(), pb.Connection):
            cname = conn_rec.value.name
            for kind in BY_COLLECTION.values():
                stale = [r for r in await self.store.list_all(keyspace.resources(cname, kind.collection), kind.message)
                         if r.value.meta.phase != common.PHASE_READY and r.value.meta.owner not in alive]
                if stale:
                    resolved += await self._recover_kind(cname, kind, stale)
        return resolved

    async def _recover_kind(self, cname: str, kind: Kind[R], stale: list[Versioned[R]]) -> int:
        conn = await self.connections.open(cname)
        handler = self.handler(conn, kind)
        cloud = await kind.list_cloud(handler)
        done = 0
        for item in stale:
            rec = item.value
            try:
                if rec.meta.phase == common.PHASE_CREATING:
                    await self._resolve(conn, kind, item.key, rec, item.mod_revision, cloud)
                else:
                    if rec.iid.csp_id:
                        with contextlib.suppress(errors.NotFound):
                            await kind.delete_cloud(handler, rec.iid.csp_id)
                    await self.store.delete(item.key, item.mod_revision)
                done += 1
            except errors.Aborted:
                continue  # somebody else touched it; the next pass sees the new state
            log.info("recovered intent", extra={"connection": cname, "kind": kind.collection, "resource": rec.iid.name,
                                                "phase": common.Phase.Name(rec.meta.phase)})
        return done

    async def _resolve(self, conn: OpenConnection, kind: Kind[R], key: str, rec: R, rev: int,
                       cloud: list[R]) -> None:
        """Adopt the cloud resource made for an unfinished create, or drop the record.

        Guarded by `rev`: if anyone touched the record since (a retry took the
        intent over), this resolution loses (Aborted) and changes nothing."""
        hit = next((c for c in cloud if c.iid.csp_name == rec.iid.csp_name and kind.live(c)), None)
        if hit is None:
            await self.store.delete(key, rev)
            return
        if kind is BY_COLLECTION["vpcs"]:
            # Subnets are not in the VPC listing: read the VPC itself.
            hit = await kind.get_cloud(self.handler(conn, kind), hit.iid.csp_id)
        await self._complete(key, kind, hit, rev)


async def _settled(write: Callable[[], Awaitable[T]], deadline: float) -> T:
    """A store write that must land (the cloud has acted), tried again while etcd is away, until
    `deadline` (monotonic)."""
    delay = 0.1
    while True:
        try:
            return await write()
        except (errors.Unavailable, errors.DeadlineExceeded):
            if time.monotonic() + delay > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
