"""Security groups and their rules."""

from __future__ import annotations

import ipaddress

from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from services.names import require
from spider.connections import OpenConnection
from spider.drivers.base import SecurityGroupHandler
from spider.kinds import SECURITY_GROUP, VPC
from spider.resources import Resources

DIRECTIONS = ("inbound", "outbound")
PROTOCOLS = ("tcp", "udp", "icmp", "all")


def check_rules(rules: list[pb.SecurityRule], field: str) -> None:
    for i, r in enumerate(rules):
        f = f"{field}[{i}]"
        if r.direction not in DIRECTIONS:
            raise errors.InvalidArgument.field(f"{f}.direction", f"must be one of {', '.join(DIRECTIONS)}")
        if r.protocol not in PROTOCOLS:
            raise errors.InvalidArgument.field(f"{f}.protocol", f"must be one of {', '.join(PROTOCOLS)}")
        if r.protocol in ("tcp", "udp") and not (0 <= r.from_port <= r.to_port <= 65535):
            raise errors.InvalidArgument.field(f"{f}.from_port",
                                               "ports must satisfy 0 <= from_port <= to_port <= 65535")
        try:
            ipaddress.ip_network(r.cidr or "0.0.0.0/0")
        except ValueError as err:
            raise errors.InvalidArgument.field(f"{f}.cidr", f"{r.cidr!r} is not a CIDR block") from err


async def create(res: Resources, conn: OpenConnection, req: pb.CreateSecurityGroupRequest) -> pb.SecurityGroup:
    sg = req.security_group
    require(sg.vpc, "security_group.vpc")
    check_rules(list(sg.rules), "security_group.rules")
    vpc = await res.ready(conn.record.name, VPC, sg.vpc, "security_group.vpc")
    if req.validate_only:
        return sg
    handler = conn.handler(SecurityGroupHandler)

    async def make(rec: pb.SecurityGroup, token: str) -> pb.SecurityGroup:
        return await handler.create_security_group(rec, vpc.iid.csp_id, token)

    record, _ = await res.create(conn, SECURITY_GROUP, sg, req.request_id, make)
    return record


async def change_rules(res: Resources, conn: OpenConnection, req: pb.RulesRequest, add: bool) -> pb.SecurityGroup:
    check_rules(list(req.rules), "rules")
    if not req.rules:
        raise errors.InvalidArgument.field("rules", "at least one rule is required")
    sg = await res.ready(conn.record.name, SECURITY_GROUP, req.name, "name")
    handler = conn.handler(SecurityGroupHandler)
    change = handler.add_rules if add else handler.remove_rules
    seen = await change(sg.iid.csp_id, list(req.rules))
    return await res.observe(conn.record.name, SECURITY_GROUP, req.name, seen)
