"""Guests: the cb-agent inside every running twin VM whose user-data asks for one.

A VM gets an agent while it is `running` and loses it when it stops, reboots or
terminates; after an emulator restart the running VMs' agents boot again from
the saved state. The agents live in a few helper processes
(`python -m dragonfly.agent.guests`, the shards), each VM always in the same
shard, so the emulator's own event loop stays free for the cloud API. A shard
that dies is started again and gets its guests back. Each VM has a sandbox
directory where its commands run.

For benchmarks, a guest boots knowing its spec's hidden true performance in its
region (from the catalog, in the units the agent reports) and where its region
is; every helper also knows where each running VM is (IP → coordinates, sent as
it changes), so RTT between twin VMs follows from geography without asking the
emulator per benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import zlib
from pathlib import Path

import yaml

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as pb
from dragonfly.agent import CONNECT_RATE_ENV, GUESTS_MODULE

from . import faults, lifecycle
from .catalog import Catalog
from .helper_process import HelperProcess
from .store import Record, Store

log = logging.getLogger("cloudtwin.guests")

AGENT_SECTION = "cb_agent"
GIB = 1 << 30
# The catalog's true performance is a CPU score (1,000 = a general-purpose core of an average
# provider), memory in GB/s and disk in MB/s; the agent reports operations and bytes per second.
# One score point is taken as 1,000 of the agent's CPU operations (SHA-256 of 1 KiB) per second,
# about what a current server core does, so twins and hosts land on one scale.
CPU_OPS_PER_POINT = 1000.0
GB, MB = 1e9, 1e6
# Peer places per order line (~40 bytes each; a helper reads lines of up to 1 MiB).
PEERS_PER_ORDER = 5000
# libyaml when it is there: 10,000 VMs made at once are read in half a second, not ten.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# New NATS connections per second of all the helpers together (each gets its share): every one
# is followed by a registration, which dragonfly records one at a time in etcd. Measured with
# 10,000 agents on 2 cores: ~170 a second kept up, ~225 a second fell behind for minutes
# (agents whose registration timed out asked again every interval, adding to the queue).
CONNECTS_PER_S = 150.0


def true_perf(truth: pb.SpecTruth) -> dict[str, float]:
    """A spec's true performance in the units of the agent's benchmark results."""
    return {"cpu_single_ops_per_s": truth.cpu_single * CPU_OPS_PER_POINT,
            "cpu_multi_ops_per_s": truth.cpu_multi * CPU_OPS_PER_POINT,
            "memory_read_bytes_per_s": truth.mem_read * GB, "memory_write_bytes_per_s": truth.mem_write * GB,
            "disk_read_bytes_per_s": truth.disk_read * MB, "disk_write_bytes_per_s": truth.disk_write * MB}


def peer_orders(known: dict[str, tuple[float, float]], places: dict[str, tuple[float, float]],
                per_order: int = PEERS_PER_ORDER) -> list[dict[str, object]]:
    """The `peers` orders that turn what a helper `known` into `places`, in pieces of `per_order`
    (the helper reads each order line into a bounded buffer)."""
    drop = [ip for ip in known if ip not in places]
    put = [(ip, place) for ip, place in places.items() if known.get(ip) != place]
    return [{"op": "peers", "put": dict(put[i:i + per_order]), "drop": drop[i:i + per_order]}
            for i in range(0, max(len(drop), len(put)), per_order)]


def wants_agent(user_data: str) -> bool:
    """Whether user-data asks for an agent (a `cb_agent` mapping at the top)."""
    if AGENT_SECTION not in user_data:
        return False
    try:
        doc = yaml.load(user_data, Loader=_LOADER)
    except yaml.YAMLError:
        return False
    return isinstance(doc, dict) and isinstance(doc.get(AGENT_SECTION), dict)


class Shard(HelperProcess):
    """One helper process and the guests it runs."""

    def __init__(self, index: int, log_path: Path, connects_per_s: float = CONNECTS_PER_S) -> None:
        super().__init__(GUESTS_MODULE, log_path, {CONNECT_RATE_ENV: f"{connects_per_s:g}"})
        self.index = index
        self.guests: set[str] = set()
        # Where the running VMs are, as this helper was last told (IP → latitude, longitude).
        self.peers: dict[str, tuple[float, float]] = {}

    async def start(self) -> None:
        await super().start()
        self.guests.clear()
        self.peers.clear()

    def tell_peers(self, places: dict[str, tuple[float, float]]) -> None:
        """Queue what changed in where the running VMs are since this helper was last told."""
        orders = peer_orders(self.peers, places)
        for order in orders:
            self.order(order)
        if orders:
            self.peers = dict(places)


class Guests:
    """Keeps the set of running agents equal to the set of running VMs that ask for one."""

    def __init__(self, store: Store, catalog: Catalog, directory: str, shards: int, interval_s: float = 0.5) -> None:
        self.store = store
        self.catalog = catalog
        self._own_dir = not directory
        self.root = Path(directory or tempfile.mkdtemp(prefix="cloudtwin-guests-"))
        count = max(1, shards)
        self.shards = [Shard(i, self.root / "logs" / f"guests-{i}.log", CONNECTS_PER_S / count) for i in range(count)]
        self.interval_s = interval_s
        # VM ID → whether its user-data asks for an agent (user-data never changes).
        self._wants: dict[str, bool] = {}
        # (provider, region) → where the region is.
        self._places: dict[tuple[str, str], tuple[float, float]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cloudtwin-guests")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(*(s.stop() for s in self.shards))
        if self._own_dir:
            shutil.rmtree(self.root, ignore_errors=True)

    def running(self) -> set[str]:
        return set().union(*(s.guests for s in self.shards))

    async def _run(self) -> None:
        while True:
            try:
                await self.sync()
            except Exception:  # keep the loop alive; the next round retries
                log.exception("guest sync failed")
            await asyncio.sleep(self.interval_s)

    def _wanted(self) -> tuple[dict[str, Record], set[str], dict[str, tuple[float, float]]]:
        """The running VMs that ask for an agent, the IDs of every VM there is, and where
        each running VM is (IP → its region's coordinates)."""
        now = self.store.clock()
        out, vms, places = {}, set(), {}
        for rec in self.store.all_records():
            if rec.kind != pb.VM or not self.store.advance(rec, now):
                continue
            vm_id = rec.id
            vms.add(vm_id)
            if rec.state != lifecycle.RUNNING:
                continue
            place = self._place(rec)
            if place is not None and rec.res.vm.private_ip:
                places[rec.res.vm.private_ip] = place
            wants = self._wants.get(vm_id)
            if wants is None:
                wants = self._wants[vm_id] = wants_agent(rec.res.vm.user_data)
            if wants:
                out[vm_id] = rec
        return out, vms, places

    def _place(self, rec: Record) -> tuple[float, float] | None:
        """Where the VM's region is (latitude, longitude); None for a region the catalog lacks."""
        key = (rec.res.provider, rec.res.region)
        place = self._places.get(key)
        if place is None:
            try:
                city = self.catalog.region(*key).city
            except faults.CloudError:
                return None
            place = self._places[key] = (city.latitude, city.longitude)
        return place

    def _shard(self, vm_id: str) -> Shard:
        return self.shards[zlib.crc32(vm_id.encode()) % len(self.shards)]

    async def sync(self) -> None:
        """Boot the agents of newly running VMs, halt those of VMs no longer running."""
        for shard in self.shards:
            if shard.proc is not None and not shard.alive():
                log.warning("guest shard exited; starting it again", extra={"shard": shard.index})
                await shard.start()  # forgets its guests: they boot again below
        wanted, vms, places = self._wanted()
        for shard in self.shards:
            for vm_id in list(shard.guests - wanted.keys()):
                shard.order({"op": "halt", "id": vm_id})
                shard.guests.discard(vm_id)
        # Only VMs no shard runs yet need a look (10,000 running VMs are checked twice a second).
        for vm_id in wanted.keys() - self.running():
            shard = self._shard(vm_id)
            if shard.proc is None:
                await shard.start()  # helpers start with their first guest
            rec = wanted[vm_id]
            shard.order({"op": "boot", "id": vm_id, "user_data": rec.res.vm.user_data, "twin": self._twin(rec)})
            shard.guests.add(vm_id)
        for shard in self.shards:
            if shard.alive():
                shard.tell_peers(places)
        # Drained once per helper and round, however many VMs came or went.
        for shard in self.shards:
            await shard.flush()
        for vm_id in self._wants.keys() - vms:
            del self._wants[vm_id]

    def _twin(self, rec: Record) -> dict[str, object]:
        vm = rec.res.vm
        try:
            memory_gib = self.catalog.region(rec.res.provider, rec.res.region).specs[vm.spec].memory_gib
        except (KeyError, LookupError):
            memory_gib = 2.0 * max(1, vm.vcpu)
        twin: dict[str, object] = {"ip": vm.private_ip, "vcpu": max(1, vm.vcpu), "memory_bytes": int(memory_gib * GIB),
                                   "disk_bytes": max(1, vm.root_disk_gib) * GIB,
                                   "sandbox": str(self.root / "vms" / rec.id)}
        place = self._place(rec)
        if place is not None:
            twin["latitude"], twin["longitude"] = place
        # For a spec the catalog does not know, the agent answers that it has no true performance.
        with contextlib.suppress(faults.CloudError):
            twin["perf"] = true_perf(self.catalog.truth(rec.res.provider, rec.res.region, vm.spec))
        return twin
