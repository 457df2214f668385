"""What each kind of resource needs to be created: checks on the request and
on the resources it refers to, and the properties the record starts with."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from google.protobuf.message import Message

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as pb

from . import faults, lifecycle
from .catalog import RegionCatalog
from .ssh_keys import generate_key, import_key
from .store import Record, Store

MIN_PREFIX, MAX_PREFIX = 16, 28
MAX_DISK_GIB = 16_384
MAX_USER_DATA = 16 * 1024
MAX_NAME = 255
MAX_TOKEN = 64
MAX_TAGS = 50
DISK_TYPES = ("standard", "ssd", "premium-ssd", "hdd")
DIRECTIONS = ("inbound", "outbound")
PROTOCOLS = ("tcp", "udp", "icmp", "all")

PROPS_KIND: dict[str, pb.Kind] = {
    "vpc": pb.VPC, "subnet": pb.SUBNET, "security_group": pb.SECURITY_GROUP,
    "key_pair": pb.KEY_PAIR, "vm": pb.VM, "disk": pb.DISK,
}


@dataclass
class Context:
    """Who creates, where, and what the region already holds."""

    account: str
    region: RegionCatalog
    store: Store

    def find(self, kind: pb.Kind, rid: str) -> Record:
        """A resource the create refers to; it must exist here and not be on its way out."""
        rec = self.store.find(self.account, self.region.provider, self.region.name, kind, rid)
        if rec.state in (lifecycle.DELETING, lifecycle.TERMINATING, lifecycle.TERMINATED):
            raise faults.incorrect_state(f"{rid} is {rec.state}")
        return rec


@dataclass
class Draft:
    """A checked create request: where the resource goes and what it starts with."""

    kind: pb.Kind
    # The kind's properties, for the `props` field named `field`.
    field: str
    props: Message
    zone: str = ""
    # The private key of a generated key pair: answered once, never stored.
    private_key: str = ""
    vcpu: int = 0


def check_common(req: pb.CreateResourceRequest) -> None:
    """Checks every kind shares: name, token and tags."""
    if len(req.name) > MAX_NAME:
        raise faults.invalid_parameter("name", f"at most {MAX_NAME} characters")
    if len(req.client_token) > MAX_TOKEN:
        raise faults.invalid_parameter("client_token", f"at most {MAX_TOKEN} characters")
    if len(req.tags) > MAX_TAGS:
        raise faults.invalid_parameter("tags", f"at most {MAX_TAGS} tags")


def zone_of(requested: str, region: RegionCatalog, field: str = "zone") -> str:
    """The requested zone if the region has it; the region's first zone if none was asked."""
    if not requested:
        return region.zones[0]
    if requested not in region.zones:
        raise faults.invalid_parameter(field, f"zone {requested!r} is not one of {', '.join(region.zones)}")
    return requested


def network(text: str, field: str) -> ipaddress.IPv4Network:
    """An IPv4 CIDR block of a size a VPC or subnet may have."""
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise faults.invalid_parameter(field, f"{text!r} is not an IPv4 CIDR block ({exc})") from exc
    if not MIN_PREFIX <= net.prefixlen <= MAX_PREFIX:
        raise faults.invalid_parameter(field, f"the prefix must be between /{MIN_PREFIX} and /{MAX_PREFIX}")
    return net


def check_rules(rules: Iterable[pb.Rule], field: str) -> list[pb.Rule]:
    """Security group rules, normalized (lower case, canonical CIDR)."""
    out = []
    for i, rule in enumerate(rules):
        where = f"{field}[{i}]"
        direction, protocol = rule.direction.lower(), rule.protocol.lower()
        if direction not in DIRECTIONS:
            raise faults.invalid_parameter(f"{where}.direction", f"must be one of {', '.join(DIRECTIONS)}")
        if protocol not in PROTOCOLS:
            raise faults.invalid_parameter(f"{where}.protocol", f"must be one of {', '.join(PROTOCOLS)}")
        if protocol in ("tcp", "udp") and not 0 <= rule.from_port <= rule.to_port <= 65535:
            raise faults.invalid_parameter(f"{where}.from_port", "need 0 <= from_port <= to_port <= 65535")
        try:
            cidr = str(ipaddress.ip_network(rule.cidr or "0.0.0.0/0", strict=False))
        except ValueError as exc:
            raise faults.invalid_parameter(f"{where}.cidr", f"{rule.cidr!r} is not a CIDR block") from exc
        out.append(pb.Rule(direction=direction, protocol=protocol, from_port=rule.from_port,
                           to_port=rule.to_port, cidr=cidr))
    return out


def rule_key(rule: pb.Rule) -> tuple[str, str, int, int, str]:
    return (rule.direction, rule.protocol, rule.from_port, rule.to_port, rule.cidr)


def merge_rules(current: Sequence[pb.Rule], added: Sequence[pb.Rule]) -> list[pb.Rule]:
    """Current rules plus the new ones; a rule already there is not repeated."""
    seen = {rule_key(r) for r in current}
    out = list(current)
    for rule in added:
        if rule_key(rule) not in seen:
            seen.add(rule_key(rule))
            out.append(rule)
    return out


def vpc(req: pb.CreateResourceRequest) -> Draft:
    network(req.vpc.cidr, "vpc.cidr")
    return Draft(pb.VPC, "vpc", pb.VpcProps(cidr=req.vpc.cidr))


