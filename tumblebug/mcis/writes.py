"""VM record writes in groups: many compare-and-swap changes, one etcd transaction.

Every step of every VM ends in a write of its record ("asked", then what the cloud said), so a
build of thousands of VMs is thousands of writes, and one transaction (one raft entry, one
fsync) per write makes etcd the bottleneck. Writers here wait for a commit of their own change,
exactly as with a single write, but the changes that arrive while a transaction is in flight go
together in the next one (group commit): one writer alone waits one round trip, many writers
share each transaction.

Each change is applied to the version the reconciler's cache holds and guarded by its
`mod_revision`, so a group is all-or-nothing like any compare-and-swap. A group that loses a
race (some record moved on without the cache knowing yet) is written again one record at a
time, each reading afresh: the slow path, taken only when another writer was there first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.proto_time import now
from services.store import Informer, Store
from services.tasks import cancel_tasks

Change = Callable[[pb.McisVm], "pb.McisVm | None"]
# Records per transaction (etcd allows 128 operations in one by default), and transactions in flight
# at once (etcd puts concurrent ones into one raft batch; one at a time would pace a big build by the
# round trip).
GROUP = 100
IN_FLIGHT = 4


@dataclass
class _Pending:
    key: str
    change: Change
    done: asyncio.Future[pb.McisVm | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupWriter:
    """Writes changes of VM records in groups; `wrote(key, value, revision)` is told of each one."""

    def __init__(self, store: Store, cache: Callable[[], Informer],
                 wrote: Callable[[str, pb.McisVm, int], None], group: int = GROUP) -> None:
        self.store = store
        self.cache = cache
        self.wrote = wrote
        self.group = group
        self._pending: list[_Pending] = []
        self._flushers: set[asyncio.Task[None]] = set()
        self._taken: set[str] = set()  # keys in a group being written (one group per key at a time)
        self.transactions = 0  # groups committed (for tests and metrics)
        # Keys with a write in flight: the informer takes their events for this writer's own.
        self.busy: set[str] = set()

    async def write(self, key: str, change: Change) -> pb.McisVm | None:
        """Apply `change` to the record at `key` (a copy; None: leave it) and commit it. Returns the
        record written, or None when `change` left it or the record is gone."""
        item = _Pending(key, change)
        self._pending.append(item)
        # A flusher that found nothing to take has finished (its task is done, even if not yet dropped
        # from the set); one still running takes this change once its group is written.
        if sum(not task.done() for task in self._flushers) < IN_FLIGHT:
            task = asyncio.create_task(self._flush())
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        return await asyncio.shield(item.done)  # a cancelled writer does not cancel the group

    async def close(self) -> None:
        """Stop (a leadership term ends): writers still waiting get CancelledError."""
        await cancel_tasks(list(self._flushers))
        for item in self._pending:
            if not item.done.done():
                item.done.cancel()
        self._pending.clear()

    def _take(self) -> list[_Pending]:
        """The next group: up to `group` keys no other group holds, every pending change of each
        (in order: they go into one version of the record)."""
        batch: list[_Pending] = []
        keys: set[str] = set()
        rest: list[_Pending] = []
        for item in self._pending:
            if item.key in keys or (len(keys) < self.group and item.key not in self._taken):
                keys.add(item.key)
                batch.append(item)
            else:
                rest.append(item)
        self._pending = rest
        self._taken |= keys
        return batch

    async def _flush(self) -> None:
        while batch := self._take():
            try:
                await self._commit(batch)
            except asyncio.CancelledError:
                for item in batch:
                    if not item.done.done():
                        item.done.cancel()
                raise
            except Exception as err:  # whatever went wrong, no writer is left waiting
                for item in batch:
                    _fail(item, err)
            finally:
                self._taken.difference_update(item.key for item in batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        cache = self.cache().cache
        stamp = now()
        new: dict[str, tuple[pb.McisVm, int]] = {}
        results: list[tuple[_Pending, pb.McisVm | None]] = []
        slow: list[_Pending] = []
        for item in batch:
            if item.key in new:
                current, rev = new[item.key]
            else:
                entry = cache.get(item.key)
                if entry is None:
                    slow.append(item)  # not cached: read it afresh
                    continue
                current = pb.McisVm()
                current.CopyFrom(entry.value)  # type: ignore[arg-type]
                rev = entry.mod_revision
            try:
                changed = item.change(current)
            except Exception as err:  # a bad change fails its own writer, not the group
                _fail(item, err)
                continue
            if changed is not None:
                changed.update_time.CopyFrom(stamp)
                new[item.key] = (changed, rev)
            results.append((item, changed))
        if new:
            self.busy.update(new)
            try:
                revision = await self.store.commit([], [(k, v, rev) for k, (v, rev) in new.items()])
            except errors.Aborted:
                # Some record moved on unseen: each change again, one record at a time, read afresh.
                slow.extend(item for item, _ in results)
                results = []
            except errors.DomainError as err:
                for item, _ in results:
                    _fail(item, err)
                results = []
            else:
                self.transactions += 1
                for key, (value, _) in new.items():
                    self.wrote(key, value, revision)
            finally:
                self.busy.difference_update(new)
        for item, changed in results:
            if not item.done.done():
                item.done.set_result(changed)
        if slow:
            # One key's changes stay in order; different keys go at once.
            by_key: dict[str, list[_Pending]] = {}
            for item in slow:
                by_key.setdefault(item.key, []).append(item)
            await asyncio.gather(*(self._one_by_one(items) for items in by_key.values()))

    async def _one_by_one(self, items: list[_Pending]) -> None:
        self.busy.add(items[0].key)
        try:
            for item in items:
                await self._one(item)
        finally:
            self.busy.discard(items[0].key)

    async def _one(self, item: _Pending) -> None:
        applied: list[pb.McisVm] = []

        def stamped(vm: pb.McisVm) -> pb.McisVm | None:
            out = item.change(vm)
            if out is not None:
                out.update_time.CopyFrom(now())
                applied.append(out)
            return out

        result: pb.McisVm | None = None
        try:
            written = await self.store.modify_versioned(item.key, pb.McisVm, stamped, item.key)
        except errors.NotFound:
            pass
        except errors.DomainError as err:
            _fail(item, err)
            return
        else:
            # The version read is news to the cache too when the change left it alone.
            self.wrote(item.key, written.value, written.mod_revision)
            result = written.value if applied and written.value is applied[-1] else None
        if not item.done.done():
            item.done.set_result(result)


def _fail(item: _Pending, err: BaseException) -> None:
    if not item.done.done():
        item.done.set_exception(err)
