"""cbctl over the placement routes the gateway builds from tumblebug's annotations: recommend, plan,
benchmarks."""

from __future__ import annotations

from pathlib import Path

import yaml

from cbapi.spider.v1 import spider_pb2_grpc
from tests import servers
from tests.integration.tumblebug.helpers import connections
from tests.support.cbctl import Cbctl, one_line_error, tumblebug_cbctl, tumblebug_gateway  # noqa: F401 - fixtures


async def test_recommend_plan_and_benchmarks(cbctl: Cbctl, spider_client: spider_pb2_grpc.SpiderStub,
                                             cloudtwin_process: servers.Server, tmp_path: Path) -> None:
    conns = await connections(spider_client, cloudtwin_process, 2)
    ns = "pl-" + conns[0].name[2:]
    await cbctl.ok("create", "namespace", ns)
    got = await cbctl.ok("recommend", "spec", "--vcpu", "2", "-w", "cost=1", "-w", "performance=1", "--limit", "3")
    assert "SCORE" in got.out and "performance=" in got.out and "*" in got.out  # estimates are marked

    doc = {"kind": "mcis", "metadata": {"name": "web", "namespace": ns}, "spec": {"placement": {
        "groups": [{"name": "web", "count": 4, "requirements": {"connections": [c.name for c in conns]}}],
        "constraints": {"minProviders": 2}}}}
    (tmp_path / "mcis.yaml").write_text(yaml.safe_dump(doc))
    planned = await cbctl.ok("plan", "-f", str(tmp_path / "mcis.yaml"))
    assert "status optimal" in planned.out
    assert all(c.name in planned.out for c in conns), planned.out

    doc["spec"]["placement"]["constraints"]["budgetPerHour"] = 0.0001  # type: ignore[index]
    (tmp_path / "mcis.yaml").write_text(yaml.safe_dump(doc))
    tight = await cbctl.ok("plan", "-f", str(tmp_path / "mcis.yaml"))
    assert "status infeasible" in tight.out and "budget 0.00/h" in tight.out, tight.out

    listed = await cbctl.ok("get", "benchmarks", "--where", "metric=cpu_multi")
    assert listed.code == 0
    one_line_error(await cbctl("recommend", "spec", "-w", "speed=1"), "weights", "INVALID_ARGUMENT")