def subnet(req: pb.CreateResourceRequest, ctx: Context) -> Draft:
    props = req.subnet
    parent = ctx.find(pb.VPC, props.vpc_id) if props.vpc_id else None
    if parent is None:
        raise faults.invalid_parameter("subnet.vpc_id", "required")
    net = network(props.cidr, "subnet.cidr")
    if not net.subnet_of(ipaddress.IPv4Network(parent.res.vpc.cidr)):
        raise faults.invalid_parameter("subnet.cidr", f"{net} is not within the VPC's {parent.res.vpc.cidr}")
    for other in ctx.store.live(ctx.account, ctx.region.provider, ctx.region.name, pb.SUBNET):
        if (other.res.subnet.vpc_id == parent.id and other.state != lifecycle.DELETING
                and net.overlaps(ipaddress.IPv4Network(other.res.subnet.cidr))):
            raise faults.invalid_parameter("subnet.cidr", f"{net} overlaps {other.id} ({other.res.subnet.cidr})")
    return Draft(pb.SUBNET, "subnet", pb.SubnetProps(vpc_id=parent.id, cidr=str(net)),
                 zone=zone_of(req.zone, ctx.region))


def security_group(req: pb.CreateResourceRequest, ctx: Context) -> Draft:
    props = req.security_group
    if not props.vpc_id:
        raise faults.invalid_parameter("security_group.vpc_id", "required")
    parent = ctx.find(pb.VPC, props.vpc_id)
    rules = merge_rules([], check_rules(props.rules, "security_group.rules"))
    return Draft(pb.SECURITY_GROUP, "security_group", pb.SecurityGroupProps(vpc_id=parent.id, rules=rules))


def key_pair(req: pb.CreateResourceRequest) -> Draft:
    material = import_key(req.key_pair.public_key) if req.key_pair.public_key else generate_key()
    props = pb.KeyPairProps(public_key=material.public_key, fingerprint=material.fingerprint)
    return Draft(pb.KEY_PAIR, "key_pair", props, private_key=material.private_key)


def vm(req: pb.CreateResourceRequest, ctx: Context) -> Draft:
    """A VM: its spec, image, subnet (optional), security groups and key pair must all be there and fit.
    The addresses are given later, once quotas and capacity let the VM be made."""
    props, region = req.vm, ctx.region
    spec = region.specs.get(props.spec)
    if spec is None:
        raise faults.invalid_instance_type(props.spec, region.name)
    image = region.images.get(props.image_id)
    if image is None:
        raise faults.image_not_found(props.image_id, region.name)
    if image.architecture != spec.architecture:
        raise faults.invalid_parameter(
            "vm.image_id", f"image {image.id} is {image.architecture} but spec {spec.name} is {spec.architecture}")
    # Without a subnet the VM joins the region's default network (as EC2's default VPC).
    net = ctx.find(pb.SUBNET, props.subnet_id) if props.subnet_id else None
    if net is not None and req.zone and req.zone != net.res.zone:
        raise faults.invalid_parameter("zone", f"subnet {net.id} is in zone {net.res.zone}, not {req.zone}")
    zone = net.res.zone if net is not None else zone_of(req.zone, region)
    groups = list(dict.fromkeys(props.security_group_ids))
    for gid in groups:
        group = ctx.find(pb.SECURITY_GROUP, gid)
        if net is not None and group.res.security_group.vpc_id != net.res.subnet.vpc_id:
            raise faults.invalid_parameter("vm.security_group_ids", f"{gid} belongs to another VPC than {net.id}")
    if props.key_pair_id:
        ctx.find(pb.KEY_PAIR, props.key_pair_id)
    root = props.root_disk_gib or image.size_gib
    if not image.size_gib <= root <= MAX_DISK_GIB:
        raise faults.invalid_parameter("vm.root_disk_gib", f"must be between {image.size_gib} and {MAX_DISK_GIB}")
    if len(props.user_data.encode()) > MAX_USER_DATA:
        raise faults.invalid_parameter("vm.user_data", f"at most {MAX_USER_DATA} bytes")
    out = pb.VmProps(spec=spec.name, image_id=image.id, subnet_id=props.subnet_id, security_group_ids=groups,
                     key_pair_id=props.key_pair_id, user_data=props.user_data, root_disk_gib=root,
                     vcpu=spec.vcpu)
    return Draft(pb.VM, "vm", out, zone=zone, vcpu=spec.vcpu)


def disk(req: pb.CreateResourceRequest, ctx: Context) -> Draft:
    props = req.disk
    if not 1 <= props.size_gib <= MAX_DISK_GIB:
        raise faults.invalid_parameter("disk.size_gib", f"must be between 1 and {MAX_DISK_GIB}")
    disk_type = "standard" if props.disk_type in ("", "default") else props.disk_type
    if disk_type not in DISK_TYPES:
        raise faults.invalid_parameter("disk.disk_type", f"must be one of {', '.join(DISK_TYPES)}")
    return Draft(pb.DISK, "disk", pb.DiskProps(size_gib=props.size_gib, disk_type=disk_type),
                 zone=zone_of(req.zone, ctx.region))


def draft(req: pb.CreateResourceRequest, ctx: Context) -> Draft:
    """Check a create request of any kind."""
    check_common(req)
    which = req.WhichOneof("props")
    if which == "vpc":
        return vpc(req)
    if which == "subnet":
        return subnet(req, ctx)
    if which == "security_group":
        return security_group(req, ctx)
    if which == "key_pair":
        return key_pair(req)
    if which == "vm":
        return vm(req, ctx)
    if which == "disk":
        return disk(req, ctx)
    raise faults.invalid_parameter("props", f"set one of {', '.join(PROPS_KIND)}")
