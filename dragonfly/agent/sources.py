"""Where metric values come from: the real host (psutil) or a CloudTwin guest (synthesized).

Every group is a flat mapping of field → number with the unit in the field's
name (`_percent`, `_bytes`, `_bytes_per_second`, `_mhz`…). Rates are computed
here, between two samples, so the collector stores values ready to read.
"""

from __future__ import annotations

import math
import os
import random
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Protocol

import psutil

from dragonfly.protocol.config import TwinSpec
from dragonfly.protocol.metrics import FIELDS, GROUPS  # noqa: F401 (FIELDS re-exported)

Groups = dict[str, dict[str, float]]



class Source(Protocol):
    def sample(self) -> Groups: ...


def _rates(now: dict[str, float], before: dict[str, float] | None, seconds: float) -> dict[str, float]:
    """Per-second rates of counters; 0 on the first sample or when a counter went back (a reset)."""
    if before is None or seconds <= 0:
        return dict.fromkeys(now, 0.0)
    return {k: max(0.0, (v - before.get(k, v)) / seconds) for k, v in now.items()}


class HostSource:
    """The machine the agent runs on, read with psutil."""

    def __init__(self, disk_path: str = "/", clock: Callable[[], float] = time.monotonic) -> None:
        self.disk_path = disk_path
        self.clock = clock
        self._last: tuple[float, dict[str, float]] | None = None
        psutil.cpu_times_percent(None)  # the first call only sets the baseline

    def _counters(self) -> dict[str, float]:
        io = psutil.disk_io_counters()
        net = psutil.net_io_counters()
        out: dict[str, float] = {}
        if io is not None:
            out.update(read_bytes=io.read_bytes, write_bytes=io.write_bytes, reads=io.read_count,
                       writes=io.write_count)
        out.update(bytes_recv=net.bytes_recv, bytes_sent=net.bytes_sent, packets_recv=net.packets_recv,
                   packets_sent=net.packets_sent, errin=net.errin, errout=net.errout, dropin=net.dropin,
                   dropout=net.dropout)
        return out

    def sample(self) -> Groups:
        now = self.clock()
        counters = self._counters()
        before = self._last
        rates = _rates(counters, before[1] if before else None, now - before[0] if before else 0.0)
        self._last = (now, counters)
        cpu = psutil.cpu_times_percent(None)
        freq = psutil.cpu_freq()
        mem = psutil.virtual_memory()
        disk = psutil.disk_usage(self.disk_path)
        return {
            "cpu": {"utilization_percent": 100.0 - cpu.idle, "user_percent": cpu.user, "system_percent": cpu.system,
                    "idle_percent": cpu.idle, "iowait_percent": getattr(cpu, "iowait", 0.0),
                    "steal_percent": getattr(cpu, "steal", 0.0), "cores": float(psutil.cpu_count() or 1)},
            "cpufreq": {"current_mhz": freq.current if freq else 0.0, "max_mhz": freq.max if freq else 0.0},
            "memory": {"total_bytes": mem.total, "used_bytes": mem.used, "available_bytes": mem.available,
                       "utilization_percent": mem.percent},
            "disk": {"total_bytes": disk.total, "used_bytes": disk.used, "free_bytes": disk.free,
                     "utilization_percent": disk.percent},
            "diskio": _diskio(rates),
            "network": _network(rates),
        }


def _diskio(rates: dict[str, float]) -> dict[str, float]:
    return {"read_bytes_per_second": rates.get("read_bytes", 0.0),
            "write_bytes_per_second": rates.get("write_bytes", 0.0),
            "read_ops_per_second": rates.get("reads", 0.0), "write_ops_per_second": rates.get("writes", 0.0)}


def _network(rates: dict[str, float]) -> dict[str, float]:
    return {"recv_bytes_per_second": rates.get("bytes_recv", 0.0),
            "sent_bytes_per_second": rates.get("bytes_sent", 0.0),
            "recv_packets_per_second": rates.get("packets_recv", 0.0),
            "sent_packets_per_second": rates.get("packets_sent", 0.0),
            "in_errors_per_second": rates.get("errin", 0.0), "out_errors_per_second": rates.get("errout", 0.0),
            "in_drops_per_second": rates.get("dropin", 0.0), "out_drops_per_second": rates.get("dropout", 0.0)}


