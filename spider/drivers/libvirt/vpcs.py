"""VPCs as libvirt networks, subnets as DHCP ranges in them (see networks)."""

from __future__ import annotations

import ipaddress

import libvirt

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from spider.drivers import base
from spider.drivers.libvirt import lookups as L
from spider.drivers.libvirt import networks as N
from spider.drivers.libvirt.client import LibvirtClient
from spider.drivers.libvirt.errors import not_found
from spider.drivers.libvirt.settings import LibvirtSettings

_ADD, _DELETE = libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE
_RANGE = libvirt.VIR_NETWORK_SECTION_IP_DHCP_RANGE


def check_subnets(cidrs: list[str], field: str) -> None:
    """Refuse subnets too small for hosts or overlapping one another (libvirt ranges must not overlap)."""
    nets: list[ipaddress.IPv4Network] = []
    for i, cidr in enumerate(cidrs):
        try:
            N.range_of(cidr)
        except ValueError as err:
            raise errors.InvalidArgument.field(f"{field}[{i}].ipv4_cidr" if field else "subnet.ipv4_cidr",
                                               str(err)) from err
        net = ipaddress.IPv4Network(cidr)
        clash = next((other for other in nets if other.overlaps(net)), None)
        if clash is not None:
            raise errors.InvalidArgument.field(f"{field}[{i}].ipv4_cidr" if field else "subnet.ipv4_cidr",
                                               f"{cidr} overlaps subnet {clash} of the VPC")
        nets.append(net)


def users_of(conn: libvirt.virConnect, network: str) -> list[str]:
    return sorted(v.name for v, _, _ in L.domain_views(conn) if any(n.network == network for n in v.nics))


class LibvirtVpcs(base.VpcHandler):
    def __init__(self, client: LibvirtClient, settings: LibvirtSettings) -> None:
        self.client, self.settings = client, settings

    def _vpc(self, view: N.NetworkView) -> pb.Vpc:
        zone = self.settings.zones[0]
        subnets = [pb.Subnet(iid=common.IID(csp_name=view.names.get(c, ""), csp_id=c), ipv4_cidr=c, zone=zone)
                   for c in view.subnets]
        return pb.Vpc(iid=common.IID(csp_name=view.name, csp_id=view.uuid), ipv4_cidr=view.cidr, subnets=subnets)

    async def create_vpc(self, vpc: pb.Vpc, token: str) -> pb.Vpc:
        check_subnets([s.ipv4_cidr for s in vpc.subnets], "vpc.subnets")
        name = vpc.iid.csp_name
        xml = N.build(name, vpc.ipv4_cidr, [(s.iid.csp_name, s.ipv4_cidr) for s in vpc.subnets],
                      self.settings.forward, token)

        def define(conn: libvirt.virConnect) -> libvirt.virNetwork:
            try:
                existing = conn.networkLookupByName(name)
            except libvirt.libvirtError as err:
                if err.get_error_code() != libvirt.VIR_ERR_NO_NETWORK:
                    raise
                return conn.networkDefineXML(xml)
            if N.parse(existing.XMLDesc(0)).token != token:
                raise base.CloudError(errors.AlreadyExists, f"network {name!r} already exists", "VIR_ERR_NETWORK_EXIST")
            return existing  # the same request again

        net = await self.client.call("virNetworkDefineXML", define, "vpc", vpc.iid.name)

        def start(_: libvirt.virConnect) -> str:
            if not net.isActive():
                net.create()
            net.setAutostart(1)  # come back with the host, as a cloud's VPC would
            return str(net.UUIDString())

        out = pb.Vpc()
        out.CopyFrom(vpc)
        out.iid.csp_id = await self.client.call("virNetworkCreate", start, "vpc", vpc.iid.name)
        for subnet in out.subnets:
            subnet.iid.csp_id = str(ipaddress.IPv4Network(subnet.ipv4_cidr))
            subnet.zone = subnet.zone or self.settings.zones[0]
        return out

    async def get_vpc(self, csp_id: str) -> pb.Vpc:
        text = await self.client.call("virNetworkGetXMLDesc", lambda c: L.network(c, csp_id).XMLDesc(0), "vpc", csp_id)
        return self._vpc(N.parse(text))

    async def list_vpcs(self) -> list[pb.Vpc]:
        def describe(conn: libvirt.virConnect) -> list[str]:
            return [n.XMLDesc(0) for n in conn.listAllNetworks(0)]

        return [self._vpc(N.parse(t)) for t in await self.client.call("virConnectListAllNetworks", describe, "vpc")]

    async def delete_vpc(self, csp_id: str) -> None:
        def check(conn: libvirt.virConnect) -> libvirt.virNetwork:
            net = L.network(conn, csp_id)
            users = users_of(conn, net.name())
            if users:
                raise base.CloudError(errors.FailedPrecondition,
                                      f"network {net.name()!r} is in use by domains {', '.join(users)}")
            return net

        net = await self.client.call("virNetworkLookupByUUIDString", check, "vpc", csp_id)

        def stop(_: libvirt.virConnect) -> None:
            if net.isActive():
                net.destroy()

        await self.client.call("virNetworkDestroy", stop, "vpc", csp_id)
        await self.client.call("virNetworkUndefine", lambda _: net.undefine(), "vpc", csp_id)

    async def add_subnet(self, vpc_csp_id: str, subnet: pb.Subnet, token: str) -> pb.Subnet:
        cidr = str(ipaddress.IPv4Network(subnet.ipv4_cidr))
        zone = subnet.zone or self.settings.zones[0]
        made = pb.Subnet(iid=common.IID(name=subnet.iid.name, csp_name=subnet.iid.csp_name, csp_id=cidr),
                         ipv4_cidr=cidr, zone=zone)

        def add(conn: libvirt.virConnect) -> None:
            net = L.network(conn, vpc_csp_id)
            view = N.parse(net.XMLDesc(0))
            if cidr in view.subnets:
                return  # already there: a repeated request
            check_subnets([*view.subnets, cidr], "")
            net.update(_ADD, _RANGE, -1, N.range_xml(*N.range_of(cidr)), L.update_flags(net))

        await self.client.call("virNetworkUpdate", add, "subnet", subnet.iid.name)
        return made

    async def remove_subnet(self, vpc_csp_id: str, subnet_csp_id: str) -> None:
        def remove(conn: libvirt.virConnect) -> None:
            net = L.network(conn, vpc_csp_id)
            view = N.parse(net.XMLDesc(0))
            if subnet_csp_id not in view.subnets:
                raise not_found("VIR_ERR_NO_NETWORK", f"network {view.name!r} has no subnet {subnet_csp_id}")
            inside = ipaddress.IPv4Network(subnet_csp_id)
            held = [h.name or h.mac for h in view.hosts if ipaddress.IPv4Address(h.ip) in inside]
            if held:
                raise base.CloudError(errors.FailedPrecondition,
                                      f"subnet {subnet_csp_id} still holds addresses of {', '.join(held)}")
            net.update(_DELETE, _RANGE, -1, N.range_xml(*view.ranges[subnet_csp_id]), L.update_flags(net))

        await self.client.call("virNetworkUpdate", remove, "subnet", subnet_csp_id)
