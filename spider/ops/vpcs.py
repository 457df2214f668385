"""VPCs and subnets."""

from __future__ import annotations

import contextlib
import ipaddress

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from services.names import check_name, suffix
from spider.connections import OpenConnection
from spider.drivers.base import VpcHandler
from spider.kinds import VPC
from spider.resources import Resources


def check_cidr(value: str, field: str) -> ipaddress.IPv4Network:
    if not value:
        raise errors.InvalidArgument.field(field, "is required, e.g. 10.0.0.0/16")
    try:
        return ipaddress.IPv4Network(value)
    except ValueError as err:
        raise errors.InvalidArgument.field(field, f"{value!r} is not an IPv4 CIDR block: {err}") from err


def _check_subnet(conn: OpenConnection, vpc_net: ipaddress.IPv4Network, subnet: pb.Subnet, field: str) -> None:
    check_name(subnet.iid.name, f"{field}.iid.name")
    net = check_cidr(subnet.ipv4_cidr, f"{field}.ipv4_cidr")
    if not net.subnet_of(vpc_net):
        raise errors.InvalidArgument.field(f"{field}.ipv4_cidr", f"{net} is not inside the VPC's {vpc_net}")
    subnet.iid.csp_name = conn.driver.name_rules.cloud_name(subnet.iid.name, suffix())


def validate(conn: OpenConnection, vpc: pb.Vpc) -> None:
    vpc_net = check_cidr(vpc.ipv4_cidr, "vpc.ipv4_cidr")
    seen: set[str] = set()
    for i, subnet in enumerate(vpc.subnets):
        _check_subnet(conn, vpc_net, subnet, f"vpc.subnets[{i}]")
        if subnet.iid.name in seen:
            raise errors.InvalidArgument.field(f"vpc.subnets[{i}].iid.name", f"duplicate subnet {subnet.iid.name!r}")
        seen.add(subnet.iid.name)


async def create(res: Resources, conn: OpenConnection, req: pb.CreateVpcRequest) -> pb.Vpc:
    validate(conn, req.vpc)
    if req.validate_only:
        return req.vpc
    handler = conn.handler(VpcHandler)
    record, _ = await res.create(conn, VPC, req.vpc, req.request_id, handler.create_vpc)
    return record


async def add_subnet(res: Resources, conn: OpenConnection, req: pb.AddSubnetRequest) -> pb.Vpc:
    cname = conn.record.name
    vpc = await res.ready(cname, VPC, req.vpc, "vpc")
    subnet = pb.Subnet()
    subnet.CopyFrom(req.subnet)
    _check_subnet(conn, check_cidr(vpc.ipv4_cidr, "vpc.ipv4_cidr"), subnet, "subnet")
    if any(s.iid.name == subnet.iid.name for s in vpc.subnets):
        raise errors.AlreadyExists(f"subnet {subnet.iid.name!r} already exists in VPC {req.vpc!r}")
    handler = conn.handler(VpcHandler)
    made = await handler.add_subnet(vpc.iid.csp_id, subnet, f"{vpc.meta.token}/{subnet.iid.name}")
    made.iid.name = subnet.iid.name

    def add(rec: pb.Vpc) -> pb.Vpc:
        rec.subnets.append(made)
        return rec

    return await res.modify(cname, VPC, req.vpc, add)


async def remove_subnet(res: Resources, conn: OpenConnection, req: pb.RemoveSubnetRequest) -> pb.Vpc:
    cname = conn.record.name
    vpc = await res.ready(cname, VPC, req.vpc, "vpc")
    subnet = next((s for s in vpc.subnets if s.iid.name == req.name), None)
    if subnet is None:
        raise errors.NotFound(f"subnet {req.name!r} not found in VPC {req.vpc!r}")
    handler = conn.handler(VpcHandler)
    with contextlib.suppress(errors.NotFound):  # already gone is what we want
        await handler.remove_subnet(vpc.iid.csp_id, subnet.iid.csp_id)

    def drop(rec: pb.Vpc) -> pb.Vpc:
        keep = [s for s in rec.subnets if s.iid.name != req.name]
        del rec.subnets[:]
        rec.subnets.extend(keep)
        return rec

    return await res.modify(cname, VPC, req.vpc, drop)


def subnet_of(vpc: pb.Vpc, name: str, field: str) -> common.IID:
    for subnet in vpc.subnets:
        if subnet.iid.name == name:
            return subnet.iid
    raise errors.NotFound(f"{field}: subnet {name!r} not found in VPC {vpc.iid.name!r}")
