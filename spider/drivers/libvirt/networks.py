"""VPC ↔ libvirt network XML.

A VPC is one libvirt network whose `<ip>` is the VPC's CIDR (the bridge holds its
first address, the VMs' gateway). A subnet is a DHCP range inside it covering the
subnet's hosts, so every subnet shares the VPC's L2 segment and prefix and they reach
each other as subnets of one VPC do. A subnet's cloud ID is its CIDR. A VM is pinned
to its subnet by a static DHCP host entry (MAC → an address of the subnet).
libvirt ranges carry no names, so the subnets named at VPC creation are also written
to the network's metadata; a subnet added later is known to libvirt by its CIDR only.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from spider.drivers.libvirt import xmltools as X

Net = ipaddress.IPv4Network
Addr = ipaddress.IPv4Address


@dataclass(frozen=True)
class Host:
    mac: str
    ip: str
    name: str = ""


@dataclass
class NetworkView:
    """What spider reads from a network's XML."""

    name: str
    uuid: str
    cidr: str = ""
    gateway: str = ""
    subnets: list[str] = field(default_factory=list)
    hosts: list[Host] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # subnet CIDR → csp_name from the metadata
    ranges: dict[str, tuple[str, str]] = field(default_factory=dict)  # subnet CIDR → its DHCP range
    token: str = ""


def gateway_of(cidr: str) -> Addr:
    return next(Net(cidr).hosts())


def range_of(cidr: str) -> tuple[str, str]:
    """The DHCP range of a subnet: every host address of it."""
    net = Net(cidr)
    if net.num_addresses < 4:
        raise ValueError(f"subnet {cidr} has no room for hosts; use a /30 or larger")
    return str(net.network_address + 1), str(net.broadcast_address - 1)


def cidr_of(start: str, end: str) -> str:
    """The subnet a range stands for: exact for ranges made by range_of, the covering block otherwise."""
    lo, hi = Addr(start) - 1, Addr(end) + 1
    for prefix in range(32, -1, -1):
        net = Net(f"{lo}/{prefix}", strict=False)
        if net.network_address <= lo and net.broadcast_address >= hi:
            return str(net)
    return "0.0.0.0/0"


def build(name: str, cidr: str, subnets: list[tuple[str, str]], forward: str, token: str) -> str:
    """A network for a VPC `cidr` with `subnets` as (csp_name, CIDR) pairs."""
    root = ET.Element("network")
    X.sub(root, "name", name)
    meta = X.sub(X.sub(root, "metadata"), X.qname("vpc"), token=token)
    for sub_name, sub_cidr in subnets:
        X.sub(meta, X.qname("subnet"), name=sub_name, cidr=sub_cidr)
    if forward != "none":
        X.sub(root, "forward", mode=forward)
    net = Net(cidr)
    ip = X.sub(root, "ip", address=str(gateway_of(cidr)), prefix=str(net.prefixlen))
    if subnets:
        dhcp = X.sub(ip, "dhcp")
        for _, sub_cidr in subnets:
            start, end = range_of(sub_cidr)
            X.sub(dhcp, "range", start=start, end=end)
    return X.tostring(root)


def range_xml(start: str, end: str) -> str:
    return X.tostring(ET.Element("range", start=start, end=end))


def host_xml(host: Host) -> str:
    attrs = {"mac": host.mac, "ip": host.ip}
    if host.name:
        attrs["name"] = host.name
    return X.tostring(ET.Element("host", attrs))


def parse(text: str) -> NetworkView:
    root = X.parse(text)
    view = NetworkView(name=X.text(root, "name"), uuid=X.text(root, "uuid"))
    meta = X.metadata(root, "vpc")
    if meta is not None:
        view.token = meta.get("token", "")
        view.names = {s.get("cidr", ""): s.get("name", "") for s in meta.findall(X.qname("subnet"))}
    for ip in root.findall("ip"):
        if ip.get("family", "ipv4") != "ipv4" or not ip.get("address"):
            continue
        prefix = ip.get("prefix") or str(Net(f"0.0.0.0/{ip.get('netmask', '255.255.255.0')}").prefixlen)
        view.cidr = str(Net(f"{ip.get('address')}/{prefix}", strict=False))
        view.gateway = ip.get("address", "")
        for r in ip.findall("dhcp/range"):
            start, end = r.get("start", "0.0.0.0"), r.get("end", "0.0.0.0")
            view.subnets.append(cidr_of(start, end))
            view.ranges[view.subnets[-1]] = (start, end)
        view.hosts = [Host(h.get("mac", ""), h.get("ip", ""), h.get("name", "")) for h in ip.findall("dhcp/host")]
        break  # libvirt serves DHCP on one IPv4 address per network
    return view


def free_address(view: NetworkView, cidr: str, taken: set[str]) -> str:
    """The lowest address of subnet `cidr` that no host entry, the gateway, or `taken` holds."""
    used = {h.ip for h in view.hosts} | {view.gateway} | taken
    start, end = range_of(cidr)
    for value in range(int(Addr(start)), int(Addr(end)) + 1):
        ip = str(Addr(value))
        if ip not in used:
            return ip
    return ""
