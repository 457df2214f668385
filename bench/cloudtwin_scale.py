"""CloudTwin at Cloud-Barista's scale: 100 providers × 100 VMs, a cb-agent in every VM; prints one JSON document.

The suite runs on loopback in a temporary directory: etcd, NATS in operator mode (the suite's JWT
auth, as the launcher runs it), one dragonfly replica (memory backend) and CloudTwin with its guest
helper processes. Each VM gets its own credential and user-data from dragonfly's
`IssueAgentCredential` and is then created directly through CloudTwin's API (`CreateResource`,
one account, one region per provider): spider's path to the cloud is measured by
`bench/spider.py`; here the agents are what is measured. The VMs of a provider form one MCIS
(`twin.pNNN`), so each provider's interval is set through `UpdateMonitoringConfig`.

The boot (`boot`): from the first VM made until every agent is registered and healthy, with
the registered and healthy counts along the way (`timeline`), how many registration requests the
agents sent (`registrations`: an agent whose request timed out sends another) and, with
`--profile`, where dragonfly and the helpers spent their time meanwhile; `--boot-only` stops there.

Phases, all on the same agents: first the raw NATS ceiling (a nats-py publisher into a subscriber,
and request/reply into a queue-group responder, on the same server, before any agent exists), then
every interval given (`--intervals 5,1`): a warm-up, then a window in which are measured

- points sent (sampled by the agents) and ingested (stored and acknowledged) per second, from the
  agents' heartbeats (dragonfly's `ListAgents`: seq, backlog, dropped) at both ends of the window;
- end-to-end lag, sampled on the wire for the first MCISes: from the time in a batch (when the
  agent sampled it) to the collector's acknowledgement (sent once stored); batches sent again
  after a lost acknowledgement are counted;
- CPU (cores) and memory of every process, and the CPU the rest of the machine used meanwhile.

At the end every MCIS is set to a 1 h interval (the agents go quiet), every agent is asked for its
status (seq, backlog, dropped) until the backlogs are empty (or stop shrinking; after an overload
the agents first sample every 10 s while they catch up), and the stored points of every VM are
counted: points lost = sampled − stored (exact once no backlog is left).

Last, with every agent quiet, the CPU of nats-server and dragonfly over `--idle-window` seconds: the
fleet's fixed cost; each phase then also reports its marginal µs per agent-interval (above it).

Usage: python bench/cloudtwin_scale.py [--quick] [--providers N] [--vms N] [--intervals 5,1]
                                       [--window S] [--idle-window S] [--shards N] [--profile DIR]
                                       [--boot-only]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil
from nats.aio.client import Client
from nats.aio.msg import Msg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as tw_grpc
from cbapi.dragonfly.v1 import dragonfly_pb2 as dpb
from cbapi.dragonfly.v1 import dragonfly_pb2_grpc as dpb_grpc
from dragonfly.agent.sources import TwinSource
from dragonfly.protocol.config import TwinSpec
from dragonfly.protocol.subjects import VmId
from services import natsauth
from services import processes as procs
from services.rpc.client import channel

NS = "twin"
TWIN_AUTH = (("x-twin-access-key", "cloudtwin-scale"), ("x-twin-secret-key", "bench"))
QUIET_INTERVAL_S = 3600.0
DRAIN_INTERVAL_S = 10.0
GRPC_OPTIONS = [("grpc.max_receive_message_length", 256 << 20)]


def mcis_name(provider: int) -> str:
    return f"p{provider:03d}"


def vm_name(index: int) -> str:
    return f"vm-{index:03d}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def ms(seconds: float) -> float:
    return round(seconds * 1e3, 1)


async def bounded(calls: Iterable[Callable[[], Awaitable[None]]], concurrency: int) -> None:
    """Run the calls with at most `concurrency` in flight."""
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await call()

    await asyncio.gather(*(one(c) for c in calls))


# ---------------------------------------------------------------- the suite


@dataclass
class Suite:
    """etcd, NATS (operator mode), dragonfly and CloudTwin with its guests, in `root`."""

    root: Path
    providers: int
    shards: int
    procs: list[procs.Proc] = field(default_factory=list)

    async def __aenter__(self) -> Suite:
        self.auth = natsauth.write_suite_auth(self.root / "nats-auth")
        etcd_port, self.nats_port = procs.free_port(), procs.free_port()
        df_port, twin_port = procs.free_port(), procs.free_port()
        self.nats_url = f"nats://127.0.0.1:{self.nats_port}"
        # Registrations go to etcd once per agent; no fsync keeps the disk out of the numbers.
        procs.own_authority(self.root / "tls")
        etcd = procs.etcd(self.root, etcd_port, durable=False)
        self.procs.append(etcd)
        await procs.start_tcp(etcd, etcd_port)
        self.nats = procs.nats(self.root, self.nats_port, self.auth.server_config)
        # Its monitoring port: messages in and out per phase (/varz), read only between windows.
        self.nats_http_port = procs.free_port()
        self.nats.argv += ["-m", str(self.nats_http_port)]
        self.procs.append(self.nats)
        await procs.start_tcp(self.nats, self.nats_port)
        self.dragonfly = procs.python_service("dragonfly", "dragonfly.server", self.root, {
            "CB_DRAGONFLY_PORT": str(df_port), "CB_DRAGONFLY_HOST": "127.0.0.1",
            "CB_ETCD_ENDPOINTS": f"127.0.0.1:{etcd_port}", "CB_NATS_URL": self.nats_url,
            "CB_NATS_CREDS_FILE": str(self.auth.dragonfly_creds),
            "CB_DRAGONFLY_AGENT_SIGNER_FILE": str(self.auth.signer),
            "CB_DRAGONFLY_ACCOUNT_ADMIN_FILE": str(self.auth.account_admin), "CB_LOG_LEVEL": "WARNING",
            # The final count reads every VM's raw points back to the first: the memory backend's
            # budget must hold the whole run (its raw share is a quarter; at the 1 GiB default,
            # 10,000 VMs keep only the floor of 3 minutes).
            "CB_DRAGONFLY_MEMORY_MB": str(MEMORY_MB)})
        self.procs.append(self.dragonfly)
        await procs.start_grpc(self.dragonfly, df_port)
        self.twin = procs.python_service("cloudtwin", "spider.cloudtwin.server", self.root, {
            "CB_CLOUDTWIN_PORT": str(twin_port), "CB_CLOUDTWIN_HOST": "127.0.0.1",
            "CB_CLOUDTWIN_PROVIDERS": str(self.providers), "CB_CLOUDTWIN_CREATE_LATENCY": "0",
            "CB_CLOUDTWIN_BOOT_LATENCY": "0", "CB_CLOUDTWIN_GUEST_SHARDS": str(self.shards),
            "CB_CLOUDTWIN_GUEST_DIR": str(self.root / "guests"), "CB_LOG_LEVEL": "WARNING"})
        self.procs.append(self.twin)
        await procs.start_grpc(self.twin, twin_port)
        self.df_channel = channel(f"127.0.0.1:{df_port}", options=GRPC_OPTIONS)
        self.df = dpb_grpc.DragonflyStub(self.df_channel)
        self.twin_channel = channel(f"127.0.0.1:{twin_port}", options=GRPC_OPTIONS)
        self.cloud = tw_grpc.CloudTwinStub(self.twin_channel)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.df_channel.close()
        await self.twin_channel.close()
        for proc in reversed(self.procs):
            proc.stop(20.0)

    async def connect(self, name: str, reconnect: bool = False) -> Client:
        nc = Client()
        creds = natsauth.Signer.load(self.auth.signer.read_text()).issue(name, natsauth.Permissions(unrestricted=True))
        async def quiet(err: Exception) -> None:
            """NATS away on purpose (the outage): no traceback on stderr."""

        await nc.connect(self.nats_url, name=name, allow_reconnect=reconnect, max_reconnect_attempts=-1,
                         reconnect_time_wait=0.5, connect_timeout=10, error_cb=quiet,  # type: ignore[arg-type]
                         **creds.client_options())
        return nc

    async def restart_nats(self, down_s: float) -> None:
        """NATS away for `down_s`, then back on the same port with the same authority."""
        self.nats.stop()
        await asyncio.sleep(down_s)
        self.nats.popen = None
        await procs.start_tcp(self.nats, self.nats_port)

    def processes(self) -> dict[str, int]:
        """Name → PID of every process of the suite, the guest helpers and this benchmark."""
        out = {p.name: p.pid for p in self.procs if p.alive()}
        try:
            helpers = [c for c in psutil.Process(self.twin.pid).children()
                       if "dragonfly.agent.guests" in " ".join(c.cmdline())]
        except psutil.Error:
            helpers = []
        for i, child in enumerate(sorted(helpers, key=lambda c: c.pid)):
            out[f"guests-{i}"] = child.pid
        out["bench"] = os.getpid()
        return out


# ---------------------------------------------------------------- CPU and memory


@dataclass
class Usage:
    """CPU seconds and resident memory of named processes, and the machine's busy CPU, at one moment."""

    at: float
    pids: dict[str, int]
    cpu_s: dict[str, float]
    rss: dict[str, int]
    machine_busy_s: float

    @classmethod
    def take(cls, pids: dict[str, int]) -> Usage:
        cpu, rss = {}, {}
        for name, pid in pids.items():
            try:
                proc = psutil.Process(pid)
                with proc.oneshot():
                    t = proc.cpu_times()
                    cpu[name], rss[name] = t.user + t.system, proc.memory_info().rss
            except psutil.Error:
                continue
        m = psutil.cpu_times()
        return cls(time.monotonic(), dict(pids), cpu, rss, m.user + m.nice + m.system + m.irq + m.softirq + m.steal)

    def since(self, before: Usage) -> dict[str, Any]:
        span = max(1e-9, self.at - before.at)

        def earlier(name: str) -> float:
            # A process started meanwhile (NATS restarted, a helper started) counts from zero.
            same = before.pids.get(name) == self.pids.get(name)
            return before.cpu_s.get(name, 0.0) if same else 0.0

        per = {name: {"cpu_cores": round((self.cpu_s[name] - earlier(name)) / span, 3),
                      "rss_mb": round(self.rss[name] / 2**20, 1)} for name in self.cpu_s}
        ours = sum(p["cpu_cores"] for p in per.values())
        busy = (self.machine_busy_s - before.machine_busy_s) / span
        return {"processes": per, "suite_cpu_cores": round(ours, 3), "machine_busy_cores": round(busy, 3),
                "other_cpu_cores": round(max(0.0, busy - ours), 3), "cores": psutil.cpu_count(),
                "load_average_1m": round(os.getloadavg()[0], 2)}


