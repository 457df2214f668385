"""An informer: an in-memory copy of everything under a prefix, kept current by a watch.

A reconciler reads its world from here instead of listing etcd on every pass,
and learns of each change as it happens (the pattern of Kubernetes' informers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from google.protobuf.message import Message

from services import errors
from services.store.etcd import Store

log = logging.getLogger("informer")


@dataclass
class Entry:
    value: Message
    mod_revision: int


class Informer:
    """Cache of `prefix`; `decode(key, raw)` picks the message type by key (None: ignore the key)."""

    def __init__(self, store: Store, prefix: str, decode: Callable[[str, bytes], Message | None],
                 on_change: Callable[[str], None], group_of: Callable[[str], str] | None = None,
                 own: Callable[[str], bool] | None = None) -> None:
        self.store = store
        self.prefix = prefix
        self.decode = decode
        self.on_change = on_change
        self.cache: dict[str, Entry] = {}
        # Keys by group (e.g. the VMs of one MCIS), so a reader of one group never scans them all.
        self.group_of = group_of or (lambda _key: "")
        self.groups: dict[str, dict[str, Entry]] = {}
        # For a writer whose own writes are most of what it watches: its own writes' events are
        # neither decoded again nor passed on. An event is its own when the cache holds that version
        # already (taken in with `wrote`), or when `own(key)` says a write of that key by this
        # process is in flight (its event may come before the write's answer). Such a writer must
        # take in every write it makes with `wrote`, and read the record afresh if its write lost.
        self.own = own
        self._task: asyncio.Task[None] | None = None
        self.synced = asyncio.Event()
        # The revision up to which the cache has taken in every change under its prefix.
        self.seen = 0

    async def start(self) -> None:
        """Fill the cache (retrying while the store is away), then follow the watch."""
        while True:
            try:
                items, revision = await self.store.snapshot(self.prefix)
                break
            except errors.Unavailable:
                await asyncio.sleep(0.5)
        for key, raw, rev in items:
            self._apply(key, raw, rev)
        self.seen = revision
        self.synced.set()
        self._task = asyncio.create_task(self._follow(revision + 1))

    async def _follow(self, revision: int) -> None:
        while True:
            try:
                async for ev in self.store.watch(self.prefix, revision):
                    revision = ev.revision + 1
                    if self.own is None or not self._echo(ev.key, ev.value, ev.revision):
                        self._apply(ev.key, ev.value, ev.revision)
                        self.on_change(ev.key)
                    self.seen = ev.revision
            except errors.Aborted:
                # Fell behind compaction: start over from a fresh snapshot.
                log.warning("informer resync", extra={"prefix": self.prefix})
                items, revision = await self.store.snapshot(self.prefix)
                fresh = {k for k, _, _ in items}
                for key in [k for k in self.cache if k not in fresh]:
                    self.cache.pop(key, None)
                    self.on_change(key)
                for key, raw, rev in items:
                    self._apply(key, raw, rev)
                    self.on_change(key)
                self.seen = revision
                revision += 1

    def _echo(self, key: str, raw: bytes | None, revision: int) -> bool:
        """This process wrote this version (deletions are always taken in)."""
        if raw is None:
            return False
        held = self.cache.get(key)
        return (held is not None and held.mod_revision >= revision) or (self.own is not None and self.own(key))

    def _apply(self, key: str, raw: bytes | None, revision: int) -> None:
        if raw is None:
            self.cache.pop(key, None)
            self.groups.get(self.group_of(key), {}).pop(key, None)
            return
        value = self.decode(key, raw)
        if value is not None:
            self.wrote(key, value, revision)

    def wrote(self, key: str, value: Message, revision: int) -> None:
        """Take in a record at `revision` (from the watch, or from this process's own write, so it
        reads what it wrote at once); an older revision never replaces a newer one."""
        held = self.cache.get(key)
        if held is not None and held.mod_revision > revision:
            return
        entry = Entry(value, revision)
        self.cache[key] = entry
        self.groups.setdefault(self.group_of(key), {})[key] = entry

    def forgot(self, key: str) -> None:
        """This process deleted `key`."""
        self.cache.pop(key, None)
        self.groups.get(self.group_of(key), {}).pop(key, None)

    def group(self, name: str) -> list[tuple[str, Entry]]:
        """The cached entries of one group."""
        return list(self.groups.get(name, {}).items())

    def under(self, prefix: str) -> Iterator[tuple[str, Entry]]:
        """Cached entries whose key starts with `prefix` (a scan: prefer `group`)."""
        for key, entry in list(self.cache.items()):
            if key.startswith(prefix):
                yield key, entry

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
