"""The benchmarks still run: `bench/tumblebug.py --quick`, `bench/spider.py --quick` and
`bench/dragonfly_storage.py --quick` as a user runs them, each printing one JSON document of the
expected shape (numbers, not their values)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_bench(script: str, timeout: float) -> dict[str, Any]:
    # At the timeout the bench gets SIGINT first (a KeyboardInterrupt runs its cleanup, which stops the
    # servers it started), then its process group is killed.
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / script), "--quick"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        raise
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert done.returncode == 0, f"{script} failed:\n{done.stderr[-3000:]}"
    out = json.loads(done.stdout)
    assert isinstance(out, dict) and out["quick"] is True
    return out


def positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def latency_shape(stats: dict[str, Any]) -> None:
    assert stats["calls"] >= 1
    assert positive(stats["p50_ms"]) and stats["p99_ms"] >= stats["p50_ms"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tumblebug_and_spider_benchmarks_print_their_json() -> None:
    # Both at once: this checks their output's shape, not their numbers, and each spends most of its
    # time starting servers and waiting on them.
    with ThreadPoolExecutor(2) as pool:
        tb_run, spider_run = pool.submit(run_bench, "tumblebug.py", 200), pool.submit(run_bench, "spider.py", 150)
        tb, spider = tb_run.result(), spider_run.result()
    assert tb["benchmark"] == "tumblebug"
    assert {"rate_per_second", "burst", "max_concurrency", "why"} <= tb["spider_connection_limits"].keys()
    assert positive(tb["tumblebug_settings"]["max_per_connection"])

    lat = tb["create_with_latency"]
    assert lat["tumblebug"]["completed"] and lat["tumblebug"]["failed"] == 0
    assert lat["tumblebug"]["all_running_s"] >= lat["floor_s"] > 0
    assert positive(lat["tumblebug"]["ratio_to_floor"]) and positive(lat["tumblebug"]["ratio_to_spider_direct"])
    assert positive(lat["spider_direct"]["seconds"]) and positive(lat["cold_first_mcis"]["seconds"])
    assert positive(lat["tumblebug"]["process_cpu"]["wall_s"])
    assert "tumblebug" in lat["tumblebug"]["process_cpu"]["cpu_s"]

    zero = tb["create_zero_latency"]
    assert zero["tumblebug"]["completed"]
    assert positive(zero["tumblebug"]["vms_per_second"]) and positive(zero["spider_direct"]["vms_per_second"])
    assert positive(zero["ratio_to_spider_direct"])

    big = tb["status_read_big_mcis"]
    assert big["build"]["completed"] and big["vms"] == big["build"]["vms"]
    assert big["status"] == f"Running:{big['vms']} (R:{big['vms']}/{big['vms']})"
    for name in ("get_mcis", "bare_etcd_get", "get_mcis_with_vms", "bare_etcd_range_vms"):
        latency_shape(big[name])
    assert positive(big["p50_ratio_to_bare_etcd"]) and positive(big["with_vms_p50_ratio_to_bare_etcd"])
    assert big["get_mcis_with_vms"]["reply_bytes"] > big["mcis_record_bytes"] > 0

    assert spider["benchmark"] == "spider"
    for side in ("spider_full_stack", "bare_echo"):
        latency_shape(spider["get_vm_status"][side])
        assert positive(spider["get_vm_status"][side]["rps"])
    assert positive(spider["get_vm_status"]["throughput_ratio"])
    assert positive(spider["create_zero_latency"]["vms_per_second"])
    lat_spider = spider["create_with_latency"]
    assert lat_spider["wall_seconds"] >= lat_spider["floor_seconds"] > 0


@pytest.mark.timeout(60)
def test_dragonfly_storage_benchmark_prints_its_json() -> None:
    out = run_bench("dragonfly_storage.py", timeout=50)
    assert out["benchmark"] == "dragonfly-storage"
    for name in ("floor", "dict_layout", "memory"):
        rows = out["scale"][name]["at"].values()
        assert rows and all(positive(row["write_points_per_cpu_s"]) and positive(row["rss_mb"]) for row in rows)
    assert all(positive(value) for value in out["scale"]["compared_at_baseline_points"].values())
    steady = out["steady"]
    assert 0 < steady["bytes_held_mb"] <= steady["budget_mb"] and positive(steady["write_points_per_cpu_s"])
