"""Tumblebug benchmarks; prints one JSON document.

1. An MCIS of 1,000 VMs across 10 connections, CloudTwin create latency 1 s:
   wall time from CreateMcisDynamic until every VM is Running, against the
   1 s floor and against spider alone creating 1,000 VMs the same way
   (same stack, same limits, its own connections, same run).
2. Zero CloudTwin latency: VMs per second through tumblebug → spider →
   CloudTwin, against spider alone making the same number of VMs with the
   same number in flight.
3. An MCIS of 10,000 VMs (made through tumblebug at zero latency): the
   latency of reading its status (GetMcis), idle and while it was being
   built, from the leader (its reconciler's cache) and from an API-only
   replica beside it (CB_TUMBLEBUG_CONTROLLER=false: its watched copy of the
   MCIS records), against a bare etcd read of the
   same record; and of reading it whole (GetMcis with its VMs) against a
   bare etcd range of its VM records.
4. Deleting that MCIS (DeleteMcis with terminate): the call's latency, and
   VMs removed per second (cloud VM deleted, then its record) against the
   rate at which the same MCIS was made.

Every phase reports the CPU seconds each process used (from /proc), so the
number says where the time went. Everything runs on loopback in a temporary
directory, every wait is bounded, and it stops by itself.

Usage: python bench/tumblebug.py [--quick] [--profile DIR] [--phases LIST]
  --profile DIR   record py-spy samples (raw, collapsed stacks) of tumblebug and
                  spider per phase into DIR (needs py-spy in the environment)
  --phases LIST   run only these, comma-separated: latency (1), zero (2), big (3),
                  delete (4, needs big); e.g. --phases big for the 10,000-VM build
                  and its reads, --phases latency for 1,000 VMs at 1 s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from aetcd import rpc as etcd_rpc
from aetcd.rpc import rpc_pb2_grpc as etcd_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Stack
from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as spb
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services import tls
from services.rpc.client import channel
from tumblebug import keyspace
from tumblebug.settings import TumblebugSettings

# Spider's protective per-connection gate (default 100 calls/s, burst 200, 128 at once) is lifted on
# every connection of the run, for tumblebug's and for the spider-alone baseline alike: the question
# is what tumblebug's machinery costs, not how the limiter paces a cloud. At 100 VMs per connection
# the defaults would not bind anyway (100 < burst 200, 100 < 128 in flight); at 1,000 per connection
# (phase 3) the 100/s rate would cap the build at 1,000 VMs/s over 10 connections, far above what
# tumblebug reaches on this machine.
LIMITS = spb.ConnectionLimits(rate_per_second=1e6, burst=100_000, max_concurrency=1024)
# Namespace quotas off: the bench's namespace holds more than the default 10,000 VMs (phases 2 and 3).
UNLIMITED = {"CB_TUMBLEBUG_QUOTA_VMS": "-1", "CB_TUMBLEBUG_QUOTA_VCPUS": "-1"}
TUMBLEBUG_KNOBS = ("max_per_connection", "max_per_region", "poll_interval_s", "resync_interval_s", "workers")


@dataclass(frozen=True)
class Sizes:
    connections: int
    latency_s: float
    per_conn_latency: int  # VMs per connection, phase 1
    per_conn_zero: int  # phase 2
    per_conn_big: int  # phase 3
    read_seconds: float
    full_reads: int
    bound_s: float  # longest wait for one MCIS to come up (phases 1, 2)
    big_bound_s: float  # phase 3


FULL = Sizes(connections=10, latency_s=1.0, per_conn_latency=100, per_conn_zero=100, per_conn_big=1000,
             read_seconds=3.0, full_reads=10, bound_s=180.0, big_bound_s=300.0)
QUICK = Sizes(connections=2, latency_s=0.5, per_conn_latency=10, per_conn_zero=20, per_conn_big=100,
              read_seconds=0.5, full_reads=3, bound_s=30.0, big_bound_s=30.0)


# ------------------------------------------------------------------ measuring


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def latency_stats(latencies: list[float], elapsed: float | None = None) -> dict[str, float]:
    out = {"calls": float(len(latencies)),
           "p50_ms": round(percentile(latencies, 0.5) * 1e3, 3),
           "p99_ms": round(percentile(latencies, 0.99) * 1e3, 3),
           "max_ms": round(max(latencies, default=0.0) * 1e3, 3),
           "mean_ms": round(sum(latencies) / max(len(latencies), 1) * 1e3, 3)}
    if elapsed:
        out["rps"] = round(len(latencies) / elapsed, 1)
    return out


async def serial(call: Callable[[], Awaitable[object]], seconds: float, at_least: int = 1) -> dict[str, float]:
    """One caller, back to back, for `seconds` (and at least `at_least` calls): latency percentiles."""
    await call()  # warm the channel and the server's code paths
    latencies: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(latencies) < at_least:
        t0 = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - t0)
    return latency_stats(latencies, time.perf_counter() - start)


def _cpu_of(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


ETCD_COUNTERS = {"etcd_mvcc_range_total": "range", "etcd_mvcc_txn_total": "txn", "etcd_mvcc_put_total": "put",
                 "etcd_mvcc_delete_total": "delete", "etcd_debugging_mvcc_events_total": "watch_events"}


def _scrape(port: int, scheme: str = "http") -> str:
    if not port:
        return ""
    # etcd serves its metrics on its client port, TLS with client certificates: this process's own.
    context = None
    if scheme == "https":
        me = tls.configured()
        context = ssl.create_default_context(cafile=str(me.ca_file))
        context.load_cert_chain(str(me.cert_file), str(me.key_file))
    try:
        with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/metrics", timeout=5, context=context) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def _rpc_counts(text: str) -> dict[str, float]:
    """cb_rpc_total summed over codes, by method's short name."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("cb_rpc_total{"):
            labels, _, value = line.rpartition(" ")
            method = labels.split('method="', 1)[1].split('"', 1)[0].rsplit("/", 1)[-1]
            out[method] = out.get(method, 0.0) + float(value)
    return out


