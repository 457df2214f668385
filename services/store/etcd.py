"""The store over etcd (the raw etcd v3 API, through aetcd's generated stubs).

The connection is mutual TLS with this process's certificate (`CB_TLS_…`): etcd runs
with `--client-cert-auth`. aetcd's own Client cannot do TLS (it opens an insecure
channel), so the store opens the channel itself and uses only aetcd's stubs.

Every record is one key holding a binary protobuf message. Writes that depend
on what was read are guarded by the key's `mod_revision`; a lost race raises
Aborted. When etcd cannot be reached every call raises Unavailable, and the
same Store recovers by itself once etcd is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc
from aetcd import rpc
from aetcd.rpc import rpc_pb2_grpc
from google.protobuf.message import DecodeError, Message

from services import errors, limits
from services.rpc.client import channel, target_of
from services.rpc.tls import TlsConfigError

log = logging.getLogger("store")

M = TypeVar("M", bound=Message)

# Operations etcd accepts in one transaction (its `--max-txn-ops` default).
TXN_OPS_MAX = 128

_UNAVAILABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


def _range_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with `prefix`."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


@dataclass(frozen=True)
class Versioned(Generic[M]):
    """A record with the revision it was last written at (for compare-and-swap)."""

    key: str
    value: M
    mod_revision: int


@dataclass(frozen=True)
class Page(Generic[M]):
    items: list[Versioned[M]]
    # The key to start after for the next page; empty on the last page.
    next_key: str


@dataclass(frozen=True)
class Creation:
    """What `Store.create_and_read` did: made the record (at `revision`), or found it there; and
    the raw value and mod_revision of each key read in the same transaction (None: absent). When
    the record was there already, `read` holds it too, under its own key."""

    created: bool
    revision: int
    read: dict[str, tuple[bytes, int] | None]


@dataclass(frozen=True)
class WatchEvent:
    key: str
    # The new value, or None when the key was deleted.
    value: bytes | None
    revision: int


class Lease:
    """An etcd lease kept alive in the background until revoked or lost."""

    def __init__(self, store: Store, lease_id: int, ttl: int) -> None:
        self.id = lease_id
        self.ttl = ttl
        self._store = store
        self.lost = asyncio.Event()
        self._task = asyncio.create_task(self._keepalive())

    async def _keepalive(self) -> None:
        last_ok = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(max(self.ttl / 3, 0.2))
            try:
                ttl = await self._store._keepalive_once(self.id)
            except errors.Unavailable:
                if asyncio.get_running_loop().time() - last_ok > self.ttl:
                    self.lost.set()
                    return
                continue
            if ttl <= 0:
                self.lost.set()
                return
            last_ok = asyncio.get_running_loop().time()

    async def revoke(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, errors.DomainError):
            await self._task
        with contextlib.suppress(errors.DomainError):
            await self._store._call(self._store._lease_stub().LeaseRevoke(rpc.LeaseRevokeRequest(ID=self.id),
                                                                           timeout=self._store.timeout))


class Store:
    """Typed get/put/delete, compare-and-swap, paged prefix lists, watches and leases."""

    def __init__(self, host: str = "127.0.0.1", port: int = 2379, timeout: float = 5.0,
                 endpoints: Sequence[str] = ()) -> None:
        self.timeout = timeout
        # Each entry is one channel target: IPv4 members share one target, among which gRPC fails
        # over by itself (pick_first); members named by DNS are one target each, and the store moves
        # to the next when the one it is on stops answering.
        self._targets = _targets(list(endpoints) or [f"{host}:{port}"])
        self.target = self._targets[0]
        self._channel: grpc.aio.Channel | None = None
        self._kv_stub: rpc_pb2_grpc.KVStub | None = None
        self._leases: rpc_pb2_grpc.LeaseStub | None = None
        self._watch_stub: rpc_pb2_grpc.WatchStub | None = None
        # The newest revision a write through this client made: a cache of the store that has
        # seen this revision has seen every write of this client (read-your-writes, `Informer.seen`).
        self.written = 0

    @classmethod
    def from_endpoints(cls, endpoints: str, timeout: float = 5.0) -> Store:
        """A store over every member in `endpoints` (`CB_ETCD_ENDPOINTS`: host:port, comma-separated,
        an `https://` prefix allowed)."""
        members = [e.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
                   for e in endpoints.split(",") if e.strip()]
        return cls(timeout=timeout, endpoints=members or ["127.0.0.1:2379"])

    async def connect(self) -> None:
        await self._ready()

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        self._kv_stub = self._leases = self._watch_stub = None
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close()

    # ------------------------------------------------------------ plumbing

    def _kv(self) -> rpc_pb2_grpc.KVStub:
        assert self._kv_stub is not None
        return self._kv_stub

    def _lease_stub(self) -> rpc_pb2_grpc.LeaseStub:
        assert self._leases is not None
        return self._leases

    async def _call(self, awaitable: Awaitable[object]) -> object:
        target = self.target
        try:
            return await awaitable
        except grpc.aio.AioRpcError as err:
            if err.code() in _UNAVAILABLE:
                if err.code() is grpc.StatusCode.UNAVAILABLE:
                    self._next_member(target)
                # The transport's words name internal addresses: they go to the log, not to clients.
                log.warning("etcd unavailable", extra={"target": self.target,
                                                       "error": (err.details() or err.code().name)[:300]})
                raise errors.Unavailable("the store (etcd) is unavailable; retry shortly") from err
            if _too_large(err):
                # Records are checked against limits.RECORD_MAX_BYTES first; this catches a write
                # of several records that together pass etcd's request limit.
                raise errors.InvalidArgument(f"the write is larger than the store accepts "
                                             f"({err.details()}): make the values smaller") from err
            raise errors.Internal(f"etcd error: {err.details()}") from err

    def _next_member(self, failed: str) -> None:
        """Move to the next target after `failed` stopped answering (once, however many calls saw it)."""
        if len(self._targets) == 1 or self.target != failed:
            return
        self.target = self._targets[(self._targets.index(failed) + 1) % len(self._targets)]
        old, self._channel = self._channel, None
        self._kv_stub = self._leases = self._watch_stub = None
        log.warning("etcd member unavailable; moving to the next", extra={"target": self.target})
        if old is not None:
            # Calls still running on it finish or fail by their own deadline first.
            asyncio.get_running_loop().call_later(self.timeout, _close_soon, old)

    async def _ready(self) -> None:
        if self._channel is not None:
            return
        try:
            # Lazy like any gRPC channel: an etcd that is down shows as UNAVAILABLE on the first call.
            self._channel = channel(self.target, options=[("grpc.keepalive_time_ms", 30_000)], request_ids=False,
                                   balance="pick_first")
        except (TlsConfigError, OSError) as err:
            log.warning("etcd unavailable", extra={"target": self.target, "error": str(err)[:300]})
            raise errors.Unavailable("the store (etcd) is unavailable; retry shortly") from err
        self._kv_stub = rpc_pb2_grpc.KVStub(self._channel)
        self._leases = rpc_pb2_grpc.LeaseStub(self._channel)
        self._watch_stub = None

    # -------------------------------------------------------------- reads

    async def get(self, key: str, cls: type[M]) -> Versioned[M] | None:
        await self._ready()
        resp = await self._call(self._kv().Range(rpc.RangeRequest(key=key.encode()), timeout=self.timeout))
        assert isinstance(resp, rpc.RangeResponse)
        if not resp.kvs:
            return None
        kv = resp.kvs[0]
        return Versioned(key, _decode(cls, kv.value, key), kv.mod_revision)

    async def read_raw(self, keys: Sequence[str]) -> dict[str, tuple[bytes, int] | None]:
        """The raw value and mod_revision of each key (None: absent), in one transaction."""
        if not keys:
            return {}
        if len(keys) > TXN_OPS_MAX:
            raise errors.InvalidArgument(f"{len(keys)} reads in one transaction; etcd takes at most {TXN_OPS_MAX}")
        resp = await self._txn([], [rpc.RequestOp(request_range=rpc.RangeRequest(key=k.encode())) for k in keys])
        return {k: _raw(answer) for k, answer in zip(keys, resp.responses, strict=True)}

    async def must_get(self, key: str, cls: type[M], what: str) -> Versioned[M]:
        """get, or NotFound naming `what`."""
        found = await self.get(key, cls)
        if found is None:
            raise errors.NotFound(f"{what} not found")
        return found

    async def page(self, prefix: str, cls: type[M], limit: int = 100, start_after: str = "") -> Page[M]:
        """One page of the records under `prefix`, in key order."""
        _check_token(prefix, start_after)
        await self._ready()
        p = prefix.encode()
        start = (start_after.encode() + b"\0") if start_after else p
        req = rpc.RangeRequest(key=start, range_end=_range_end(p), limit=limit)
        resp = await self._call(self._kv().Range(req, timeout=self.timeout))
        assert isinstance(resp, rpc.RangeResponse)
        items = [Versioned(kv.key.decode(), _decode(cls, kv.value, kv.key.decode()), kv.mod_revision)
                 for kv in resp.kvs]
        next_key = items[-1].key if resp.more and items else ""
        return Page(items, next_key)

    async def list_all(self, prefix: str, cls: type[M], size: int = 500) -> list[Versioned[M]]:
        out: list[Versioned[M]] = []
        after = ""
        while True:
            got = await self.page(prefix, cls, size, after)
            out.extend(got.items)
            if not got.next_key:
                return out
            after = got.next_key

    async def children(self, prefix: str, cls: type[M], limit: int = 100, start_after: str = "") -> Page[M]:
        """One page of the records directly under `prefix` (keys with no further '/'),
        jumping over each child's own subtree instead of reading it."""
        _check_token(prefix, start_after)
        await self._ready()
        p = prefix.encode()
        end = _range_end(p)
        start = (start_after.encode() + b"\0") if start_after else p
        items: list[Versioned[M]] = []
        while len(items) < limit:
            req = rpc.RangeRequest(key=start, range_end=end, limit=limit - len(items))
            resp = await self._call(self._kv().Range(req, timeout=self.timeout))
            assert isinstance(resp, rpc.RangeResponse)
            if not resp.kvs:
                return Page(items, "")
            for kv in resp.kvs:
                rest = kv.key[len(p):]
                if b"/" in rest:
                    # A grandchild: skip the whole subtree of that child in one jump.
                    start = _range_end(p + rest.split(b"/", 1)[0] + b"/")
                    break
                items.append(Versioned(kv.key.decode(), _decode(cls, kv.value, kv.key.decode()), kv.mod_revision))
                start = kv.key + b"\0"
            else:
                if not resp.more:
                    return Page(items, "")
        return Page(items, items[-1].key if items else "")

    async def snapshot(self, prefix: str, size: int = 1000) -> tuple[list[tuple[str, bytes, int]], int]:
        """Every (key, raw value, mod_revision) under `prefix` as of one revision, and that revision
        (so a watch from revision + 1 misses nothing and repeats nothing)."""
        await self._ready()
        p = prefix.encode()
        end = _range_end(p)
        start, revision = p, 0
        out: list[tuple[str, bytes, int]] = []
        while True:
            req = rpc.RangeRequest(key=start, range_end=end, limit=size, revision=revision)
            resp = await self._call(self._kv().Range(req, timeout=self.timeout))
            assert isinstance(resp, rpc.RangeResponse)
            revision = revision or int(resp.header.revision)
            out.extend((kv.key.decode(), bytes(kv.value), kv.mod_revision) for kv in resp.kvs)
            if not resp.more or not resp.kvs:
                return out, revision
            start = resp.kvs[-1].key + b"\0"

    async def count(self, prefix: str) -> int:
        await self._ready()
        p = prefix.encode()
        req = rpc.RangeRequest(key=p, range_end=_range_end(p), count_only=True)
        resp = await self._call(self._kv().Range(req, timeout=self.timeout))
        assert isinstance(resp, rpc.RangeResponse)
        return int(resp.count)

    # ------------------------------------------------------------- writes

    async def _txn(self, compare: list[rpc.Compare], success: list[rpc.RequestOp],
                   failure: Sequence[rpc.RequestOp] = ()) -> rpc.TxnResponse:
        await self._ready()
        resp = await self._call(self._kv().Txn(rpc.TxnRequest(compare=compare, success=success, failure=failure),
                                               timeout=self.timeout))
        assert isinstance(resp, rpc.TxnResponse)
        self.written = max(self.written, int(resp.header.revision))
        return resp

    async def create(self, key: str, value: Message, lease: Lease | None = None) -> int:
        """Write a new record; AlreadyExists when the key is taken. Returns its mod_revision."""
        cmp = rpc.Compare(key=key.encode(), target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0)
        resp = await self._txn([cmp], [_put_op(key, value, lease)])
        if not resp.succeeded:
            raise errors.AlreadyExists(f"{key.rsplit('/', 2)[-2].rstrip('s')} {key.rsplit('/', 1)[-1]!r} "
                                       "already exists")
        return int(resp.header.revision)

    async def create_and_read(self, key: str, value: Message, reads: Sequence[str]) -> Creation:
        """Write a new record and read other keys, in one transaction (one round trip, one
        revision): the reads see the store as the record was made. When the key is taken nothing
        is written, and the same transaction reads the record that holds it (and `reads`)."""
        if len(reads) + 2 > TXN_OPS_MAX:
            raise errors.InvalidArgument(f"{len(reads) + 2} operations in one transaction; "
                                         f"etcd takes at most {TXN_OPS_MAX}")
        cmp = rpc.Compare(key=key.encode(), target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0)
        ranges = [rpc.RequestOp(request_range=rpc.RangeRequest(key=k.encode())) for k in reads]
        resp = await self._txn([cmp], [_put_op(key, value, None), *ranges],
                               [rpc.RequestOp(request_range=rpc.RangeRequest(key=key.encode())), *ranges])
        wanted = list(reads) if resp.succeeded else [key, *reads]
        answers = resp.responses[1:] if resp.succeeded else resp.responses
        read = {k: _raw(answer) for k, answer in zip(wanted, answers, strict=True)}
        return Creation(bool(resp.succeeded), int(resp.header.revision), read)

    async def update(self, key: str, value: Message, mod_revision: int, lease: Lease | None = None) -> int:
        """Write over a record only if nobody wrote it since `mod_revision`; else Aborted."""
        cmp = rpc.Compare(key=key.encode(), target=rpc.Compare.MOD, result=rpc.Compare.EQUAL,
                          mod_revision=mod_revision)
        resp = await self._txn([cmp], [_put_op(key, value, lease)])
        if not resp.succeeded:
            raise errors.Aborted(f"{key} was changed concurrently; retry")
        return int(resp.header.revision)

    async def commit(self, creates: Sequence[tuple[str, Message]], updates: Sequence[tuple[str, Message, int]]) -> int:
        """New records and guarded updates in one transaction: all of it or none (Aborted).

        Each update is (key, value, mod_revision it was read at). etcd allows ~128 operations."""
        compare = [rpc.Compare(key=k.encode(), target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0)
                   for k, _ in creates]
        compare += [rpc.Compare(key=k.encode(), target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=rev)
                    for k, _, rev in updates]
        ops = [_put_op(k, v, None) for k, v in creates] + [_put_op(k, v, None) for k, v, _ in updates]
        resp = await self._txn(compare, ops)
        if not resp.succeeded:
            raise errors.Aborted("records changed or appeared concurrently; retry")
        return int(resp.header.revision)

    async def put_and_get(self, puts: Sequence[tuple[str, Message]], gets: Sequence[str],
                          cls: type[M]) -> tuple[int, dict[str, Versioned[M]]]:
        """Unconditional writes and single-key reads in one transaction: one round trip and one
        revision for many records (the reads see the writes). Returns the revision and what the
        reads found. The keys written must differ; etcd takes at most TXN_OPS_MAX operations."""
        if len(puts) + len(gets) > TXN_OPS_MAX:
            raise errors.InvalidArgument(f"{len(puts) + len(gets)} operations in one transaction; "
                                         f"etcd takes at most {TXN_OPS_MAX}")
        ops = [_put_op(k, v, None) for k, v in puts]
        ops += [rpc.RequestOp(request_range=rpc.RangeRequest(key=k.encode())) for k in gets]
        resp = await self._txn([], ops)
        found: dict[str, Versioned[M]] = {}
        for key, answer in zip(gets, resp.responses[len(puts):], strict=True):
            kvs = answer.response_range.kvs
            if kvs:
                found[key] = Versioned(key, _decode(cls, kvs[0].value, key), kvs[0].mod_revision)
        return int(resp.header.revision), found

    async def put(self, key: str, value: Message, lease: Lease | None = None) -> int:
        """Write unconditionally (last writer wins)."""
        limits.check_record(key, value)
        await self._ready()
        req = rpc.PutRequest(key=key.encode(), value=value.SerializeToString(), lease=lease.id if lease else 0)
        resp = await self._call(self._kv().Put(req, timeout=self.timeout))
        assert isinstance(resp, rpc.PutResponse)
        self.written = max(self.written, int(resp.header.revision))
        return int(resp.header.revision)

    async def delete(self, key: str, mod_revision: int | None = None) -> bool:
        """Delete a record; with `mod_revision`, only if unchanged (else Aborted)."""
        op = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key.encode()))
        cmp = []
        if mod_revision is not None:
            cmp = [rpc.Compare(key=key.encode(), target=rpc.Compare.MOD, result=rpc.Compare.EQUAL,
                               mod_revision=mod_revision)]
        resp = await self._txn(cmp, [op])
        if not resp.succeeded:
            raise errors.Aborted(f"{key} was changed concurrently; retry")
        return bool(resp.responses[0].response_delete_range.deleted)

    async def delete_prefix(self, prefix: str) -> int:
        await self._ready()
        p = prefix.encode()
        req = rpc.DeleteRangeRequest(key=p, range_end=_range_end(p))
        resp = await self._call(self._kv().DeleteRange(req, timeout=self.timeout))
        assert isinstance(resp, rpc.DeleteRangeResponse)
        self.written = max(self.written, int(resp.header.revision))
        return int(resp.deleted)

    async def modify(self, key: str, cls: type[M], change: Callable[[M], M | None], what: str,
                     attempts: int = 20) -> M:
        """Read-modify-write under compare-and-swap, retried on a lost race.

        `change` gets a copy of the record and returns the new one (None: leave it)."""
        return (await self.modify_versioned(key, cls, change, what, attempts)).value

    async def modify_versioned(self, key: str, cls: type[M], change: Callable[[M], M | None], what: str,
                               attempts: int = 20) -> Versioned[M]:
        """`modify`, also telling the revision the record now has (for a writer's own cache)."""
        for _ in range(attempts):
            cur = await self.must_get(key, cls, what)
            new = change(cur.value)
            if new is None:
                return cur
            try:
                return Versioned(key, new, await self.update(key, new, cur.mod_revision))
            except errors.Aborted:
                await asyncio.sleep(0.005)
        raise errors.Aborted(f"{what} is being changed by many writers at once; retry")

    # -------------------------------------------------------------- leases

    async def grant_lease(self, ttl: int) -> Lease:
        await self._ready()
        resp = await self._call(self._lease_stub().LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl), timeout=self.timeout))
        assert isinstance(resp, rpc.LeaseGrantResponse)
        return Lease(self, int(resp.ID), ttl)

    async def _keepalive_once(self, lease_id: int) -> int:
        await self._ready()

        async def once() -> int:
            call = self._lease_stub().LeaseKeepAlive(iter([rpc.LeaseKeepAliveRequest(ID=lease_id)]),
                                                     timeout=self.timeout)
            try:
                async for reply in call:
                    return int(reply.TTL)
                return 0
            finally:
                call.cancel()

        result = await self._call(once())
        assert isinstance(result, int)
        return result

    # ------------------------------------------------------------- watches

    async def watch(self, prefix: str, start_revision: int = 0, exact: bool = False) -> AsyncIterator[WatchEvent]:
        """Events under `prefix` (`exact`: of that one key only) from `start_revision` on; resumes where
        it left off after etcd goes away and comes back. Compaction past the resume point raises Aborted."""
        next_rev = start_revision
        delay = 0.1
        while True:
            target = self.target
            try:
                await self._ready()
                if self._watch_stub is None:
                    assert self._channel is not None
                    self._watch_stub = rpc_pb2_grpc.WatchStub(self._channel)
                p = prefix.encode()
                create = rpc.WatchCreateRequest(key=p, range_end=b"" if exact else _range_end(p),
                                                start_revision=next_rev)
                call = self._watch_stub.Watch(iter([rpc.WatchRequest(create_request=create)]))
                async for resp in call:
                    if resp.compact_revision:
                        raise errors.Aborted(f"watch of {prefix} fell behind compaction at {resp.compact_revision}")
                    if resp.canceled:
                        break
                    delay = 0.1
                    for ev in resp.events:
                        next_rev = ev.kv.mod_revision + 1
                        value = None if ev.type == rpc.Event.DELETE else bytes(ev.kv.value)
                        yield WatchEvent(ev.kv.key.decode(), value, ev.kv.mod_revision)
            except grpc.aio.AioRpcError as err:
                if err.code() is grpc.StatusCode.UNAVAILABLE:
                    self._next_member(target)
                log.warning("watch interrupted; resuming", extra={"prefix": prefix, "error": str(err)[:200]})
            except errors.Unavailable as err:
                log.warning("watch interrupted; resuming", extra={"prefix": prefix, "error": str(err)[:200]})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def revision(self) -> int:
        """The store's current revision (to start a watch right after a list)."""
        await self._ready()
        resp = await self._call(self._kv().Range(rpc.RangeRequest(key=b"\0", limit=1), timeout=self.timeout))
        assert isinstance(resp, rpc.RangeResponse)
        return int(resp.header.revision)


