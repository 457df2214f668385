"""One decisive fault scenario on the clustered topology (services/launcher/cluster.py): during a
dynamic MCIS create on CloudTwin and while its agents report, one etcd member, one NATS node and one
replica of every service are SIGKILLed in turn (bench/cluster_faults.py's quick run).

The suite keeps serving through the gateway (a bounded number of probes refused during each
switchover, counted), the MCIS completes, and every point the agents sampled is stored."""

from __future__ import annotations

from pathlib import Path

from bench import cluster_faults

# Per fault, probes arrive every ~0.05 s; a switchover may refuse those under way when the process
# died and until gRPC / the election moved on, never a whole hold period.
REFUSED_PER_FAULT = 20


async def test_the_suite_survives_one_of_each_going_away(tmp_path: Path) -> None:
    result = await cluster_faults.scenario(tmp_path, vms=4, hold_s=6.0)
    faults = result["faults"]
    assert [f["fault"].split()[1] for f in faults] == ["etcd", "nats", "spider", "dragonfly", "tumblebug", "ladybug"]
    for fault in faults:
        assert fault["probes"] > 10, fault  # the gateway kept answering through the window
        assert fault["refused"] <= REFUSED_PER_FAULT, fault
    assert result["mcis_status"].startswith("Running"), result
    metrics = result["metrics"]
    assert metrics["agents_answering"] == metrics["agents"] == 4, metrics
    assert metrics["points_in_backlogs"] == 0, metrics
    assert metrics["points_sampled"] > 0 and metrics["points_lost"] == 0, metrics
    assert metrics["points_stored"] >= metrics["points_sampled"], metrics
