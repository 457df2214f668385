"""The same scenario on every driver, and nothing left behind in the cloud."""

from __future__ import annotations

from bench.scenario import Scenario
from cbapi.spider.v1 import spider_pb2_grpc
from tests.integration.conformance.conftest import need
from tests.integration.conformance.targets import Target


async def test_scenario_runs_and_leaves_nothing(spider_client: spider_pb2_grpc.SpiderStub, target: Target) -> None:
    need(target, "vpc", "subnet", "security_group", "key_pair", "vm", "vm_suspend", "vm_reboot", "disk")
    before = await target.cloud_inventory()
    timings = await Scenario(spider_client, target.connection, target.image, target.spec).run()
    after = await target.cloud_inventory()
    assert after <= before, f"left behind in the cloud: {sorted(after - before)}"
    assert timings.cloud_calls > 0 and timings.rpc_s >= timings.cloud_s * 0.5
