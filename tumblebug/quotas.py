"""Per-namespace quotas: how many VMs, vCPUs and MCIS a namespace's MCIS may ask for.

Use is what the MCIS records ask for (the sum of subgroup sizes, and of size × the spec's vCPUs),
not what runs now: a request is judged against what the namespace will hold once it is done, and
use never drifts from the records (nothing is counted up and down beside them).

Every write that adds to a namespace's use commits together with its quota record
(`keyspace.quota(ns)`), whose `serial` it bumps, guarded by the revision read before the use was
counted. Two requests that both fit only alone cannot both commit: the second loses the
compare-and-swap, counts again, and is refused. Writes that only lower use need no guard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.store import Store
from tumblebug import keyspace

ATTEMPTS = 30
DIMENSIONS = ("vms", "vcpus", "mcis")


@dataclass(frozen=True)
class Defaults:
    """The limits of a namespace that set none of its own (-1 = unlimited)."""

    vms: int
    vcpus: int
    mcis: int


def used_by(mcis: pb.Mcis | None) -> pb.QuotaUsage:
    """What one MCIS record asks of its namespace's quota."""
    if mcis is None:
        return pb.QuotaUsage()
    return pb.QuotaUsage(vms=sum(sg.size for sg in mcis.subgroups),
                         vcpus=sum(sg.size * sg.vcpu for sg in mcis.subgroups), mcis=1)


def _plus(a: pb.QuotaUsage, b: pb.QuotaUsage) -> pb.QuotaUsage:
    return pb.QuotaUsage(vms=a.vms + b.vms, vcpus=a.vcpus + b.vcpus, mcis=a.mcis + b.mcis)


class Quotas:
    """Limits per namespace, their use, and writes of MCIS records admitted against them."""

    def __init__(self, store: Store, defaults: Defaults) -> None:
        self.store = store
        self.defaults = defaults

    def limits(self, record: pb.QuotaRecord | None) -> pb.QuotaLimits:
        """The limits in force: the namespace's own where set, else the defaults."""
        out = pb.QuotaLimits(vms=self.defaults.vms, vcpus=self.defaults.vcpus, mcis=self.defaults.mcis)
        if record is not None:
            for dim in DIMENSIONS:
                if record.limits.HasField(dim):
                    setattr(out, dim, getattr(record.limits, dim))
        return out

    async def usage(self, ns: str, skip: str = "") -> pb.QuotaUsage:
        """What the namespace's MCIS ask for (all but `skip`)."""
        total = pb.QuotaUsage()
        after = ""
        while True:
            page = await self.store.children(keyspace.mcis_prefix(ns), pb.Mcis, 500, after)
            for item in page.items:
                if item.value.name != skip:
                    total = _plus(total, used_by(item.value))
            if not page.next_key:
                return total
            after = page.next_key

    async def get(self, ns: str) -> pb.NamespaceQuota:
        found = await self.store.get(keyspace.quota(ns), pb.QuotaRecord)
        return pb.NamespaceQuota(namespace=ns, limits=self.limits(found.value if found else None),
                                 usage=await self.usage(ns))

    async def update(self, ns: str, limits: pb.QuotaLimits) -> pb.NamespaceQuota:
        """Set the limits given (the others keep theirs)."""
        for dim in DIMENSIONS:
            if limits.HasField(dim) and getattr(limits, dim) < -1:
                raise errors.InvalidArgument.field(f"quota.{dim}", "must be -1 (unlimited) or more")

        def change(rec: pb.QuotaRecord) -> pb.QuotaRecord:
            rec.limits.MergeFrom(limits)
            return rec

        key = keyspace.quota(ns)
        for _ in range(ATTEMPTS):
            found = await self.store.get(key, pb.QuotaRecord)
            try:
                if found is None:
                    await self.store.create(key, change(pb.QuotaRecord()))
                else:
                    await self.store.update(key, change(found.value), found.mod_revision)
                return await self.get(ns)
            except (errors.Aborted, errors.AlreadyExists):
                await asyncio.sleep(0.005)
        raise errors.Aborted(f"the quota of namespace {ns!r} is being changed by many writers at once; retry")

    async def forget(self, ns: str) -> None:
        await self.store.delete(keyspace.quota(ns))

    async def check(self, ns: str, extra: pb.QuotaUsage) -> None:
        """Whether `extra` more would fit now (unguarded: for refusing before anything is made;
        `write` decides)."""
        guard = await self.store.get(keyspace.quota(ns), pb.QuotaRecord)
        grows = [d for d in DIMENSIONS if getattr(extra, d) > 0]
        if grows:
            self._check(ns, self.limits(guard.value if guard else None), await self.usage(ns),
                        pb.QuotaUsage(), extra, grows)

    async def write(self, ns: str, name: str, change: Callable[[pb.Mcis | None], pb.Mcis | None],
                    what: str) -> pb.Mcis:
        """Create or change the MCIS record `name` with `change` (it gets a copy of the record, or
        None when there is none, and returns the new one, or None to leave it), refused with
        RESOURCE_EXHAUSTED when that would take the namespace over a limit it is not already over."""
        key, quota_key = keyspace.mcis(ns, name), keyspace.quota(ns)
        for attempt in range(ATTEMPTS):
            guard = await self.store.get(quota_key, pb.QuotaRecord)  # read before use is counted
            current = await self.store.get(key, pb.Mcis)
            old = current.value if current is not None else None
            copy = None
            if old is not None:
                copy = pb.Mcis()
                copy.CopyFrom(old)
            new = change(copy)
            if new is None:
                assert old is not None
                return old
            mine_before, mine_after = used_by(old), used_by(new)
            grows = [d for d in DIMENSIONS if getattr(mine_after, d) > getattr(mine_before, d)]
            creates: list[tuple[str, pb.Mcis | pb.QuotaRecord]] = []
            updates: list[tuple[str, pb.Mcis | pb.QuotaRecord, int]] = []
            if current is None:
                creates.append((key, new))
            else:
                updates.append((key, new, current.mod_revision))
            if grows:
                others = await self.usage(ns, skip=name)
                self._check(ns, self.limits(guard.value if guard else None), others, mine_before, mine_after, grows)
                record = pb.QuotaRecord()
                if guard is not None:
                    record.CopyFrom(guard.value)
                record.serial += 1
                if guard is None:
                    creates.append((quota_key, record))
                else:
                    updates.append((quota_key, record, guard.mod_revision))
            try:
                await self.store.commit(creates, updates)
                return new
            except errors.Aborted:
                await asyncio.sleep(0.002 * (attempt + 1))
        raise errors.Aborted(f"{what} is being changed by many writers at once; retry")

    @staticmethod
    def _check(ns: str, limits: pb.QuotaLimits, others: pb.QuotaUsage, before: pb.QuotaUsage,
               after: pb.QuotaUsage, grows: list[str]) -> None:
        for dim in grows:
            limit = getattr(limits, dim)
            in_use = getattr(others, dim) + getattr(before, dim)
            wanted = getattr(others, dim) + getattr(after, dim)
            if limit >= 0 and wanted > limit:
                raise errors.ResourceExhausted(
                    f"quota {dim} of namespace {ns!r} exceeded: {in_use:,} in use, this request asks "
                    f"{wanted - in_use:,} more, the limit is {limit:,} (raise it with UpdateNamespaceQuota "
                    f"or PATCH /tumblebug/v1/namespaces/{ns}/quota)")