_closing: set[asyncio.Task[None]] = set()


def _close_soon(ch: grpc.aio.Channel) -> None:
    task = asyncio.ensure_future(ch.close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


def _targets(members: list[str]) -> list[str]:
    """Channel targets for etcd members: one for all when they are IPv4 literals, else one each."""
    try:
        target_of(",".join(members))
    except ValueError:
        return members
    return [",".join(members)]


def _check_token(prefix: str, start_after: str) -> None:
    """A page token is the last key of the page before: it must be a key of this very list."""
    if start_after and (not start_after.startswith(prefix) or start_after == prefix):
        raise errors.InvalidArgument.field("page_token", "is not a token of this list; "
                                                         "pass the next_page_token this list returned")


def _too_large(err: grpc.aio.AioRpcError) -> bool:
    """etcd's 'request is too large', or its gRPC server's 'received message larger than max'."""
    details = (err.details() or "").lower()
    return err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED or "too large" in details or "larger than max" in details


def _raw(answer: rpc.ResponseOp) -> tuple[bytes, int] | None:
    """What one range of a transaction found: (value, mod_revision), or None."""
    kvs = answer.response_range.kvs
    return (bytes(kvs[0].value), int(kvs[0].mod_revision)) if kvs else None


def _put_op(key: str, value: Message, lease: Lease | None) -> rpc.RequestOp:
    limits.check_record(key, value)
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key.encode(), value=value.SerializeToString(),
                                                    lease=lease.id if lease else 0))


def _decode(cls: type[M], raw: bytes, key: str) -> M:
    try:
        return cls.FromString(raw)
    except DecodeError as err:
        raise errors.Internal(f"record {key} is not a {cls.__name__}") from err