# dragonfly's memory budget for the run (see Suite.start).
MEMORY_MB = 12288


class Profiler:
    """py-spy (raw stacks) on dragonfly and the guest helpers for `seconds`; started only with --profile."""

    def __init__(self, out_dir: Path | None, pids: dict[str, int], tag: str, seconds: float,
                 native: bool = False) -> None:
        self.out_dir, self.pids, self.tag, self.seconds = out_dir, pids, tag, seconds
        # C frames too (gRPC's and nats-py's callbacks have no Python caller without them).
        self.native = native
        self.runs: list[tuple[str, Path, subprocess.Popen[bytes]]] = []

    def start(self) -> None:
        if self.out_dir is None:
            return
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
        if spy is None:
            raise SystemExit("--profile needs py-spy in the environment (pip install py-spy)")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            if name == "dragonfly" or name.startswith("guests-"):
                out = self.out_dir / f"{self.tag}-{name}.txt"
                self.runs.append((name, out, subprocess.Popen(
                    [spy, "record", "--pid", str(pid), "--rate", "50", "--duration", str(max(1, int(self.seconds))),
                     "--format", "raw", *(["--native"] if self.native else ["--nonblocking"]),
                     "--output", str(out)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))

    def stop(self) -> None:
        """End the recordings now (py-spy writes what it has on SIGINT): a phase of unknown length."""
        for _, _, child in self.runs:
            with contextlib.suppress(OSError):
                child.send_signal(signal.SIGINT)

    def finish(self) -> dict[str, Any]:
        """Wait for py-spy; the top functions by own samples and by inclusive samples per process."""
        out: dict[str, Any] = {}
        for name, path, child in self.runs:
            try:
                child.wait(self.seconds + 30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            out[name] = summarize_stacks(path)
        return out


def summarize_stacks(path: Path, top: int = 12) -> dict[str, Any]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {"samples": 0}
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].rstrip(")") for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return {"samples": total, "file": str(path),
            "own": [(f, round(100 * n / max(1, total), 1)) for f, n in own.most_common(top)],
            "inclusive": [(f, round(100 * n / max(1, total), 1)) for f, n in inclusive.most_common(top)]}


# ---------------------------------------------------------------- NATS ceiling


async def nats_ceiling(suite: Suite, seconds: float, payload_size: int) -> dict[str, Any]:
    """What the same server and the same client library carry with nothing else in the way."""
    pids = suite.processes()
    payload = b"x" * payload_size
    pub, sub = await suite.connect("ceiling-pub"), await suite.connect("ceiling-sub")
    received, wanted = 0, 0
    caught_up = asyncio.Event()

    async def count(msg: Msg) -> None:
        nonlocal received
        received += 1
        if received >= wanted:
            caught_up.set()

    await sub.subscribe("bench.ceiling.oneway", cb=count)
    await sub.flush()
    before = Usage.take(pids)
    sent, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        for _ in range(500):
            await pub.publish("bench.ceiling.oneway", payload)
        sent += 500
        await pub.flush()
        # Keep the subscriber within reach so the rate is what it takes, not what was queued.
        wanted = sent - 20_000
        if received < wanted:
            caught_up.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(caught_up.wait(), 5.0)
    wanted = sent
    if received < wanted:
        caught_up.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(caught_up.wait(), 5.0)
    elapsed = time.monotonic() - t0
    oneway = {"payload_bytes": payload_size, "sent": sent, "received": received,
              "msgs_per_s": round(received / elapsed), "mb_per_s": round(received * payload_size / elapsed / 2**20, 1),
              "nats_server_cpu_cores": Usage.take(pids).since(before)["processes"].get("nats", {}).get("cpu_cores")}

    async def answer(msg: Msg) -> None:
        await msg.respond(b'{"ok":true}')

    await sub.subscribe("bench.ceiling.request", queue="ceiling", cb=answer)
    await sub.flush()
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds

    async def requester() -> None:
        while time.monotonic() < stop_at:
            t = time.perf_counter()
            await pub.request("bench.ceiling.request", payload, timeout=5)
            latencies.append(time.perf_counter() - t)

    before = Usage.take(pids)
    t0 = time.monotonic()
    await asyncio.gather(*(requester() for _ in range(128)))
    elapsed = time.monotonic() - t0
    request = {"payload_bytes": payload_size, "in_flight": 128, "requests": len(latencies),
               "requests_per_s": round(len(latencies) / elapsed), "p50_ms": ms(percentile(latencies, 0.5)),
               "p99_ms": ms(percentile(latencies, 0.99)),
               "nats_server_cpu_cores": Usage.take(pids).since(before)["processes"].get("nats", {}).get("cpu_cores")}
    await pub.close()
    await sub.close()
    return {"client": "nats-py, publisher and subscriber in this one process (one core at most)",
            "pub_sub": oneway, "request_reply": request}


# ---------------------------------------------------------------- making the VMs


@dataclass
class Target:
    provider: str
    region: str
    spec: str
    image: str


async def targets(suite: Suite, count: int) -> list[Target]:
    """One region per provider with its smallest x86 spec and an image for it."""
    providers = (await suite.cloud.ListProviders(tw.ListProvidersRequest(), metadata=TWIN_AUTH)).providers[:count]
    out = []
    for p in providers:
        region = p.regions[0]
        specs = (await suite.cloud.DescribeSpecs(tw.DescribeSpecsRequest(provider=p.name, region=region),
                                                  metadata=TWIN_AUTH)).specs
        images = (await suite.cloud.DescribeImages(tw.DescribeImagesRequest(provider=p.name, region=region),
                                                    metadata=TWIN_AUTH)).images
        by_arch = {i.architecture: i.id for i in images}
        spec = min((s for s in specs if s.architecture in by_arch and s.gpu_count == 0),
                   key=lambda s: (s.vcpu, s.memory_gib))
        out.append(Target(p.name, region, spec.name, by_arch[spec.architecture]))
    if len(out) < count:
        raise SystemExit(f"CloudTwin plays only {len(out)} providers")
    return out


@dataclass
class Making:
    """How far the making of the VMs is, and how long its two calls took (summed over the VMs)."""

    created: int = 0
    issue_s: float = 0.0
    create_s: float = 0.0

    def result(self) -> dict[str, float]:
        per = max(1, self.created)
        return {"issue_credential_ms": ms(self.issue_s / per), "create_vm_ms": ms(self.create_s / per)}


async def make_vms(suite: Suite, places: list[Target], per_provider: int, interval_s: float,
                   making: Making | None = None) -> float:
    """Set each MCIS's interval, mint every VM's credential and create the VMs; returns seconds taken."""
    t0 = time.monotonic()
    made = making or Making()
    await set_interval(suite, len(places), interval_s)

    def create(p: int, v: int) -> Callable[[], Awaitable[None]]:
        async def call() -> None:
            t1 = time.monotonic()
            cred = await suite.df.IssueAgentCredential(dpb.IssueAgentCredentialRequest(
                ns=NS, mcis=mcis_name(p), vm=vm_name(v)))
            t2 = time.monotonic()
            t = places[p]
            await suite.cloud.CreateResource(tw.CreateResourceRequest(
                provider=t.provider, region=t.region, name=f"{mcis_name(p)}-{vm_name(v)}", client_token=uuid.uuid4().hex,
                vm=tw.VmProps(spec=t.spec, image_id=t.image, user_data=cred.user_data)), metadata=TWIN_AUTH)
            made.created += 1
            made.issue_s += t2 - t1
            made.create_s += time.monotonic() - t2
        return call

    # Provider by provider, so the agents of the first MCISes start while the last are being made.
    await bounded((create(p, v) for p in range(len(places)) for v in range(per_provider)), 32)
    return time.monotonic() - t0


# ---------------------------------------------------------------- what the agents say


async def nats_varz(suite: Suite) -> dict[str, int]:
    """nats-server's message and byte counters (in: from clients, out: delivered to them)."""
    def read() -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{suite.nats_http_port}/varz", timeout=5) as answer:
            body = json.load(answer)
        return {k: int(body.get(k, 0)) for k in ("in_msgs", "out_msgs", "in_bytes", "out_bytes")}
    try:
        return await asyncio.to_thread(read)
    except (OSError, ValueError):
        return {}


@dataclass
class Sweep:
    """Every agent as dragonfly knows it from its heartbeats, at one moment."""

    at: float
    agents: dict[str, dpb.Agent]

    @classmethod
    async def take(cls, suite: Suite) -> Sweep:
        agents: dict[str, dpb.Agent] = {}
        token = ""
        while True:
            page = await suite.df.ListAgents(dpb.ListAgentsRequest(ns=NS, page_size=1000, page_token=token))
            for a in page.agents:
                agents[f"{a.mcis}.{a.vm}"] = a
            token = page.next_page_token
            if not token:
                return cls(time.monotonic(), agents)

    def healthy(self) -> int:
        return sum(1 for a in self.agents.values() if a.health == dpb.HEALTHY)

    def totals(self) -> dict[str, int]:
        seq = sum(a.seq for a in self.agents.values())
        backlog = sum(a.backlog for a in self.agents.values())
        dropped = sum(a.dropped for a in self.agents.values())
        return {"seq": seq, "backlog": backlog, "dropped": dropped, "acked": seq - backlog - dropped}


async def wait_healthy(suite: Suite, count: int, timeout: float,
                       seen: Callable[[Sweep], None] = lambda sweep: None) -> tuple[float, Sweep]:
    t0 = time.monotonic()
    while True:
        sweep = await Sweep.take(suite)
        seen(sweep)
        if sweep.healthy() >= count or time.monotonic() - t0 > timeout:
            return time.monotonic() - t0, sweep
        await asyncio.sleep(1.0)


@dataclass
class BootTimeline:
    """VMs made, registration requests sent, agents registered and healthy, at each look."""

    making: Making
    registers: RegisterWatch
    since: float
    points: list[dict[str, float]] = field(default_factory=list)

    def seen(self, sweep: Sweep) -> None:
        self.points.append({"s": round(time.monotonic() - self.since, 1), "made": self.making.created,
                            "requests": self.registers.requests, "registered": len(sweep.agents),
                            "healthy": sweep.healthy()})

    async def follow(self, suite: Suite, every_s: float = 2.0) -> None:
        """Until cancelled (while the VMs are made; `wait_healthy` looks after that)."""
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                self.seen(await Sweep.take(suite))
            await asyncio.sleep(every_s)


class RegisterWatch:
    """The agents' registration requests during the boot (every one, sent again or not) and how
    long each took to be answered (an agent waits 2 s, then asks again later)."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.requests = 0
        self.vms: set[str] = set()
        self._asked: dict[str, float] = {}  # reply subject -> when asked
        self.waits: list[float] = []

    async def start(self) -> None:
        self._subs = [await self.nc.subscribe(f"cb.register.{NS}.>", cb=self._on_register),
                      # The answers go to the agents' inboxes (with the acknowledgements of their batches).
                      await self.nc.subscribe(f"_INBOX.{NS}.>", cb=self._on_answer)]
        await self.nc.flush()

    async def _on_register(self, msg: Msg) -> None:
        self.requests += 1
        self.vms.add(msg.subject)
        if msg.reply:
            self._asked[msg.reply] = time.monotonic()

    async def _on_answer(self, msg: Msg) -> None:
        asked = self._asked.pop(msg.subject, None)
        if asked is not None:
            self.waits.append(time.monotonic() - asked)

    async def stop(self) -> dict[str, Any]:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return {"requests": self.requests, "agents": len(self.vms),
                "per_agent": round(self.requests / max(1, len(self.vms)), 2), "answered": len(self.waits),
                "answered_after_2s": sum(1 for w in self.waits if w > 2.0),
                "answer_p50_ms": ms(percentile(self.waits, 0.5)), "answer_p99_ms": ms(percentile(self.waits, 0.99)),
                "answer_max_ms": ms(max(self.waits, default=0.0))}


class LagWatch:
    """Listens to the batches of some MCISes and to the acknowledgements the collectors send back."""

    def __init__(self, nc: Client, mcises: list[str]) -> None:
        self.nc = nc
        self.mcises = mcises
        self._asked: dict[tuple[str, str, int], float] = {}
        self._seen: set[tuple[str, str, int]] = set()
        self.reset()

    def reset(self) -> None:
        self.lags: list[float] = []
        self.requests = 0
        self.resent = 0

    async def start(self) -> None:
        for m in self.mcises:
            await self.nc.subscribe(f"cb.metrics.{NS}.{m}.>", cb=self._on_batch)
            await self.nc.subscribe(f"_INBOX.{NS}.{m}.>", cb=self._on_ack)
        await self.nc.flush()

    async def _on_batch(self, msg: Msg) -> None:
        try:
            batch = json.loads(msg.data)
            key = (str(batch["vm"]), str(batch["boot"]), int(batch["seq"]))
            sampled = float(batch["time"])
        except (ValueError, KeyError, TypeError):
            return
        self.requests += 1
        if key in self._seen:
            self.resent += 1
        self._seen.add(key)
        self._asked.setdefault(key, sampled)

    async def _on_ack(self, msg: Msg) -> None:
        # Cumulative: `{"boot", "seqs": [[lo, hi], ...]}` on the agent's `_INBOX.{vm}.acks`.
        try:
            body = json.loads(msg.data)
            vm = msg.subject[len("_INBOX."):].rsplit(".", 1)[0]
            boot, ranges = str(body["boot"]), body["seqs"]
        except (ValueError, KeyError, TypeError):
            return
        now = time.time()
        for lo, hi in ranges:
            for seq in range(int(lo), int(hi) + 1):
                sampled = self._asked.pop((vm, boot, seq), None)
                if sampled is not None:
                    self.lags.append(now - sampled)

    def result(self) -> dict[str, Any]:
        return {"mcises_watched": len(self.mcises), "batches_seen": self.requests, "acks_seen": len(self.lags),
                "resent_batches": self.resent, "p50_ms": ms(percentile(self.lags, 0.5)),
                "p99_ms": ms(percentile(self.lags, 0.99)), "max_ms": ms(max(self.lags, default=0.0))}


# ---------------------------------------------------------------- one interval


async def phase(suite: Suite, watch: LagWatch, agents: int, providers: int, interval_s: float, before_s: float,
                window_s: float, profile_dir: Path | None, native: bool = False) -> dict[str, Any]:
    """Switch every MCIS to `interval_s`, let it settle, then measure one window."""
    await set_interval(suite, providers, interval_s)
    # The agents take the new interval after the sleep they are in; then two intervals to settle.
    await asyncio.sleep(before_s + 2 * interval_s)
    pids = suite.processes()
    profiler = Profiler(profile_dir, pids, f"interval-{interval_s:g}s", window_s, native)
    first, usage0, varz0 = await Sweep.take(suite), Usage.take(pids), await nats_varz(suite)
    watch.reset()
    profiler.start()
    await asyncio.sleep(window_s)
    last, usage1, varz1 = await Sweep.take(suite), Usage.take(pids), await nats_varz(suite)
    lag = watch.result()
    a, b = first.totals(), last.totals()
    span = last.at - first.at
    expected = agents / interval_s
    sent = (b["seq"] - a["seq"]) / span
    ingested = (b["acked"] - a["acked"]) / span
    dropped = b["dropped"] - a["dropped"]
    lost_restarts = sum(1 for k, x in last.agents.items() if k in first.agents and x.boot != first.agents[k].boot)
    out: dict[str, Any] = {
        "interval_s": interval_s, "agents": agents, "window_s": round(span, 1),
        "points_expected_per_s": round(expected, 1), "points_sent_per_s": round(sent, 1),
        "points_ingested_per_s": round(ingested, 1),
        "ingested_to_sent": round(ingested / sent, 4) if sent else 0.0,
        "sent_to_expected": round(sent / expected, 4) if expected else 0.0,
        "lag": lag, "points_dropped_by_agents": dropped,
        "backlog_at_start": a["backlog"], "backlog_at_end": b["backlog"],
        "healthy_at_end": last.healthy(), "agent_restarts": lost_restarts,
        "usage": usage1.since(usage0),
    }
    # The monitoring side's cost: CPU of nats-server and dragonfly per agent per interval.
    procs_usage = out["usage"]["processes"]
    server_cores = sum(procs_usage.get(n, {}).get("cpu_cores", 0.0) for n in ("nats", "dragonfly"))
    out["server_us_per_agent_interval"] = round(server_cores * 1e6 / expected, 1) if expected else 0.0
    # What NATS carried per agent-interval (the lag watch's own subscription included).
    if varz0 and varz1 and expected:
        out["nats_per_agent_interval"] = {k: round((varz1[k] - varz0[k]) / span / expected, 3) for k in varz0}
    out["suite_us_per_agent_interval"] = round(out["usage"]["suite_cpu_cores"] * 1e6 / expected, 1) if expected else 0.0
    # Sustained: every agent keeps its interval, everything sent is stored within the window
    # (the backlogs do not grow), nothing is dropped, and p99 lag stays under two intervals.
    out["sustained"] = bool(out["sent_to_expected"] >= 0.97 and out["ingested_to_sent"] >= 0.99 and dropped == 0
                            and b["backlog"] <= a["backlog"] + agents * 0.05 and lag["acks_seen"] > 0
                            and lag["p99_ms"] <= 2000 * interval_s and last.healthy() == agents)
    if profile_dir is not None:
        out["profile"] = profiler.finish()
    return out


# ---------------------------------------------------------------- fixed and marginal cost


async def idle(suite: Suite, agents: int, window_s: float) -> dict[str, Any]:
    """CPU of the monitoring side with every agent connected and quiet (1 h interval, after the
    final count): what the fleet costs whatever the interval (connections, sweeps, timers,
    workload reports every 15 s)."""
    pids = suite.processes()
    usage0 = Usage.take(pids)
    await asyncio.sleep(window_s)
    usage = Usage.take(pids).since(usage0)
    cores = {n: usage["processes"].get(n, {}).get("cpu_cores", 0.0) for n in ("nats", "dragonfly")}
    return {"agents": agents, "window_s": window_s, "cores": cores,
            "us_per_agent_per_s": {n: round(c * 1e6 / agents, 2) for n, c in cores.items()}, "usage": usage}


def marginal(phase: dict[str, Any], quiet: dict[str, Any]) -> dict[str, float]:
    """µs of CPU per agent-interval above the quiet fleet's, per server process: the per-message cost."""
    expected = phase["points_expected_per_s"]
    procs_usage = phase["usage"]["processes"]
    out = {n: round((procs_usage.get(n, {}).get("cpu_cores", 0.0) - quiet["cores"][n]) * 1e6 / expected, 1)
           for n in ("nats", "dragonfly")}
    out["server"] = round(out["nats"] + out["dragonfly"], 1)
    return out


# ---------------------------------------------------------------- NATS away


async def outage(suite: Suite, agents: int, interval_s: float, down_s: float, timeout: float) -> dict[str, Any]:
    """NATS stopped for `down_s` and started again: every agent reconnects at once (paced per helper),
    registers again and sends what it kept meanwhile."""
    before = await Sweep.take(suite)
    pids = suite.processes()
    usage0 = Usage.take(pids)
    t0 = time.monotonic()
    await suite.restart_nats(down_s)
    back = time.monotonic()
    back_wall = time.time()
    peak_backlog, last = 0, before
    timeline: list[dict[str, float]] = []
    while time.monotonic() - back < timeout:
        await asyncio.sleep(1.0)
        with contextlib.suppress(grpc.aio.AioRpcError):
            last = await Sweep.take(suite)
            totals = last.totals()
            peak_backlog = max(peak_backlog, totals["backlog"])
            heard = sum(1 for a in last.agents.values() if a.last_heartbeat_time.ToSeconds() >= back_wall)
            registered = sum(1 for a in last.agents.values() if a.registered_time.ToSeconds() >= back_wall)
            timeline.append({"s": round(time.monotonic() - back, 1), "heard": heard, "registered_again": registered,
                             "healthy": last.healthy(), "backlog": totals["backlog"]})
            # Everyone heard from since NATS came back, and the backlogs at their usual one batch each.
            if heard == agents and last.healthy() == agents and totals["backlog"] <= agents:
                break
    recovered = time.monotonic() - back
    a, b = before.totals(), last.totals()
    return {"interval_s": interval_s, "agents": agents, "nats_down_s": round(back - t0, 1),
            "all_back_s": round(recovered, 1), "recovered": recovered < timeout,
            "healthy_after": last.healthy(), "peak_backlog": peak_backlog,
            "points_dropped_by_agents": b["dropped"] - a["dropped"],
            "usage": Usage.take(suite.processes()).since(usage0),
            "timeline": timeline[::max(1, len(timeline) // 12)]}


# ---------------------------------------------------------------- the final count


async def agent_status(nc: Client, keys: list[str]) -> dict[str, dict[str, Any]]:
    """Every agent's own account (seq, sent, backlog, dropped), asked directly over NATS."""
    out: dict[str, dict[str, Any]] = {}

    def ask(key: str) -> Callable[[], Awaitable[None]]:
        async def call() -> None:
            mcis, vm = key.split(".")
            with contextlib.suppress(Exception):
                reply = await nc.request(VmId(NS, mcis, vm).request("status"), b"", timeout=10)
                out[key] = json.loads(reply.data)
        return call

    await bounded((ask(k) for k in keys), 256)
    return out


async def set_interval(suite: Suite, providers: int, interval_s: float) -> None:
    for i in range(providers):
        await suite.df.UpdateMonitoringConfig(dpb.UpdateMonitoringConfigRequest(
            ns=NS, mcis=mcis_name(i), config=dpb.MonitoringConfig(interval_s=interval_s)))


async def drain(nc: Client, keys: list[str], until: int, patience_s: float, deadline: float
                ) -> tuple[dict[str, dict[str, Any]], int]:
    """Ask every agent until their backlogs hold at most `until` batches in all, or stop shrinking."""
    best, best_at = -1, time.monotonic()
    while True:
        status = await agent_status(nc, keys)
        backlog = sum(int(s.get("backlog", 0)) for s in status.values())
        if backlog < best or best < 0:
            best, best_at = backlog, time.monotonic()
        if (backlog <= until and len(status) == len(keys)) or time.monotonic() > deadline \
                or time.monotonic() - best_at > patience_s:
            return status, backlog
        await asyncio.sleep(2.0)


async def reconcile(suite: Suite, nc: Client, keys: list[str], providers: int, last_interval_s: float,
                    overloaded: bool, started: float, drain_s: float) -> dict[str, Any]:
    """Quiet every agent, wait for the backlogs to empty, then count what was sampled and what was stored.

    An agent sends its backlog when it wakes to sample. After an overload the agents first sample every
    10 s (so they keep waking, and sending what they hold, at a tenth of the load), until their
    backlogs are down to about one batch each; then every hour, which leaves them quiet after one
    last batch."""
    t0 = time.monotonic()
    deadline = t0 + drain_s
    if overloaded:
        await set_interval(suite, providers, DRAIN_INTERVAL_S)
        await asyncio.sleep(last_interval_s + 1.0)
        await drain(nc, keys, len(keys), 60.0, deadline)
        last_interval_s = DRAIN_INTERVAL_S
    await set_interval(suite, providers, QUIET_INTERVAL_S)
    await asyncio.sleep(last_interval_s + 1.0)
    status, _ = await drain(nc, keys, 0, 30.0, deadline)
    drained_s = time.monotonic() - t0
    stored: dict[str, int] = {}
    for i in range(providers):
        res = await suite.df.QueryMcisMetrics(dpb.QueryMcisMetricsRequest(
            # Back to before the first VM was made (the drain above may have taken minutes).
            ns=NS, mcis=mcis_name(i), group="cpu", duration=f"{int(time.monotonic() - started) + 60}s"))
        for series in res.series:
            # Series name a VM by its bare name.
            stored[f"{mcis_name(i)}.{series.vm.rsplit('.', 1)[-1]}"] = len(series.points)
    sampled = sum(int(s.get("seq", 0)) for s in status.values())
    total_stored = sum(stored.get(k, 0) for k in status)
    waiting = sum(int(s.get("backlog", 0)) for s in status.values())
    over = sum(max(0, stored.get(k, 0) - int(s.get("seq", 0))) for k, s in status.items())
    settled = waiting == 0 and len(status) == len(keys)
    return {"agents_answering": len(status), "agents": len(keys), "drain_wait_s": round(drained_s, 1),
            "points_sampled": sampled, "points_stored": total_stored, "points_in_backlogs": waiting,
            "points_dropped_by_agents": sum(int(s.get("dropped", 0)) for s in status.values()),
            # Exact once every backlog is empty; otherwise a batch stored but not yet acknowledged is
            # in both counts, so only bounds can be given.
            "points_lost": sampled - total_stored if settled else None,
            "points_lost_at_most": sampled - total_stored, "points_stored_twice": over}


# ---------------------------------------------------------------- the run


def batch_size() -> int:
    spec = TwinSpec("127.0.0.2", 2, 4 << 30, 40 << 30, "/nonexistent")
    source = TwinSource(spec, "twin.p000.vm-000", lambda: ())
    source.sample()
    batch = {"vm": "twin.p000.vm-000", "boot": "0" * 12, "seq": 1, "time": time.time(), "interval_s": 1.0,
             "groups": source.sample()}
    return len(json.dumps(batch, separators=(",", ":")))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    agents = args.providers * args.vms
    intervals = [float(x) for x in args.intervals.split(",")]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cb-bench-twin-") as tmp:
        async with Suite(Path(tmp), args.providers, args.shards) as suite:
            ceiling = await nats_ceiling(suite, args.ceiling_s, batch_size())
            places = await targets(suite, args.providers)
            boot_pids = suite.processes()
            boot_usage0 = Usage.take(boot_pids)
            registers = RegisterWatch(await suite.connect("cloudtwin-scale-boot"))
            await registers.start()
            profiler = Profiler(args.profile, boot_pids, "boot", args.boot_timeout, args.profile_native)
            profiler.start()
            boot_t0 = time.monotonic()
            making = Making()
            timeline = BootTimeline(making, registers, boot_t0)
            follower = asyncio.create_task(timeline.follow(suite))
            made_s = await make_vms(suite, places, args.vms, intervals[0], making)
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            healthy_s, sweep = await wait_healthy(suite, agents, args.boot_timeout, timeline.seen)
            boot_s = time.monotonic() - boot_t0
            profiler.stop()
            boot = {"agents": agents, "vms_created_s": round(made_s, 1), "all_healthy_s": round(healthy_s, 1),
                    "boot_s": round(boot_s, 1), **making.result(),
                    "healthy": sweep.healthy(), "registered": len(sweep.agents),
                    "registrations": await registers.stop(),
                    "timeline": timeline.points[::max(1, len(timeline.points) // 20)] + timeline.points[-1:],
                    "usage": Usage.take(suite.processes()).since(boot_usage0)}
            await registers.nc.close()
            if args.profile is not None:
                boot["profile"] = profiler.finish()
            if sweep.healthy() < agents:
                raise SystemExit(f"only {sweep.healthy()} of {agents} agents became healthy: {json.dumps(boot)}")
            if args.boot_only:
                return {"nats_ceiling": ceiling, "boot": boot, "shards": args.shards,
                        "wall_s": round(time.monotonic() - started, 1)}
            nc = await suite.connect("cloudtwin-scale", reconnect=True)
            watch = LagWatch(nc, [mcis_name(i) for i in range(max(1, args.providers // 10))])
            await watch.start()
            phases: list[dict[str, Any]] = []
            away: dict[str, Any] = {}
            previous = intervals[0]
            for interval in intervals:
                phases.append(await phase(suite, watch, agents, args.providers, interval, previous,
                                          args.window or max(10 * interval, 60.0), args.profile,
                                          args.profile_native))
                previous = interval
                if not away and args.outage > 0:
                    # Once, at the first interval: the reconnect storm the pacing is for.
                    away = await outage(suite, agents, interval, args.outage, args.boot_timeout)
            overloaded = not all(p["sustained"] for p in phases)
            final = await reconcile(suite, nc, sorted(sweep.agents), args.providers, previous, overloaded,
                                    started, args.drain_timeout)
            await nc.close()
            quiet: dict[str, Any] = {}
            if args.idle_window > 0:
                quiet = await idle(suite, agents, args.idle_window)
                for p in phases:
                    p["marginal_us_per_agent_interval"] = marginal(p, quiet)
    return {"nats_ceiling": ceiling, "boot": boot, "phases": phases, "nats_outage": away, "final": final,
            "idle": quiet,
            "shards": args.shards, "dragonfly_memory_mb": MEMORY_MB, "wall_s": round(time.monotonic() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 providers × 20 VMs, short windows (a smoke run)")
    parser.add_argument("--providers", type=int, default=100)
    parser.add_argument("--vms", type=int, default=100, help="VMs (agents) per provider")
    parser.add_argument("--intervals", default="5,1", help="intervals to measure, in order (seconds)")
    parser.add_argument("--window", type=float, default=0.0, help="seconds measured per interval (default 60)")
    parser.add_argument("--shards", type=int, default=2, help="CloudTwin guest helper processes")
    parser.add_argument("--ceiling-s", type=float, default=5.0, help="seconds of each NATS ceiling test")
    parser.add_argument("--outage", type=float, default=10.0,
                        help="seconds NATS is stopped after the first interval's window (0: no outage)")
    parser.add_argument("--boot-timeout", type=float, default=600.0)
    parser.add_argument("--boot-only", action="store_true",
                        help="stop once every agent is healthy (the boot's time, timeline and profile only)")
    parser.add_argument("--drain-timeout", type=float, default=300.0,
                        help="how long the final count waits for the agents' backlogs to empty")
    parser.add_argument("--idle-window", type=float, default=20.0,
                        help="seconds measured with every agent quiet after the final count (0: none), "
                             "so each phase also reports its marginal µs per agent-interval")
    parser.add_argument("--profile", type=Path, help="record py-spy stacks of dragonfly and the helpers per phase")
    parser.add_argument("--profile-native", action="store_true",
                        help="with --profile: native frames as well (py-spy --native; pauses the process to sample)")
    args = parser.parse_args()
    if args.quick:
        args.providers, args.vms, args.intervals = 5, 20, "2,1"
        args.window, args.ceiling_s, args.boot_timeout = args.window or 4.0, 1.0, 30.0
        args.outage = min(args.outage, 1.0)
        args.idle_window = min(args.idle_window, 2.0)
    # Stopped with SIGTERM, the run unwinds as on Ctrl-C: the suite it started is stopped, by PID.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    result = asyncio.run(run(args))
    print(json.dumps({"benchmark": "cloudtwin_scale", "quick": args.quick, **result}, indent=2))


if __name__ == "__main__":
    main()