def _buckets(text: str, name: str) -> dict[str, dict[float, float]]:
    """A Prometheus histogram's cumulative buckets ({le: count}) by its other labels."""
    out: dict[str, dict[float, float]] = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            labels, _, value = line.rpartition(" ")
            le = labels.split('le="', 1)[1].split('"', 1)[0]
            rest = ",".join(p for p in labels[len(name) + 8:-1].split(",") if not p.startswith("le="))
            out.setdefault(rest, {})[float(le)] = float(value)
    return out


def _loop_health(before: str, after: str) -> dict[str, Any]:
    """tumblebug's event loop over a phase: the lag of a 50 ms timer (p50, p99 and worst as the
    upper bound of their bucket) and the garbage collector's pauses by generation."""
    def delta(name: str) -> dict[str, dict[float, float]]:
        was = _buckets(before, name)
        return {k: {le: c - was.get(k, {}).get(le, 0.0) for le, c in v.items()} for k, v in _buckets(after, name).items()}

    def bound(cum: dict[float, float], q: float) -> float | None:
        total = cum.get(float("inf"), 0.0)
        if not total:
            return None
        le = next(le for le in sorted(cum) if cum[le] >= q * total)
        return None if le == float("inf") else round(le * 1e3, 1)

    lag = next(iter(delta("cb_event_loop_lag_seconds").values()), {})
    gc_ = {k.split('"')[1] if '"' in k else k: {"count": int(v.get(float("inf"), 0)),
                                              "p99_ms_at_most": bound(v, 0.99), "worst_ms_at_most": bound(v, 1.0)}
           for k, v in delta("cb_gc_pause_seconds").items() if v.get(float("inf"), 0)}
    return {"probes": int(lag.get(float("inf"), 0)), "lag_p50_ms_at_most": bound(lag, 0.5),
            "lag_p99_ms_at_most": bound(lag, 0.99), "lag_worst_ms_at_most": bound(lag, 1.0),
            "gc_pauses_by_generation": gc_,
            "note": "None: beyond the largest bucket (2.5 s)"}


