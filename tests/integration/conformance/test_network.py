"""VPCs with subnets, and security groups with rules."""

from __future__ import annotations

import uuid

import grpc

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from cbapi.spider.v1 import spider_pb2_grpc
from tests.helpers import expect_error
from tests.integration.conformance.conftest import need
from tests.integration.conformance.targets import Target
from tests.support.spider import vpc_request


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def test_vpc_lifecycle(spider_client: spider_pb2_grpc.SpiderStub, target: Target) -> None:
    need(target, "vpc", "subnet")
    c, name = target.connection, _name("vpc")
    made = await spider_client.CreateVpc(vpc_request(c, name))
    assert made.iid.name == name and made.iid.csp_id and made.iid.csp_name.startswith(name)
    assert made.meta.phase == common.PHASE_READY
    assert [s.iid.name for s in made.subnets] == ["front"] and made.subnets[0].iid.csp_id
    await expect_error(grpc.StatusCode.ALREADY_EXISTS, spider_client.CreateVpc(vpc_request(c, name)))
    listed = await spider_client.ListVpcs(pb.ListResourcesRequest(connection=c))
    assert name in {v.iid.name for v in listed.vpcs}
    grown = await spider_client.AddSubnet(pb.AddSubnetRequest(connection=c, vpc=name, subnet=pb.Subnet(
        iid=common.IID(name="back"), ipv4_cidr="10.0.2.0/24")))
    assert {s.iid.name for s in grown.subnets} == {"front", "back"}
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, spider_client.AddSubnet(pb.AddSubnetRequest(
        connection=c, vpc=name, subnet=pb.Subnet(iid=common.IID(name="out"), ipv4_cidr="192.168.0.0/24"))),
        "subnet.ipv4_cidr")
    shrunk = await spider_client.RemoveSubnet(pb.RemoveSubnetRequest(connection=c, vpc=name, name="back"))
    assert [s.iid.name for s in shrunk.subnets] == ["front"]
    await spider_client.DeleteVpc(pb.DeleteResourceRequest(connection=c, name=name))
    await expect_error(grpc.StatusCode.NOT_FOUND, spider_client.GetVpc(pb.GetResourceRequest(connection=c, name=name)))


async def test_vpc_bad_input_names_the_field(spider_client: spider_pb2_grpc.SpiderStub, target: Target) -> None:
    need(target, "vpc")
    c = target.connection
    bad_name = vpc_request(c, "Bad_Name")
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, spider_client.CreateVpc(bad_name), "vpc.iid.name")
    bad_cidr = vpc_request(c, _name("vpc"))
    bad_cidr.vpc.ipv4_cidr = "10.0.0.0/33"
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, spider_client.CreateVpc(bad_cidr), "vpc.ipv4_cidr")
    dry = vpc_request(c, _name("vpc"))
    dry.validate_only = True
    await spider_client.CreateVpc(dry)
    await expect_error(grpc.StatusCode.NOT_FOUND, spider_client.GetVpc(pb.GetResourceRequest(connection=c,
                                                                                             name=dry.vpc.iid.name)))


async def test_security_group_rules(spider_client: spider_pb2_grpc.SpiderStub, target: Target) -> None:
    need(target, "vpc", "security_group")
    c, vpc, sg = target.connection, _name("vpc"), _name("sg")
    await spider_client.CreateVpc(vpc_request(c, vpc))
    ssh = pb.SecurityRule(direction="inbound", protocol="tcp", from_port=22, to_port=22, cidr="0.0.0.0/0")
    web = pb.SecurityRule(direction="inbound", protocol="tcp", from_port=80, to_port=80, cidr="0.0.0.0/0")
    made = await spider_client.CreateSecurityGroup(pb.CreateSecurityGroupRequest(connection=c,
                                                                                 security_group=pb.SecurityGroup(
        iid=common.IID(name=sg), vpc=vpc, rules=[ssh])))
    assert made.iid.csp_id and made.vpc == vpc
    added = await spider_client.AddRules(pb.RulesRequest(connection=c, name=sg, rules=[web]))
    assert {(r.from_port, r.to_port) for r in added.rules if r.direction == "inbound"} >= {(22, 22), (80, 80)}
    removed = await spider_client.RemoveRules(pb.RulesRequest(connection=c, name=sg, rules=[ssh]))
    assert (22, 22) not in {(r.from_port, r.to_port) for r in removed.rules if r.direction == "inbound"}
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, spider_client.AddRules(pb.RulesRequest(
        connection=c, name=sg, rules=[pb.SecurityRule(direction="sideways", protocol="tcp")])), "rules[0].direction")
    await expect_error(grpc.StatusCode.NOT_FOUND, spider_client.CreateSecurityGroup(pb.CreateSecurityGroupRequest(
        connection=c, security_group=pb.SecurityGroup(iid=common.IID(name=_name("sg")), vpc="no-such-vpc"))))
    await spider_client.DeleteSecurityGroup(pb.DeleteResourceRequest(connection=c, name=sg))
    await spider_client.DeleteVpc(pb.DeleteResourceRequest(connection=c, name=vpc))
