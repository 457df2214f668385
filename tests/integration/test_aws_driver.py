"""The aws driver against moto: idempotent creates, real API names in the call log,
blocking calls kept off the event loop."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import boto3

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from cbapi.spider.v1 import spider_pb2_grpc
from spider.calllog import CallLog
from spider.calls import CallSite, Gate, Limits
from spider.drivers.aws import AwsDriver
from spider.drivers.base import ConnectionInfo, VmRefs
from tests import servers
from tests.integration.conformance.targets import aws_target, forget


def _ec2(moto: servers.Server, region: str) -> object:
    return boto3.client("ec2", region_name=region, endpoint_url=f"http://{moto.address}",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


async def test_repeated_start_with_the_same_token_makes_one_instance(moto_process: servers.Server, tmp_path: Path) -> None:
    region = "eu-west-1"
    log = CallLog(str(tmp_path / "calls.jsonl"))
    gate = Gate(CallSite("c", "aws", "aws", region), Limits(100, 100, 8, 2), log)
    info = ConnectionInfo("c", "aws", region, "", {"endpoint": f"http://{moto_process.address}"},
                          {"access_key": "testing", "secret_key": "testing"})
    cloud = await AwsDriver().connect(info, gate)
    assert cloud.vm is not None and cloud.image is not None
    image = next(i.name for i in await cloud.image.list_images() if i.architecture == "x86_64")
    vm = pb.Vm(iid=common.IID(name="once", csp_name=f"once-{uuid.uuid4().hex[:6]}"))
    refs = VmRefs(image=image, spec="t3.micro")
    token = uuid.uuid4().hex
    # A lost answer, then the retry spider makes when it takes the intent over: both with one token.
    first = await cloud.vm.start_vm(vm, refs, token)
    again = await cloud.vm.start_vm(vm, refs, token)
    assert again.iid.csp_id == first.iid.csp_id

    def count() -> int:
        reply = _ec2(moto_process, region).describe_instances(  # type: ignore[attr-defined]
            Filters=[{"Name": "tag:Name", "Values": [vm.iid.csp_name]}])
        return sum(len(r["Instances"]) for r in reply["Reservations"])

    assert await asyncio.to_thread(count) == 1
    await cloud.vm.terminate_vm(first.iid.csp_id)
    apis = {e.cloud_api for e in log.entries()}
    assert {"RunInstances", "DescribeInstances", "DescribeImages", "TerminateInstances"} <= apis
    assert cloud.close is not None
    await cloud.close()
    log.close()


async def test_call_log_names_ec2_apis_through_spider(spider_client: spider_pb2_grpc.SpiderStub,
                                                      moto_process: servers.Server) -> None:
    target = await aws_target(spider_client, moto_process)
    await spider_client.CreateKeyPair(pb.CreateKeyPairRequest(connection=target.connection, key_pair=pb.KeyPair(
        iid=common.IID(name="k"))))
    entries = (await spider_client.ListCallLog(pb.ListCallLogRequest(connection=target.connection, page_size=1000))).entries
    by_api = {e.cloud_api: e for e in entries}
    assert {"DescribeAvailabilityZones", "DescribeImages", "CreateKeyPair"} <= set(by_api)
    assert by_api["CreateKeyPair"].elapsed_seconds > 0 and by_api["CreateKeyPair"].driver == "aws"
    await spider_client.DeleteKeyPair(pb.DeleteResourceRequest(connection=target.connection, name="k"))
    await forget(spider_client, target)


async def test_boto3_calls_do_not_block_the_event_loop(moto_process: servers.Server, tmp_path: Path) -> None:
    log = CallLog()
    gate = Gate(CallSite("c", "aws", "aws", "us-west-2"), Limits(1000, 1000, 32, 0), log)
    info = ConnectionInfo("c", "aws", "us-west-2", "", {"endpoint": f"http://{moto_process.address}"},
                          {"access_key": "testing", "secret_key": "testing"})
    cloud = await AwsDriver().connect(info, gate)
    assert cloud.spec is not None
    ticks = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    t0 = time.monotonic()
    specs = await cloud.spec.list_specs()  # ~1,400 instance types: a slow call
    elapsed = time.monotonic() - t0
    stop = True
    await task
    assert len(specs) > 1000
    # The loop kept turning while boto3 worked in its thread.
    assert ticks >= elapsed / 0.005 * 0.3