def _etcd_counts(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ETCD_COUNTERS:
            out[ETCD_COUNTERS[name]] = float(value)
    return out


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class Meter:
    """Wall time, the CPU seconds each process of the stack (and this one) used meanwhile, the RPCs
    spider and tumblebug served and the etcd operations (by their Prometheus counters), per VM when
    `vms` is given, and the warnings tumblebug and spider logged."""

    def __init__(self, stack: Stack, vms: int = 0) -> None:
        self.stack = stack
        self.vms = vms
        self.result: dict[str, Any] = {}

    def _sample(self) -> dict[str, tuple[int, float]]:
        out = {p.name: (p.pid, c) for p in self.stack.procs if p.alive() and (c := _cpu_of(p.pid)) is not None}
        out["bench_client"] = (os.getpid(), time.process_time())
        return out

    def _counts(self) -> dict[str, dict[str, float]]:
        return {"spider_rpcs": _rpc_counts(_scrape(self.stack.spider_metrics_port)),
                "tumblebug_rpcs": _rpc_counts(_scrape(self.stack.tumblebug_metrics_port)),
                "etcd_ops": _etcd_counts(_scrape(self.stack.etcd_port, "https"))}

    def _logs(self) -> dict[str, Path]:
        return {name: self.stack.root / "logs" / f"{name}.log" for name in ("tumblebug", "spider")}

    def __enter__(self) -> Meter:
        self._counts_before = self._counts()
        self._tumblebug_before = _scrape(self.stack.tumblebug_metrics_port)
        self._log_from = {name: _log_size(path) for name, path in self._logs().items()}
        self._t0 = time.perf_counter()
        self._before = self._sample()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._t0
        after = self._sample()
        # A process started meanwhile (a restart) counts from its start; the one it replaced is not seen.
        used = {k: round(cpu - (self._before[k][1] if self._before.get(k, (0, 0.0))[0] == pid else 0.0), 2)
                for k, (pid, cpu) in after.items()}
        self.result = {"wall_s": round(wall, 2), "cpu_s": used,
                       "cpu_s_total": round(sum(used.values()), 2),
                       "cores_busy": round(sum(used.values()) / wall, 2) if wall else 0.0}
        counts = self._counts()
        for group, now in counts.items():
            was = self._counts_before.get(group, {})
            delta = {k: v - was.get(k, 0.0) for k, v in now.items() if v - was.get(k, 0.0) > 0}
            self.result[group] = ({k: round(v / self.vms, 2) for k, v in sorted(delta.items())} if self.vms
                                  else {k: int(v) for k, v in sorted(delta.items())})
        if self.vms:
            self.result["counts_are"] = f"per VM ({self.vms})"
        if self.stack.tumblebug_metrics_port:
            self.result["tumblebug_event_loop"] = _loop_health(self._tumblebug_before,
                                                               _scrape(self.stack.tumblebug_metrics_port))
        self.result["logged_warnings"] = {name: self._warnings(path, self._log_from[name])
                                          for name, path in self._logs().items()}

    @staticmethod
    def _warnings(path: Path, start: int) -> dict[str, int]:
        """Warning and error lines logged since `start`, by message."""
        out: dict[str, int] = {}
        try:
            with path.open("rb") as f:
                f.seek(start)
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return out
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("level") in ("WARNING", "ERROR", "CRITICAL"):
                msg = str(entry.get("msg", ""))[:60]
                if entry.get("error"):
                    msg += f": {str(entry['error'])[:100]}"
                out[msg] = out.get(msg, 0) + 1
        return out


class Profiler:
    """py-spy on tumblebug and spider for one phase (only with --profile)."""

    def __init__(self, out_dir: Path | None, stack: Stack, phase: str) -> None:
        self.out_dir = out_dir
        self.stack = stack
        self.phase = phase
        self.children: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Profiler:
        if self.out_dir is None:
            return self
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        if spy is None:
            raise SystemExit("--profile needs py-spy (pip install py-spy)")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for proc in self.stack.procs:
            if proc.name in ("tumblebug", "spider") and proc.alive():
                out = self.out_dir / f"{self.phase}-{proc.name}.txt"
                self.children.append(subprocess.Popen(
                    [spy, "record", "--pid", str(proc.pid), "--rate", "100", "--format", "raw", "--nonblocking",
                     "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return self

    def __exit__(self, *exc: object) -> None:
        for child in self.children:
            child.send_signal(signal.SIGINT)  # py-spy writes its samples on SIGINT
        for child in self.children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


# ---------------------------------------------------------------- tumblebug


def groups(conns: list[tuple[str, str, str]], per_conn: int, prefix: str) -> list[pb.DynamicSubgroup]:
    return [pb.DynamicSubgroup(name=f"{prefix}{i}", spec_id=f"{name}+{spec}", image_id=image, size=per_conn)
            for i, (name, image, spec) in enumerate(conns)]


async def namespace(stack: Stack) -> str:
    name = f"bench-{uuid.uuid4().hex[:6]}"
    await stack.tb.CreateNamespace(pb.CreateNamespaceRequest(namespace=pb.Namespace(name=name)))
    return name


async def prepare(stack: Stack, ns: str, conns: list[tuple[str, str, str]], bound: float) -> dict[str, Any]:
    """A one-VM-per-connection MCIS, waited for: it makes each connection's default vNet, security
    group and key (once per namespace), so the measured MCIS that follows reuses them."""
    t0 = time.perf_counter()
    made = await stack.tb.CreateMcisDynamic(pb.CreateMcisDynamicRequest(
        namespace=ns, name="warmup", subgroups=groups(conns, 1, "w"), request_id=uuid.uuid4().hex, wait=True),
        timeout=bound)
    return {"vms": len(conns), "seconds": round(time.perf_counter() - t0, 3), "status": made.status}


@dataclass
class Followed:
    """How an MCIS came up, timed from the create call: as its summary said (WatchMcis, what a user
    sees) and as its VM records said (read straight from etcd now and then)."""

    total: int
    accepted_s: float = 0.0
    first_running_s: float | None = None
    half_running_s: float | None = None
    all_running_s: float | None = None
    settled_s: float | None = None
    status: str = ""
    failed: int = 0
    snapshots: int = 0
    records_half_running_s: float | None = None
    records_all_running_s: float | None = None
    records_last: dict[str, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        r = lambda v: None if v is None else round(v, 3)  # noqa: E731
        return {"vms": self.total, "create_rpc_s": r(self.accepted_s), "first_running_s": r(self.first_running_s),
                "half_running_s": r(self.half_running_s), "all_running_s": r(self.all_running_s),
                "settled_s": r(self.settled_s), "final_status": self.status, "failed": self.failed,
                "watch_snapshots": self.snapshots, "completed": self.all_running_s is not None,
                "vm_records": {"sampled_every_s": round(max(0.25, self.total / 5000), 2),
                               "half_running_s": r(self.records_half_running_s),
                               "all_running_s": r(self.records_all_running_s),
                               "last_seen": self.records_last or {}}}


async def watch(stack: Stack, ns: str, name: str) -> AsyncIterator[pb.Mcis]:
    call = stack.tb.WatchMcis(pb.WatchMcisRequest(namespace=ns, name=name))
    try:
        async for mcis in call:
            yield mcis
    finally:
        call.cancel()


async def follow_records(etcd: BareEtcd, ns: str, name: str, out: Followed, t0: float, stop: asyncio.Event) -> None:
    """Count the MCIS's VM records by status now and then (the truth the summary is made from)."""
    every = max(0.25, out.total / 5000)  # decoding 10,000 records costs this process ~50 ms
    while True:
        last = stop.is_set()
        counts = await etcd.vm_statuses(keyspace.vms(ns, name))
        now = time.perf_counter() - t0
        out.records_last = counts
        running = counts.get("RUNNING", 0)
        # The summary is made from the records, so it never says Running before they do: a sample
        # taken after the summary's moment is clamped to it.
        if running * 2 >= out.total and out.records_half_running_s is None:
            out.records_half_running_s = min(now, out.half_running_s or now)
        if running >= out.total and out.records_all_running_s is None:
            out.records_all_running_s = min(now, out.all_running_s or now)
        if last:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def create_and_follow(stack: Stack, ns: str, name: str, subgroups: list[pb.DynamicSubgroup],
                            bound: float) -> Followed:
    """CreateMcisDynamic (no wait), then follow WatchMcis until all Running and settled, or `bound`."""
    total = sum(sg.size for sg in subgroups)
    out = Followed(total)
    etcd = BareEtcd(stack.etcd_port)
    stop = asyncio.Event()
    t0 = time.perf_counter()
    await stack.tb.CreateMcisDynamic(pb.CreateMcisDynamicRequest(
        namespace=ns, name=name, subgroups=subgroups, request_id=uuid.uuid4().hex), timeout=bound)
    out.accepted_s = time.perf_counter() - t0
    records = asyncio.create_task(follow_records(etcd, ns, name, out, t0, stop))
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(bound - out.accepted_s):
                async for mcis in watch(stack, ns, name):
                    now = time.perf_counter() - t0
                    out.snapshots += 1
                    out.status, out.failed = mcis.status, mcis.status_count.failed
                    running = mcis.status_count.running
                    if running and out.first_running_s is None:
                        out.first_running_s = now
                    if running * 2 >= total and out.half_running_s is None:
                        out.half_running_s = now
                    if running >= total and out.all_running_s is None:
                        out.all_running_s = now
                    if _settled(mcis, total):
                        out.settled_s = now
                        break
    finally:
        stop.set()
        await records
        await etcd.close()
    return out


def _settled(mcis: pb.Mcis, total: int) -> bool:
    return (mcis.status_count.total >= total and mcis.target_action == pb.ACTION_NONE
            and mcis.observed_generation >= mcis.generation)


async def settle(stack: Stack, ns: str, name: str, total: int, bound: float) -> pb.Mcis:
    """GetMcis every half second until the MCIS settled, or `bound`; the last one read."""
    deadline = time.perf_counter() + bound
    mcis = pb.Mcis()
    while time.perf_counter() < deadline:
        with contextlib.suppress(grpc.aio.AioRpcError):
            mcis = await stack.tb.GetMcis(pb.GetMcisRequest(namespace=ns, name=name), timeout=30)
            if _settled(mcis, total):
                break
        await asyncio.sleep(0.5)
    return mcis


async def sample_reads(tb: tumblebug_pb2_grpc.TumblebugStub, ns: str, name: str, stop: asyncio.Event,
                       every: float = 0.2) -> list[float]:
    """GetMcis now and then while something else is going on."""
    latencies: list[float] = []
    while not stop.is_set():
        t0 = time.perf_counter()
        with contextlib.suppress(grpc.aio.AioRpcError):
            await tb.GetMcis(pb.GetMcisRequest(namespace=ns, name=name), timeout=30)
            latencies.append(time.perf_counter() - t0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
    return latencies


async def _sample_forever(address: str, ns: str, name: str, every: float = 0.2) -> None:
    """The child of `IsolatedReads`: GetMcis every `every` s until SIGTERM (from when the MCIS
    exists), then the latencies on stdout as a JSON list."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    latencies: list[float] = []
    async with channel(address) as ch:
        stub = tumblebug_pb2_grpc.TumblebugStub(ch)
        request = pb.GetMcisRequest(namespace=ns, name=name)
        found = False
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                await stub.GetMcis(request, timeout=30)
                if found:
                    latencies.append(time.perf_counter() - t0)
                found = True  # the first answer warms the channel: not counted
            except grpc.aio.AioRpcError:
                pass
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every if found else 0.05)
    print(json.dumps(latencies))


class IsolatedReads:
    """GetMcis sampled from a process of its own: this process decodes 10,000 VM records every
    couple of seconds to follow the build (`follow_records`), a stall of its own event loop that a
    read in flight meanwhile would count as tumblebug's latency."""

    def __init__(self, port: int, ns: str, name: str) -> None:
        self.argv = [sys.executable, str(Path(__file__).resolve()), "--sample-reads", f"127.0.0.1:{port}", ns, name]
        self.child: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.child = await asyncio.create_subprocess_exec(*self.argv, stdout=asyncio.subprocess.PIPE)

    async def stop(self) -> list[float]:
        assert self.child is not None
        self.child.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(self.child.communicate(), 60)
        return [float(v) for v in json.loads(out or b"[]")]


class LoopLag:
    """This process's own event loop: how late a 50 ms timer fires (a stall here delays every
    reply this process is waiting for, so it shows as the server's latency)."""

    def __init__(self, probe_s: float = 0.05) -> None:
        self.probe_s = probe_s
        self.lags: list[float] = []
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(self.probe_s)
            self.lags.append(max(0.0, time.perf_counter() - asked - self.probe_s))

    def __enter__(self) -> LoopLag:
        self.task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.cancel()

    def stats(self) -> dict[str, float]:
        return {"probes": len(self.lags), "lag_p50_ms": round(percentile(self.lags, 0.5) * 1e3, 1),
                "lag_p99_ms": round(percentile(self.lags, 0.99) * 1e3, 1),
                "lag_worst_ms": round(max(self.lags, default=0.0) * 1e3, 1)}


# --------------------------------------------------------------- baselines


async def spider_direct(stack: Stack, conns: list[tuple[str, str, str]], total: int,
                        concurrency: int) -> dict[str, Any]:
    """Spider alone: `total` CreateVm spread over `conns`, `concurrency` at once; with zero boot
    latency the VM is Running when CreateVm answers."""
    gate = asyncio.Semaphore(concurrency)
    statuses: dict[str, int] = {}

    async def one(i: int) -> None:
        name, image, spec = conns[i % len(conns)]
        async with gate:
            vm = await stack.stub.CreateVm(spb.CreateVmRequest(
                connection=name, request_id=uuid.uuid4().hex,
                vm=spb.Vm(iid=common.IID(name=f"direct-{i:05d}"), image=image, spec=spec)))
        word = common.VmStatus.Name(vm.status)
        statuses[word] = statuses.get(word, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(total)))
    wall = time.perf_counter() - t0
    return {"vms": total, "connections": len(conns), "in_flight": concurrency, "seconds": round(wall, 3),
            "vms_per_second": round(total / wall, 1), "status_on_reply": statuses}


class BareEtcd:
    """The same records read straight from etcd by this process (raw bytes, no decoding)."""

    def __init__(self, port: int) -> None:
        self.channel = channel(f"127.0.0.1:{port}", options=[
            ("grpc.max_receive_message_length", 256 << 20)])
        self.kv = etcd_grpc.KVStub(self.channel)

    async def get(self, key: str) -> int:
        resp = await self.kv.Range(etcd_rpc.RangeRequest(key=key.encode()))
        return len(resp.kvs[0].value) if resp.kvs else 0

    async def range_all(self, prefix: str, page: int = 500) -> int:
        """Every record under `prefix`, in pages as tumblebug reads them; returns the bytes read."""
        p = prefix.encode()
        end = p[:-1] + bytes([p[-1] + 1])
        start, size = p, 0
        while True:
            resp = await self.kv.Range(etcd_rpc.RangeRequest(key=start, range_end=end, limit=page))
            size += sum(len(kv.value) for kv in resp.kvs)
            if not resp.more or not resp.kvs:
                return size
            start = resp.kvs[-1].key + b"\0"

    async def count(self, prefix: str) -> int:
        """How many records are under `prefix` (etcd counts; nothing is sent back)."""
        p = prefix.encode()
        resp = await self.kv.Range(etcd_rpc.RangeRequest(key=p, range_end=p[:-1] + bytes([p[-1] + 1]),
                                                         count_only=True))
        return int(resp.count)

    async def vm_statuses(self, prefix: str) -> dict[str, int]:
        """The McisVm records under `prefix` counted by status (NEW: not yet sent to spider)."""
        p = prefix.encode()
        resp = await self.kv.Range(etcd_rpc.RangeRequest(key=p, range_end=p[:-1] + bytes([p[-1] + 1])))
        out: dict[str, int] = {}
        for kv in resp.kvs:
            vm = pb.McisVm.FromString(kv.value)
            word = common.VmStatus.Name(vm.status) if vm.requested else "NEW"
            out[word] = out.get(word, 0) + 1
        return out

    async def close(self) -> None:
        await self.channel.close()


# ------------------------------------------------------------------ phases


def tumblebug_settings() -> dict[str, Any]:
    fields = TumblebugSettings.model_fields
    return {k: fields[k].default for k in TUMBLEBUG_KNOBS}


async def phase_latency(root: Path, s: Sizes, profile: Path | None) -> dict[str, Any]:
    twin = {"CB_CLOUDTWIN_PROVIDERS": "4", "CB_CLOUDTWIN_CREATE_LATENCY": str(s.latency_s),
            "CB_CLOUDTWIN_BOOT_LATENCY": "0", "CB_CLOUDTWIN_ACTION_LATENCY": "0"}
    total = s.connections * s.per_conn_latency
    async with Stack(root / "latency", twin, tumblebug_env={}) as stack:
        direct_conns = await stack.connections(s.connections, LIMITS)
        tb_conns = await stack.connections(s.connections, LIMITS)
        with Meter(stack, total) as m_direct:
            direct = await spider_direct(stack, direct_conns, total, total)
        ns = await namespace(stack)
        with Meter(stack) as m_cold:
            cold = await prepare(stack, ns, tb_conns, s.bound_s)
        with Profiler(profile, stack, "latency"), Meter(stack, total) as m_tb:
            followed = await create_and_follow(stack, ns, "mcis", groups(tb_conns, s.per_conn_latency, "g"),
                                               s.bound_s)
    tb = followed.as_dict()
    wall = followed.all_running_s
    return {
        "vms": total, "connections": s.connections,
        "cloudtwin": {"create_latency_s": s.latency_s, "boot_latency_s": 0, "action_latency_s": 0},
        "floor_s": s.latency_s,
        "tumblebug": {**tb, "ratio_to_floor": round(wall / s.latency_s, 2) if wall else None,
                      "vm_records_ratio_to_floor": _ratio(followed.records_all_running_s, s.latency_s),
                      "ratio_to_spider_direct": round(wall / direct["seconds"], 2) if wall else None,
                      "process_cpu": m_tb.result},
        "spider_direct": {**direct, "ratio_to_floor": round(direct["seconds"] / s.latency_s, 2),
                          "process_cpu": m_direct.result},
        "cold_first_mcis": {**cold, "note": "1 VM per connection in a new namespace, waited for: includes "
                                            "making each connection's default vNet, security group and SSH key",
                            "process_cpu": m_cold.result},
        "serial_would_take_s": total * s.latency_s,
    }


async def phase_zero(root: Path, s: Sizes, profile: Path | None, phases: set[str]) -> dict[str, Any]:
    """Phases 2-4 on one stack: those of `phases` among "zero", "big" and "delete" ("delete"
    deletes the MCIS "big" made, so it needs "big")."""
    twin = {"CB_CLOUDTWIN_PROVIDERS": "4", "CB_CLOUDTWIN_CREATE_LATENCY": "0",
            "CB_CLOUDTWIN_BOOT_LATENCY": "0", "CB_CLOUDTWIN_ACTION_LATENCY": "0"}
    total = s.connections * s.per_conn_zero
    in_flight = min(total, s.connections * int(tumblebug_settings()["max_per_connection"]))
    out: dict[str, Any] = {}
    # Phase 3 reads the big MCIS's status from the leader and from an API-only replica too.
    async with Stack(root / "zero", twin, tumblebug_env=UNLIMITED, api_replica="big" in phases) as stack:
        tb_conns = await stack.connections(s.connections, LIMITS)
        if "zero" in phases:
            direct_conns = await stack.connections(s.connections, LIMITS)
            with Meter(stack, total) as m_direct:
                direct = await spider_direct(stack, direct_conns, total, in_flight)
        ns = await namespace(stack)
        await prepare(stack, ns, tb_conns, s.bound_s)
        if "zero" in phases:
            with Profiler(profile, stack, "zero"), Meter(stack, total) as m_tb:
                followed = await create_and_follow(stack, ns, "mcis", groups(tb_conns, s.per_conn_zero, "g"),
                                                   s.bound_s)
            out["create_zero_latency"] = _throughput(followed, direct, m_tb, m_direct, in_flight)
        if "big" in phases:
            out["status_read_big_mcis"] = big = await phase_big(stack, ns, tb_conns, s, profile)
            if "delete" in phases:
                out["delete_big_mcis"] = await phase_delete(stack, ns, s, profile,
                                                            big["build"]["vm_records_vms_per_second"])
    return out


async def phase_big(stack: Stack, ns: str, tb_conns: list[tuple[str, str, str]], s: Sizes,
                    profile: Path | None) -> dict[str, Any]:
    """Phase 3: a big MCIS, timed as it comes up (with status reads meanwhile), then read at rest."""
    big_total = s.connections * s.per_conn_big
    stop = asyncio.Event()
    # The same reads of the leader (it serves them from its reconciler's cache) and of the API-only
    # replica (from its watched copy of the MCIS records), from this process and from a process of
    # their own each.
    sampler = asyncio.create_task(_sample_when_created(stack.tb, ns, "big", stop))
    api_sampler = asyncio.create_task(_sample_when_created(stack.tb_api, ns, "big", stop))
    isolated = IsolatedReads(stack.tumblebug_port, ns, "big")
    api_isolated = IsolatedReads(stack.api_port, ns, "big")
    await isolated.start()
    await api_isolated.start()
    api_metrics_before = _scrape(stack.api_metrics_port)
    with Profiler(profile, stack, "big"), Meter(stack, big_total) as m_big, LoopLag() as client_lag:
        built = await create_and_follow(stack, ns, "big", groups(tb_conns, s.per_conn_big, "b"), s.big_bound_s)
    stop.set()
    during, during_api = await sampler, await api_sampler
    during_isolated, during_api_isolated = await isolated.stop(), await api_isolated.stop()
    api_loop = _loop_health(api_metrics_before, _scrape(stack.api_metrics_port))
    unsettled: dict[str, Any] = {}
    if built.settled_s is None:
        # Still at it after the bound: what a reader gets meanwhile, then a fresh tumblebug (it
        # rebuilds its view from etcd) to bring the summary up to date so reads can be measured at rest.
        unsettled["get_mcis_still_reconciling"] = await serial(
            lambda: stack.tb.GetMcis(pb.GetMcisRequest(namespace=ns, name="big"), timeout=60), s.read_seconds, 5)
        with Meter(stack) as m_restart:
            t0 = time.perf_counter()
            await stack.restart_tumblebug()
            restarted = time.perf_counter() - t0
            head = await settle(stack, ns, "big", big_total, s.bound_s)
        unsettled["restarted_tumblebug"] = {
            "start_s": round(restarted, 2), "settled_s": round(time.perf_counter() - t0, 2),
            "status": head.status, "settled": _settled(head, big_total), "process_cpu": m_restart.result}
    big = await _reads(stack, ns, "big", s, profile)
    big.update(unsettled)
    big["build"] = {**built.as_dict(), "vms_per_second": _ratio(big_total, built.all_running_s, 1),
                    "vm_records_vms_per_second": _ratio(big_total, built.records_all_running_s, 1),
                    "settled_ratio_to_vm_records": _ratio(built.settled_s, built.records_all_running_s),
                    "process_cpu": m_big.result}
    big["reads_after_settled"] = built.settled_s is not None
    big["get_mcis_while_building"] = {
        **latency_stats(during), "bench_client_event_loop": client_lag.stats(),
        "note": "read from this process, which also follows the build (decoding every VM record "
                "every couple of seconds): its own loop's stalls count in these latencies"}
    big["get_mcis_while_building_isolated"] = {
        **latency_stats(during_isolated),
        "note": "the same reads from a process that does nothing else (what a client of tumblebug sees)"}
    big["get_mcis_while_building_api_replica"] = {
        **latency_stats(during_api),
        "note": "from this process, of the API-only replica (CB_TUMBLEBUG_CONTROLLER=false)"}
    big["get_mcis_while_building_api_replica_isolated"] = {
        **latency_stats(during_api_isolated), "api_replica_event_loop": api_loop,
        "note": "of the API-only replica, from a process that does nothing else"}
    return big


async def phase_delete(stack: Stack, ns: str, s: Sizes, profile: Path | None,
                       create_rate: float | None) -> dict[str, Any]:
    """Phase 4: delete the big MCIS (terminate and delete in one call), against how fast it was made."""
    big_total = s.connections * s.per_conn_big
    with Profiler(profile, stack, "delete"), Meter(stack, big_total) as m_delete:
        deleted = await delete_and_follow(stack, ns, "big", big_total, s.big_bound_s)
    deleted["process_cpu"] = m_delete.result
    deleted["create_vms_per_second"] = create_rate
    deleted["ratio_to_create"] = _ratio(deleted["vms_per_second"], create_rate)
    return deleted


async def delete_and_follow(stack: Stack, ns: str, name: str, total: int, bound: float) -> dict[str, Any]:
    """DeleteMcis(terminate) on a running MCIS: how long the call takes, and how fast its VMs go
    (each VM record goes once its cloud VM is deleted), read from etcd every 0.1 s."""
    etcd = BareEtcd(stack.etcd_port)
    try:
        t0 = time.perf_counter()
        await stack.tb.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name=name, terminate=True), timeout=60)
        rpc_s = time.perf_counter() - t0
        half_s = gone_s = None
        left = total
        while time.perf_counter() - t0 < bound:
            left = await etcd.count(keyspace.vms(ns, name))
            if left * 2 <= total and half_s is None:
                half_s = time.perf_counter() - t0
            if left == 0:
                gone_s = time.perf_counter() - t0
                break
            await asyncio.sleep(0.1)
        record_left = await etcd.get(keyspace.mcis(ns, name)) > 0
    finally:
        await etcd.close()
    return {"vms": total, "delete_rpc_ms": round(rpc_s * 1e3, 2), "half_gone_s": _round(half_s),
            "all_gone_s": _round(gone_s), "vms_left": left, "mcis_record_left": record_left,
            "vms_per_second": _ratio(total, gone_s, 1),
            "note": "VMs per second from the DeleteMcis call until every VM record is gone (a record goes "
                    "after its cloud VM is deleted); create rate: VM records all Running, same MCIS"}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    return round(a / b, digits) if a and b else None


def _throughput(followed: Followed, direct: dict[str, Any], m_tb: Meter, m_direct: Meter,
                in_flight: int) -> dict[str, Any]:
    wall = followed.all_running_s
    rate = round(followed.total / wall, 1) if wall else None
    return {"vms": followed.total,
            "tumblebug": {**followed.as_dict(), "vms_per_second": rate,
                          "vm_records_vms_per_second": _ratio(followed.total, followed.records_all_running_s, 1),
                          "process_cpu": m_tb.result},
            "spider_direct": {**direct, "process_cpu": m_direct.result},
            "ratio_to_spider_direct": round(rate / direct["vms_per_second"], 3) if rate else None,
            "note": f"spider alone gets the same number of VMs in flight as tumblebug allows ({in_flight}: "
                    "max_per_connection per connection)"}


async def _sample_when_created(tb: tumblebug_pb2_grpc.TumblebugStub, ns: str, name: str,
                               stop: asyncio.Event) -> list[float]:
    """GetMcis latencies while the MCIS is being built (from when it exists)."""
    while not stop.is_set():
        try:
            await tb.GetMcis(pb.GetMcisRequest(namespace=ns, name=name), timeout=30)
            break
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.05)
    return await sample_reads(tb, ns, name, stop)


async def _reads(stack: Stack, ns: str, name: str, s: Sizes, profile: Path | None) -> dict[str, Any]:
    etcd = BareEtcd(stack.etcd_port)
    try:
        head = await stack.tb.GetMcis(pb.GetMcisRequest(namespace=ns, name=name))
        with Profiler(profile, stack, "reads"):
            summary = await serial(lambda: stack.tb.GetMcis(pb.GetMcisRequest(namespace=ns, name=name)),
                                   s.read_seconds)
            bare = await serial(lambda: etcd.get(keyspace.mcis(ns, name)), s.read_seconds)
            from_api = await serial(lambda: stack.tb_api.GetMcis(pb.GetMcisRequest(namespace=ns, name=name)),
                                    s.read_seconds)
            full_reply: list[int] = []

            async def full() -> None:
                m = await stack.tb.GetMcis(pb.GetMcisRequest(namespace=ns, name=name, vms=True), timeout=120)
                full_reply.append(m.ByteSize())

            whole = await serial(full, 0, s.full_reads)
            bare_all = await serial(lambda: etcd.range_all(keyspace.vms(ns, name)), 0, s.full_reads)
        record_bytes = await etcd.get(keyspace.mcis(ns, name))
        vm_bytes = await etcd.range_all(keyspace.vms(ns, name))
    finally:
        await etcd.close()
    return {
        "vms": head.status_count.total, "status": head.status,
        "get_mcis": summary, "bare_etcd_get": bare, "get_mcis_api_replica": from_api,
        "p50_ratio_to_bare_etcd": round(summary["p50_ms"] / max(bare["p50_ms"], 1e-9), 2),
        "mcis_record_bytes": record_bytes,
        "get_mcis_with_vms": {**whole, "reply_bytes": full_reply[-1] if full_reply else 0},
        "bare_etcd_range_vms": {**bare_all, "bytes": vm_bytes, "page_size": 500},
        "with_vms_p50_ratio_to_bare_etcd": round(whole["p50_ms"] / max(bare_all["p50_ms"], 1e-9), 2),
    }


PHASES = ("latency", "zero", "big", "delete")


def _phases(text: str) -> set[str]:
    chosen = {p.strip() for p in text.split(",") if p.strip()}
    unknown = chosen - set(PHASES)
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"phases are {', '.join(PHASES)}; got {text!r}")
    if "delete" in chosen and "big" not in chosen:
        raise argparse.ArgumentTypeError("delete deletes the MCIS big makes: add big")
    return chosen


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--profile", type=Path, help="write py-spy samples of each phase into this directory")
    parser.add_argument("--phases", type=_phases, default=set(PHASES),
                        help=f"comma-separated phases to run, of {','.join(PHASES)} (default: all; "
                             "delete needs big)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    phases: set[str] = args.phases
    started, load_before = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="cb-bench-") as tmp:
        root = Path(tmp)
        latency = await phase_latency(root, sizes, args.profile) if "latency" in phases else None
        zero = await phase_zero(root, sizes, args.profile, phases) if phases & {"zero", "big"} else {}
    out = {
        "benchmark": "tumblebug", "quick": args.quick, "cpus": os.cpu_count(),
        # The machine is shared: other work running meanwhile shows here (1-minute load averages).
        "load_average": {"start": round(load_before[0], 2), "end": round(os.getloadavg()[0], 2)},
        "tumblebug_settings": {**tumblebug_settings(), "dragonfly": "none (no agents on the VMs)"},
        "spider_connection_limits": {
            "rate_per_second": LIMITS.rate_per_second, "burst": LIMITS.burst,
            "max_concurrency": LIMITS.max_concurrency,
            "why": "lifted on every connection (tumblebug's and the spider-alone baseline's): this measures "
                   "the software, not spider's protective pacing; the defaults (100/s, burst 200, 128 at "
                   "once) would not bind phases 1-2 (100 VMs per connection) either"},
        "phases": sorted(phases, key=PHASES.index),
        **({"create_with_latency": latency} if latency is not None else {}), **zero,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--sample-reads"]:
        address, ns, name = sys.argv[2:5]
        asyncio.run(_sample_forever(address, ns, name))
    else:
        asyncio.run(main())