def process_usage(pgids: Iterable[int]) -> tuple[float, int]:
    """CPU seconds and resident bytes of every live process in these process groups."""
    wanted = set(pgids)
    if not wanted:
        return 0.0, 0
    cpu, rss = 0.0, 0
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) not in wanted:
                continue
            with proc.oneshot():
                times = proc.cpu_times()
                cpu += times.user + times.system
                rss += proc.memory_info().rss
        except (psutil.Error, ProcessLookupError):
            continue
    return cpu, rss


class TwinSource:
    """A CloudTwin guest: a steady synthetic load drawn from the VM's name, plus the real
    CPU and memory of the processes its commands started (`pgids` tells which)."""

    BASE_MEMORY_SHARE = 0.15

    def __init__(self, spec: TwinSpec, name: str, pgids: Callable[[], Iterable[int]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.pgids = pgids
        self.clock = clock
        self.rng = random.Random(zlib.crc32(name.encode()))
        self.base_load = 3.0 + self.rng.random() * 12.0  # percent
        self.phase = self.rng.random() * math.tau
        self._last: tuple[float, float, dict[str, float]] | None = None
        self._totals = {"read_bytes": 0.0, "write_bytes": 0.0, "reads": 0.0, "writes": 0.0,
                        "bytes_recv": 0.0, "bytes_sent": 0.0, "packets_recv": 0.0, "packets_sent": 0.0}

    def _grow_counters(self, seconds: float, load: float) -> None:
        scale = seconds * (0.2 + load / 100.0)
        for key, per_s in (("read_bytes", 400_000.0), ("write_bytes", 250_000.0), ("reads", 40.0), ("writes", 25.0),
                           ("bytes_recv", 120_000.0), ("bytes_sent", 80_000.0), ("packets_recv", 150.0),
                           ("packets_sent", 110.0)):
            self._totals[key] += per_s * scale * (0.5 + self.rng.random())

    def sample(self) -> Groups:
        now = self.clock()
        real_cpu_s, real_rss = process_usage(self.pgids())
        before = self._last
        seconds = now - before[0] if before else 0.0
        real_percent = 0.0
        if before and seconds > 0:
            real_percent = max(0.0, (real_cpu_s - before[1]) / seconds / self.spec.vcpu * 100.0)
        synthetic = self.base_load * (1.0 + 0.3 * math.sin(now / 60.0 + self.phase)) + self.rng.gauss(0, 1.0)
        load = min(100.0, max(0.0, synthetic) + real_percent)
        self._grow_counters(seconds, load)
        rates = _rates(dict(self._totals), before[2] if before else None, seconds)
        self._last = (now, real_cpu_s, dict(self._totals))
        user = load * 0.7
        iowait = min(100.0 - load, 0.5 + self.rng.random())
        mem_used = min(self.spec.memory_bytes, int(self.spec.memory_bytes * self.BASE_MEMORY_SHARE) + real_rss)
        disk_used = self.spec.disk_bytes // 5
        return {
            "cpu": {"utilization_percent": load, "user_percent": user, "system_percent": load - user,
                    "idle_percent": 100.0 - load - iowait, "iowait_percent": iowait, "steal_percent": 0.0,
                    "cores": float(self.spec.vcpu)},
            "cpufreq": {"current_mhz": 2400.0 + 600.0 * load / 100.0, "max_mhz": 3000.0},
            "memory": {"total_bytes": self.spec.memory_bytes, "used_bytes": mem_used,
                       "available_bytes": self.spec.memory_bytes - mem_used,
                       "utilization_percent": 100.0 * mem_used / max(1, self.spec.memory_bytes)},
            "disk": {"total_bytes": self.spec.disk_bytes, "used_bytes": disk_used,
                     "free_bytes": self.spec.disk_bytes - disk_used,
                     "utilization_percent": 100.0 * disk_used / max(1, self.spec.disk_bytes)},
            "diskio": _diskio(rates),
            "network": _network(rates),
        }
