"""Polling: VMs on their way somewhere are looked up in spider, one listing per connection.

The reconciler keeps the set of VMs worth polling as their records change (`decisions.needs_poll`),
so a poll costs the VMs that move, not a scan of every VM; now and then (`resync_interval_s`) every
VM is looked up and every MCIS gets a full pass, to catch what the cloud did on its own.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterable

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as spb
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services.controller.slices import TimeSlice
from tumblebug.mcis import decisions
from tumblebug.mcis.actions import VmWrites, set_fields
from tumblebug.mcis.writes import Change
from tumblebug.settings import TumblebugSettings
from tumblebug.spider_client import Spider

PAGE = 1000
# Write at most this many changes at once.
WAVE = 1000


class Poller:
    """Looks up the watched VMs every `poll_interval_s`; all of them every `resync_interval_s`."""

    def __init__(self, spider: Spider, settings: TumblebugSettings, writes: VmWrites,
                 watched: Callable[[bool], Iterable[tuple[str, pb.McisVm]]], inflight: Callable[[str], bool],
                 resync: Callable[[], None]) -> None:
        self.spider = spider
        self.settings = settings
        self.writes = writes
        self.watched = watched  # (full) → the VMs to look up now
        self.inflight = inflight
        self.resync = resync  # a full pass over every MCIS

    async def run(self) -> None:
        last_full = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            full = time.monotonic() - last_full > self.settings.resync_interval_s
            if full:
                last_full = time.monotonic()
                self.resync()
            by_conn: dict[str, list[tuple[str, pb.McisVm]]] = {}
            turn = TimeSlice()  # a full look over many VMs must not stall the loop
            for key, vm in self.watched(full):
                if not self.inflight(key) and decisions.needs_poll(vm, full):
                    by_conn.setdefault(vm.connection, []).append((key, vm))
                await turn.tick()
            await asyncio.gather(*(self.poll_connection(c, items) for c, items in by_conn.items()),
                                 return_exceptions=True)

    async def poll_connection(self, connection: str, items: list[tuple[str, pb.McisVm]]) -> None:
        seen: dict[str, spb.Vm] = {}
        token = ""
        while True:
            page = await self.spider.call(self.spider.stub.ListVms, spb.ListResourcesRequest(
                connection=connection, page_size=PAGE, page_token=token))
            seen.update((v.iid.name, v) for v in page.vms)
            token = page.next_page_token
            if not token:
                break
        changes: list[tuple[str, Change]] = []
        turn = TimeSlice()
        for key, vm in items:
            await turn.tick()
            cloud = seen.get(vm.iid.name)
            if cloud is None:
                if decisions.ask_again(vm) and not self.inflight(key):
                    # Asked, but spider never recorded it (we stopped before the call reached it,
                    # or spider dropped an intent the cloud never acted on): ask again, same request ID.
                    # Checked again when written: a create sent since the listing is not undone.
                    changes.append((key, functools.partial(self._ask_again, key)))
                continue
            if cloud.meta.phase != common.PHASE_READY:
                continue
            if (cloud.status, cloud.private_ip, cloud.iid.csp_id, cloud.ssh_access_point) != \
                    (vm.status, vm.private_ip, vm.iid.csp_id, vm.ssh_access_point):
                changes.append((key, functools.partial(decisions.observe, seen=cloud)))
        # All at once: the writes share transactions (the reconciler's group commit).
        for i in range(0, len(changes), WAVE):
            await asyncio.gather(*(self.writes.write_vm(key, change) for key, change in changes[i:i + WAVE]))

    def _ask_again(self, key: str, vm: pb.McisVm) -> pb.McisVm | None:
        """Clear `requested`, so the reconciler sends the create again, unless the VM moved on or a
        call for it is in flight now."""
        if not decisions.ask_again(vm) or self.inflight(key):
            return None
        return set_fields(vm, requested=False)
