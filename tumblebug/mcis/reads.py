"""Reads of MCIS and VM records, with each VM's agent status filled from dragonfly."""

from __future__ import annotations

from typing import Protocol

from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.paging import page_size
from services.store import Informer, Store
from tumblebug import keyspace
from tumblebug.mcis.agents import agent_wanted
from tumblebug.monitoring import Monitoring
from tumblebug.namespaces import Namespaces


class McisView(Protocol):
    """The leader's in-memory copy of the MCIS records (the reconciler's informer)."""

    def read_mcis(self, ns: str, name: str, floor: int, with_vms: bool) -> pb.Mcis | None:
        """A copy of the MCIS (with its VMs, in key order, if asked), or None when the copy may be
        older than revision `floor` or does not hold the MCIS: then the store is asked."""
        ...


def cached_mcis(informer: Informer | None, ns: str, name: str, floor: int) -> pb.Mcis | None:
    """A copy of the MCIS record an informer holds, once it has seen revision `floor`; else None."""
    if informer is None or not informer.synced.is_set() or informer.seen < floor:
        return None
    entry = informer.cache.get(keyspace.mcis(ns, name))
    if entry is None:
        return None
    out = pb.Mcis()
    out.CopyFrom(entry.value)  # type: ignore[arg-type]
    return out


class McisReads:
    """GetMcis, ListMcis, ListMcisVms, GetMcisVm."""

    def __init__(self, store: Store, namespaces: Namespaces, monitoring: Monitoring) -> None:
        self.store = store
        self.namespaces = namespaces
        self.monitoring = monitoring
        # Set while this replica leads (its reconciler's cache); GetMcis is then served from memory.
        self.view: McisView | None = None

    async def get(self, ns: str, name: str, with_vms: bool = False) -> pb.Mcis:
        # From the leader's cache when it has seen every write this replica's API made (so a
        # client reads its own writes); a write by another replica shows once the watch brings it.
        view = self.view
        cached = view.read_mcis(ns, name, self.store.written, with_vms) if view is not None else None
        if cached is not None:
            mcis = cached
        else:
            found = await self.store.must_get(keyspace.mcis(ns, name), pb.Mcis, f"MCIS {name!r} in namespace {ns!r}")
            mcis = found.value
            if with_vms:
                mcis.vms.extend(v.value for v in await self.store.list_all(keyspace.vms(ns, name), pb.McisVm))
        if with_vms:
            await self._agents(ns, mcis, list(mcis.vms))
        return mcis

    async def page(self, ns: str, size: int, token: str) -> tuple[list[pb.Mcis], str]:
        await self.namespaces.get(ns)
        page = await self.store.children(keyspace.mcis_prefix(ns), pb.Mcis, page_size(size), token)
        return [i.value for i in page.items], page.next_key

    async def list_vms(self, ns: str, mcis: str, size: int, token: str) -> tuple[list[pb.McisVm], str]:
        head = await self.get(ns, mcis)
        page = await self.store.page(keyspace.vms(ns, mcis), pb.McisVm, page_size(size), token)
        vms = [i.value for i in page.items]
        await self._agents(ns, head, vms)
        return vms, page.next_key

    async def get_vm(self, ns: str, mcis: str, name: str) -> pb.McisVm:
        head = await self.get(ns, mcis)
        found = await self.store.must_get(keyspace.vm(ns, mcis, name), pb.McisVm, f"VM {name!r} in MCIS {mcis!r}")
        await self._agents(ns, head, [found.value])
        return found.value

    async def _agents(self, ns: str, mcis: pb.Mcis, vms: list[pb.McisVm]) -> None:
        """Fill each VM's agent status from dragonfly's heartbeats (read now, not stored)."""
        if not agent_wanted(mcis) or not self.monitoring.enabled:
            for vm in vms:
                vm.agent_status = "None"
            return
        try:
            health = await self.monitoring.health(ns, mcis.name)
        except errors.DomainError:
            health = {}
            for vm in vms:
                vm.agent_status = "Unknown"
            return
        for vm in vms:
            vm.agent_status = health.get(vm.name, "Pending")

