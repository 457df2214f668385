"""Benchmark campaigns: measure the catalog specs that have no (or stale) results, without manual work.

A campaign is one record, `/cb/tumblebug/campaigns/{name}` (`BenchmarkCampaign`), holding its steps:
one per spec, each a short-lived minimal MCIS (one VM with an agent) in namespace `cb-benchmarks`,
benchmarked, then deleted. The elected leader drives every running campaign, `parallel` steps at a
time. Crash safety follows the MCIS's own rule, intent before action:

    pending ──(CAS: reserve 1 VM and its money, state creating)──▶ creating ──▶ CreateMcisDynamic
      (name and request ID follow from campaign and step, so a repeat returns the same MCIS)
    ──▶ benchmarking ──▶ (CAS: deleting) ──▶ DeleteMcis, wait until gone ──▶ done | failed

A leader that restarts picks every step up where its record says: a `creating` step creates again
(the same request: no second MCIS), `benchmarking` benchmarks again, `deleting` deletes again. VMs
are made only by the MCIS reconciler from MCIS records, which already guarantees a record for every
cloud VM and no VM twice. The budget is reserved in the same write that says `creating`, so a crash
cannot spend it twice: money = price per hour × `vm_lifetime_s` (a VM lives at most that long).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from cbapi.common.v1 import common_pb2 as common
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.names import check_name
from services.paging import page_size
from services.store import Store
from tumblebug.benchmarks import Benchmarker, timestamp
from tumblebug.catalog import Catalog
from tumblebug.mcis.service import McisService
from tumblebug.namespaces import Namespaces
from tumblebug.placement.filters import FILTERS, passing
from tumblebug.placement_service import PlacementService, pick_image, requirements

log = logging.getLogger("tumblebug.campaigns")

PREFIX = "/cb/tumblebug/campaigns/"
NAMESPACE = "cb-benchmarks"
MAX_STEPS = 1000
ACTIVE = ("creating", "benchmarking", "deleting")
FINAL = ("done", "failed", "skipped")


def key(name: str) -> str:
    return PREFIX + name


def step_mcis(campaign: str, i: int) -> str:
    return f"bench-{campaign[:40]}-{i}"


def now_ts() -> Timestamp:
    return timestamp(time.time())


class Cancelled(Exception):
    """The campaign was cancelled while a step waited for its VM."""


class Campaigns:
    """Start, read and (in the leader) drive benchmark campaigns."""

    def __init__(self, store: Store, namespaces: Namespaces, mcis: McisService, placement: PlacementService,
                 benchmarker: Benchmarker, catalog: Catalog, poll_s: float = 0.5) -> None:
        self.store = store
        self.namespaces = namespaces
        self.mcis = mcis
        self.placement = placement
        self.benchmarker = benchmarker
        self.catalog = catalog
        self.poll_s = poll_s
        self._driving: dict[str, asyncio.Task[None]] = {}

    # ---------------------------------------------------------------- API

    async def start(self, c: pb.BenchmarkCampaign) -> pb.BenchmarkCampaign:
        """Record a campaign with a step per spec to measure; the leader does the rest."""
        check_name(c.name, "campaign.name")
        if c.max_vms < 0 or c.max_cost < 0 or c.parallel < 0 or c.stale_after_s < 0 or c.vm_lifetime_s < 0:
            raise errors.InvalidArgument.field("campaign", "limits must not be negative")
        if not c.max_vms and not c.max_cost:
            raise errors.InvalidArgument.field("campaign.max_vms", "a campaign needs a budget: max_vms and/or "
                                                                   "max_cost")
        await self.catalog.include(c.requirements.connections)
        snap = await self.placement.snapshot()
        table = snap.table
        chosen = [f for f in FILTERS.choose(FILTERS.names(), "filters") if f.name != "performance"]
        mask = passing(table, requirements(c.requirements), chosen) & (table.price > 0)
        perf = table.metric("cpu_multi")
        old = perf.measured_at < (time.time() - c.stale_after_s) if c.stale_after_s else np.zeros(len(table), bool)
        rows = np.flatnonzero(mask & (perf.estimated | old))
        rows = rows[np.lexsort((rows, table.price[rows]))][:MAX_STEPS]  # cheapest first: the money goes further
        rec = pb.BenchmarkCampaign()
        rec.CopyFrom(c)
        rec.parallel = c.parallel or 4
        rec.vm_lifetime_s = c.vm_lifetime_s or 600.0
        rec.image_os = c.image_os or "ubuntu"
        rec.state = "running" if len(rows) else "done"
        rec.message = f"{len(rows)} specs to measure" if len(rows) else "every chosen spec has a fresh result"
        rec.create_time.CopyFrom(now_ts())
        rec.update_time.CopyFrom(now_ts())
        for i, r in enumerate(rows):
            rec.steps.add(spec_id=table.ids[int(r)], mcis=step_mcis(c.name, i), state="pending")
        try:
            await self.store.create(key(c.name), rec)
        except errors.AlreadyExists:
            raise errors.AlreadyExists(f"benchmark campaign {c.name!r} exists; pick another name") from None
        return rec

    async def get(self, name: str) -> pb.BenchmarkCampaign:
        return (await self.store.must_get(key(name), pb.BenchmarkCampaign, f"benchmark campaign {name!r}")).value

    async def list(self, size: int, token: str) -> tuple[list[pb.BenchmarkCampaign], str]:
        page = await self.store.page(PREFIX, pb.BenchmarkCampaign, page_size(size), token)
        return [i.value for i in page.items], page.next_key

    async def cancel(self, name: str) -> pb.BenchmarkCampaign:
        """Mark it cancelled and skip its pending steps, in one write; the leader deletes what the
        steps under way made and ends it. Asking again while it winds down changes nothing."""
        def change(c: pb.BenchmarkCampaign) -> bool:
            if c.state != "running":
                raise errors.FailedPrecondition(f"benchmark campaign {name!r} has ended ({c.state}): "
                                                "nothing to cancel")
            if c.cancelled:
                return False
            c.cancelled = True
            for step in c.steps:
                if step.state == "pending":
                    step.state, step.error = "skipped", "cancelled"
            c.message = "cancelling: the VMs it made are being deleted"
            return True

        return await self._change(name, change)

    # ------------------------------------------------------------ leader

    async def run(self) -> None:
        """Drive every running campaign (leader only), picking up where the records say."""
        try:
            while True:
                for item in await self.store.list_all(PREFIX, pb.BenchmarkCampaign):
                    name = item.value.name
                    task = self._driving.get(name)
                    if item.value.state == "running" and (task is None or task.done()):
                        self._driving[name] = asyncio.create_task(self._drive(name))
                await asyncio.sleep(self.poll_s)
        finally:
            for task in self._driving.values():
                task.cancel()

    async def _change(self, name: str, change: Callable[[pb.BenchmarkCampaign], bool]) -> pb.BenchmarkCampaign:
        def apply(rec: pb.BenchmarkCampaign) -> pb.BenchmarkCampaign | None:
            if not change(rec):
                return None
            rec.update_time.CopyFrom(now_ts())
            return rec

        return await self.store.modify(key(name), pb.BenchmarkCampaign, apply, f"benchmark campaign {name!r}")

    async def _drive(self, name: str) -> None:
        with contextlib.suppress(errors.AlreadyExists):
            await self.namespaces.create(pb.Namespace(name=NAMESPACE, description="benchmark campaigns"))
        rec = await self.get(name)
        gate = asyncio.Semaphore(rec.parallel or 4)

        async def one(i: int) -> None:
            async with gate:
                try:
                    await self._step(name, i)
                except Exception as err:  # one spec's trouble must not stop the others
                    log.warning("benchmark step failed", extra={"campaign": name, "step": i, "error": str(err)})
                    await self._set(name, i, "failed", str(err))

        await asyncio.gather(*(one(i) for i, s in enumerate(rec.steps) if s.state not in FINAL))

        def finish(c: pb.BenchmarkCampaign) -> bool:
            counts = {s: sum(1 for x in c.steps if x.state == s) for s in FINAL}
            c.state = "cancelled" if c.cancelled else "done"
            c.message = (f"{counts['done']} measured, {counts['failed']} failed, {counts['skipped']} skipped "
                         + ("(cancelled or over budget)" if c.cancelled else "(budget)"))
            return True

        await self._change(name, finish)

    async def _set(self, name: str, i: int, state: str, error: str = "") -> None:
        def change(c: pb.BenchmarkCampaign) -> bool:
            c.steps[i].state = state
            if error:
                c.steps[i].error = error[:500]
            return True

        await self._change(name, change)

    async def _reserve(self, name: str, i: int, price: float) -> bool:
        """pending → creating with its VM and money counted, in one write; False if over budget."""
        fits = True

        def change(c: pb.BenchmarkCampaign) -> bool:
            nonlocal fits
            step = c.steps[i]
            if step.state != "pending":
                return False
            cost = price * c.vm_lifetime_s / 3600.0
            fits = (not c.max_vms or c.vms_made + 1 <= c.max_vms) and \
                (not c.max_cost or c.cost_reserved + cost <= c.max_cost + 1e-12)
            if not fits:
                step.state, step.error = "skipped", "over the campaign's budget"
                return True
            step.state, step.cost = "creating", cost
            c.vms_made += 1
            c.cost_reserved += cost
            return True

        await self._change(name, change)
        return fits

    async def _step(self, name: str, i: int) -> None:
        rec = await self.get(name)
        step = rec.steps[i]
        started = time.monotonic()
        if step.state == "pending":
            spec = next((s for s in await self.catalog.all_specs() if s.id == step.spec_id), None)
            if spec is None:
                await self._set(name, i, "skipped", "no longer in the catalog")
                return
            if not await self._reserve(name, i, spec.price_per_hour):
                return
            step.state = "creating"
        error = ""
        if step.state in ("creating", "benchmarking"):
            try:
                await self._create(name, i, step, rec)
                await self._set(name, i, "benchmarking")
                await self._wait_ready(name, step.mcis, rec.vm_lifetime_s - (time.monotonic() - started))
                got = await self.benchmarker.run(pb.BenchmarkMcisRequest(namespace=NAMESPACE, name=step.mcis))
                error = "; ".join(v.error for v in got.vms if v.error and not v.values)
            except Cancelled:
                error = "cancelled"
            except errors.DomainError as err:
                error = err.message
            await self._set(name, i, "deleting", error)
        await self._delete(step.mcis)
        await self._set(name, i, "failed" if error else "done")

    async def _create(self, name: str, i: int, step: pb.CampaignStep, rec: pb.BenchmarkCampaign) -> None:
        spec = next((s for s in await self.catalog.all_specs() if s.id == step.spec_id), None)
        if spec is None:
            raise errors.NotFound(f"spec {step.spec_id} is no longer in the catalog")
        from tumblebug.placement_service import candidate

        image = pick_image(await self.catalog.all_images(), candidate(spec), rec.image_os)
        if image is None:
            image = pick_image(await self.catalog.all_images(), candidate(spec), "")
        if image is None:
            raise errors.FailedPrecondition(f"connection {spec.connection} has no {spec.architecture} image")
        # Name and request ID follow from campaign and step: a repeat after a crash is the same request.
        await self.mcis.create_dynamic(pb.CreateMcisDynamicRequest(
            namespace=NAMESPACE, name=step.mcis, request_id=f"campaign-{name}-{i}", policy=pb.POLICY_CONTINUE,
            description=f"benchmark campaign {name}: {step.spec_id}",
            subgroups=[pb.DynamicSubgroup(name="b", spec_id=step.spec_id, image_id=image, size=1)]))

    async def _wait_ready(self, name: str, mcis: str, budget_s: float) -> None:
        """Until the VM runs and its agent is healthy; DEADLINE_EXCEEDED past the VM's lifetime,
        Cancelled as soon as the campaign is."""
        deadline = time.monotonic() + max(budget_s, 1.0)
        while time.monotonic() < deadline:
            if (await self.get(name)).cancelled:
                raise Cancelled(name)
            m = await self.mcis.get(NAMESPACE, mcis, True)
            vms = list(m.vms)
            if vms and all(v.status == common.FAILED for v in vms):
                raise errors.FailedPrecondition(f"the VM failed: {vms[0].error}")
            if vms and all(v.status == common.RUNNING and v.agent_status == "Healthy" for v in vms):
                return
            await asyncio.sleep(0.5)
        raise errors.DeadlineExceeded(f"MCIS {mcis} was not running with a healthy agent within its lifetime")

    async def _delete(self, mcis: str) -> None:
        try:
            await self.mcis.delete(pb.DeleteMcisRequest(namespace=NAMESPACE, name=mcis, terminate=True))
        except errors.NotFound:
            return
        while True:
            try:
                await self.mcis.get(NAMESPACE, mcis)
            except errors.NotFound:
                return
            await asyncio.sleep(0.5)
