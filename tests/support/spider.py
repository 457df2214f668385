"""Requests the spider tests build."""

from __future__ import annotations

import uuid

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb


def vpc_request(conn: str, name: str) -> pb.CreateVpcRequest:
    return pb.CreateVpcRequest(connection=conn, request_id=uuid.uuid4().hex, vpc=pb.Vpc(
        iid=common.IID(name=name), ipv4_cidr="10.0.0.0/16",
        subnets=[pb.Subnet(iid=common.IID(name="front"), ipv4_cidr="10.0.1.0/24")]))
