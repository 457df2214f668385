"""The kinds of connection resources spider manages, described as data.

Each Kind says where its records live, which driver handler serves it, how to
list/get/delete it in the cloud, and how a cloud observation updates a record.
The generic lifecycle in spider.resources works on any Kind.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from spider.drivers.base import DiskHandler, KeyPairHandler, SecurityGroupHandler, VmHandler, VpcHandler

R = TypeVar("R", pb.Vpc, pb.SecurityGroup, pb.KeyPair, pb.Vm, pb.Disk)

GONE = (common.TERMINATING, common.TERMINATED, common.NOT_EXIST)


@dataclass(frozen=True)
class Kind(Generic[R]):
    collection: str
    noun: str
    message: type[R]
    # The driver handler type serving this kind (looked up with OpenConnection.handler).
    handler: type[Any]
    list_cloud: Callable[[Any], Awaitable[list[R]]]
    get_cloud: Callable[[Any, str], Awaitable[R]]
    delete_cloud: Callable[[Any, str], Awaitable[None]]
    # Copy what the cloud observed onto the record, keeping what only spider knows.
    observe: Callable[[R, R], None]
    # False for cloud resources on their way out (a terminated VM).
    live: Callable[[R], bool] = lambda _: True


def _observe_vpc(rec: pb.Vpc, seen: pb.Vpc) -> None:
    rec.iid.csp_id = seen.iid.csp_id or rec.iid.csp_id
    rec.ipv4_cidr = seen.ipv4_cidr or rec.ipv4_cidr
    by_csp_name = {s.iid.csp_name: s for s in seen.subnets}
    for sub in rec.subnets:
        match = by_csp_name.get(sub.iid.csp_name)
        if match is not None:
            sub.iid.csp_id = match.iid.csp_id
            sub.zone = match.zone or sub.zone


def _observe_sg(rec: pb.SecurityGroup, seen: pb.SecurityGroup) -> None:
    rec.iid.csp_id = seen.iid.csp_id or rec.iid.csp_id
    del rec.rules[:]
    rec.rules.extend(seen.rules)


def _observe_kp(rec: pb.KeyPair, seen: pb.KeyPair) -> None:
    rec.iid.csp_id = seen.iid.csp_id or rec.iid.csp_id
    rec.fingerprint = seen.fingerprint
    rec.public_key = seen.public_key or rec.public_key
    rec.private_key = ""  # never stored


def _observe_vm(rec: pb.Vm, seen: pb.Vm) -> None:
    rec.iid.csp_id = seen.iid.csp_id or rec.iid.csp_id
    rec.status = seen.status
    rec.private_ip = seen.private_ip
    rec.public_ip = seen.public_ip
    rec.ssh_access_point = seen.ssh_access_point
    rec.zone = seen.zone or rec.zone
    # Attached data disks by their spider names (the caller maps the cloud's IDs: see ops.vms).
    del rec.disks[:]
    rec.disks.extend(seen.disks)
    rec.user_data = ""  # never stored


def _observe_disk(rec: pb.Disk, seen: pb.Disk) -> None:
    rec.iid.csp_id = seen.iid.csp_id or rec.iid.csp_id
    rec.size_gib = seen.size_gib or rec.size_gib
    rec.status = seen.status
    rec.zone = seen.zone or rec.zone
    rec.disk_type = seen.disk_type or rec.disk_type
    if seen.status and seen.status != "attached":
        rec.attached_vm = ""  # the cloud detached it (e.g. its VM was terminated)


VPC: Kind[pb.Vpc] = Kind("vpcs", "VPC", pb.Vpc, VpcHandler, lambda h: h.list_vpcs(), lambda h, i: h.get_vpc(i),
                         lambda h, i: h.delete_vpc(i), _observe_vpc)
SECURITY_GROUP: Kind[pb.SecurityGroup] = Kind(
    "security-groups", "security group", pb.SecurityGroup, SecurityGroupHandler, lambda h: h.list_security_groups(),
    lambda h, i: h.get_security_group(i), lambda h, i: h.delete_security_group(i), _observe_sg)
KEY_PAIR: Kind[pb.KeyPair] = Kind("keypairs", "key pair", pb.KeyPair, KeyPairHandler, lambda h: h.list_key_pairs(),
                                  lambda h, i: h.get_key_pair(i), lambda h, i: h.delete_key_pair(i), _observe_kp)
VM: Kind[pb.Vm] = Kind("vms", "VM", pb.Vm, VmHandler, lambda h: h.list_vms(), lambda h, i: h.get_vm(i),
                       lambda h, i: h.terminate_vm(i), _observe_vm, live=lambda vm: vm.status not in GONE)
DISK: Kind[pb.Disk] = Kind("disks", "disk", pb.Disk, DiskHandler, lambda h: h.list_disks(), lambda h, i: h.get_disk(i),
                           lambda h, i: h.delete_disk(i), _observe_disk)

BY_COLLECTION: dict[str, Kind[Any]] = {k.collection: k for k in (VPC, SECURITY_GROUP, KEY_PAIR, VM, DISK)}
