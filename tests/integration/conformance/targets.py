"""The clouds the conformance suite runs against, each with a direct line to its cloud.

A target gives spider a connection, and lets a test look at (or make) resources
in the cloud without going through spider.
"""

from __future__ import annotations

import asyncio
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import boto3

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as tw_grpc
from cbapi.spider.v1 import spider_pb2 as pb
from cbapi.spider.v1 import spider_pb2_grpc
from services.rpc.client import channel
from tests import servers


@dataclass
class Target(ABC):
    """Base: a driver's connection plus the picks a scenario needs (image, spec)."""

    driver: str
    connection: str
    image: str
    spec: str
    capabilities: pb.Capabilities

    @abstractmethod
    async def cloud_vm_ids(self) -> set[str]:
        """IDs of live VMs in the cloud, read directly."""

    @abstractmethod
    async def cloud_make_vpc(self, name: str) -> str:
        """Make a VPC directly in the cloud (as another tool would); returns its cloud ID."""

    @abstractmethod
    async def cloud_inventory(self) -> set[str]:
        """IDs of every live resource of every kind in the cloud region, read directly."""


@dataclass
class MockTarget(Target):
    twin: servers.Server | None = None
    access_key: str = ""
    provider: str = ""
    region: str = ""
    secret_key: str = ""

    def _md(self) -> tuple[tuple[str, str], ...]:
        return (("x-twin-access-key", self.access_key), ("x-twin-secret-key", self.secret_key))

    async def cloud_vm_ids(self) -> set[str]:
        assert self.twin is not None
        async with channel(self.twin.address) as ch:
            reply = await tw_grpc.CloudTwinStub(ch).ListResources(
                tw.ListResourcesRequest(provider=self.provider, region=self.region, kind=tw.VM, page_size=1000),
                metadata=self._md())
        return {r.id for r in reply.resources if r.state not in ("terminating", "terminated")}

    async def cloud_inventory(self) -> set[str]:
        assert self.twin is not None
        out: set[str] = set()
        async with channel(self.twin.address) as ch:
            twin = tw_grpc.CloudTwinStub(ch)
            for kind in (tw.VPC, tw.SUBNET, tw.SECURITY_GROUP, tw.KEY_PAIR, tw.VM, tw.DISK):
                reply = await twin.ListResources(tw.ListResourcesRequest(
                    provider=self.provider, region=self.region, kind=kind, page_size=1000), metadata=self._md())
                out |= {r.id for r in reply.resources if r.state not in ("terminating", "terminated", "deleting")}
        return out

    async def cloud_make_vpc(self, name: str) -> str:
        assert self.twin is not None
        async with channel(self.twin.address) as ch:
            made = await tw_grpc.CloudTwinStub(ch).CreateResource(
                tw.CreateResourceRequest(provider=self.provider, region=self.region, name=name,
                                         vpc=tw.VpcProps(cidr="10.9.0.0/16")), metadata=self._md())
        return made.id


@dataclass
class AwsTarget(Target):
    endpoint: str = ""
    region: str = ""

    def _ec2(self) -> Any:
        return boto3.client("ec2", region_name=self.region, endpoint_url=self.endpoint,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    async def cloud_vm_ids(self) -> set[str]:
        def read() -> set[str]:
            live = [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
            reply = self._ec2().describe_instances(Filters=live)
            return {i["InstanceId"] for r in reply["Reservations"] for i in r["Instances"]}

        return await asyncio.to_thread(read)

    async def cloud_inventory(self) -> set[str]:
        def read() -> set[str]:
            ec2 = self._ec2()
            live = [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
            ids = {i["InstanceId"] for r in ec2.describe_instances(Filters=live)["Reservations"] for i in r["Instances"]}
            ids |= {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}
            ids |= {s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]}
            ids |= {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]}
            ids |= {k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]}
            ids |= {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"] if v["State"] != "deleting"}
            return ids

        return await asyncio.to_thread(read)

    async def cloud_make_vpc(self, name: str) -> str:
        def make() -> str:
            return str(self._ec2().create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"])

        return await asyncio.to_thread(make)


async def forget(stub: spider_pb2_grpc.SpiderStub, target: Target) -> None:
    """Remove the target's connection from spider once its test is done (its cloud resources stay).

    Every tumblebug catalog refresh reads every spider connection, and an aws connection costs one
    DescribeInstanceTypes (1,395 types) and one DescribeImages on moto each time its cache expires:
    left behind, the conformance suite's connections slowed every later placement test by minutes."""
    await stub.DeleteConnection(pb.DeleteConnectionRequest(name=target.connection, force=True))


async def aws_target(stub: spider_pb2_grpc.SpiderStub, moto: servers.Server, region: str = "us-east-1") -> AwsTarget:
    tag = uuid.uuid4().hex[:8]
    await stub.CreateCredential(pb.CreateCredentialRequest(credential=pb.Credential(
        name=f"aws-{tag}", driver="aws", values={"access_key": "testing", "secret_key": "testing"})))
    await stub.CreateRegion(pb.CreateRegionRequest(region=pb.Region(
        name=f"aws-{tag}", driver="aws", region=region, settings={"endpoint": f"http://{moto.address}"})))
    await stub.CreateConnection(pb.CreateConnectionRequest(connection=pb.Connection(
        name=f"aws-{tag}", driver="aws", credential=f"aws-{tag}", region=f"aws-{tag}")))
    images = (await stub.ListImages(pb.ListImagesRequest(connection=f"aws-{tag}", filter="ubuntu",
                                                         page_size=1000))).images
    image = next(i for i in images if i.architecture == "x86_64")
    drivers = await stub.ListDrivers(pb.ListDriversRequest())
    caps = next(d.capabilities for d in drivers.drivers if d.name == "aws")
    return AwsTarget("aws", f"aws-{tag}", image.name, "t3.micro", caps, f"http://{moto.address}", region)


async def mock_target(stub: spider_pb2_grpc.SpiderStub, twin: servers.Server) -> MockTarget:
    provider, region = (await servers.twin_regions(twin))[0]
    conn = await servers.make_connection(stub, twin, provider, region)
    images = await stub.ListImages(pb.ListImagesRequest(connection=conn.name))
    specs = await stub.ListSpecs(pb.ListSpecsRequest(connection=conn.name))
    spec = min((s for s in specs.specs if s.architecture == "x86_64"), key=lambda s: s.price_per_hour)
    image = next(i for i in images.images if i.architecture == "x86_64")
    drivers = await stub.ListDrivers(pb.ListDriversRequest())
    caps = next(d.capabilities for d in drivers.drivers if d.name == "mock")
    return MockTarget("mock", conn.name, image.name, spec.name, caps, twin, conn.access_key, provider, region,
                      conn.secret_key)
