"""`bench/cloudtwin_scale.py --quick` runs as a user runs it: 5 providers × 20 VMs with agents, two
intervals and a NATS outage, one JSON document of the expected shape, and no point lost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_usage(usage: dict[str, Any], *names: str) -> None:
    for name in names:
        assert number(usage["processes"][name]["cpu_cores"]) and usage["processes"][name]["rss_mb"] > 0, name
    assert number(usage["machine_busy_cores"]) and usage["cores"] >= 1


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_the_cloudtwin_scale_benchmark_prints_its_json_and_loses_nothing() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "cloudtwin_scale.py"), "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["benchmark"] == "cloudtwin_scale" and out["quick"] is True

    ceiling = out["nats_ceiling"]
    assert ceiling["pub_sub"]["msgs_per_s"] > 0 and ceiling["pub_sub"]["received"] == ceiling["pub_sub"]["sent"]
    assert ceiling["request_reply"]["requests_per_s"] > 0
    assert ceiling["request_reply"]["p99_ms"] >= ceiling["request_reply"]["p50_ms"] > 0

    boot = out["boot"]
    assert boot["agents"] == 100 and boot["healthy"] == 100 and boot["registered"] == 100

    assert [p["interval_s"] for p in out["phases"]] == [2.0, 1.0]
    for p in out["phases"]:
        assert p["agents"] == 100 and p["points_expected_per_s"] == 100 / p["interval_s"]
        assert p["points_sent_per_s"] > 0 and p["points_ingested_per_s"] > 0
        assert p["lag"]["acks_seen"] > 0 and p["lag"]["p99_ms"] >= p["lag"]["p50_ms"] > 0
        assert p["points_dropped_by_agents"] == 0 and p["healthy_at_end"] == 100
        assert isinstance(p["sustained"], bool)
        check_usage(p["usage"], "nats", "dragonfly", "cloudtwin", "etcd", "guests-0")

    away = out["nats_outage"]
    assert away["recovered"] is True and away["healthy_after"] == 100 and away["points_dropped_by_agents"] == 0
    check_usage(away["usage"], "nats", "dragonfly")

    final = out["final"]
    assert final["agents_answering"] == final["agents"] == 100
    assert final["points_sampled"] > 0 and final["points_in_backlogs"] == 0
    # Every point every agent sampled, through both intervals and the outage, is stored once.
    assert final["points_lost"] == 0 and final["points_stored_twice"] == 0
    assert final["points_stored"] == final["points_sampled"]
