"""Security group ↔ libvirt nwfilter XML.

A security group is one nwfilter in the root chain. Its rules (priority 500) accept
what the group allows; fixed rules around them make it behave like a cloud's group:
DHCP and replies to the VM's own connections are accepted (priority 100), and all
other inbound IP traffic is dropped (priority 900). Outbound traffic is free unless
the group has outbound rules, which then are the only way out. nwfilter carries no
metadata, so the DHCP rule's comment marks the filter as a spider group and names its
VPC; filters without the mark (libvirt's own, e.g. clean-traffic) are not groups.
A VM in several groups gets one filter of its own that references them all.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from cbapi.spider.v1 import spider_pb2 as pb
from spider.drivers.libvirt import xmltools as X

MARK = "cb-spider security group"
RULE_PRIORITY = "500"
_DIRECTION = {"inbound": "in", "outbound": "out"}
_BACK = {v: k for k, v in _DIRECTION.items()}
_PORTED = ("tcp", "udp")


@dataclass(frozen=True)
class FilterView:
    name: str
    uuid: str
    vpc: str
    rules: list[pb.SecurityRule]
    is_group: bool


def normal(rule: pb.SecurityRule) -> tuple[str, str, int, int, str]:
    """A rule's identity: ports only count for tcp/udp, the CIDR in canonical form."""
    cidr = str(ipaddress.ip_network(rule.cidr or "0.0.0.0/0", strict=False))
    ports = (rule.from_port, rule.to_port) if rule.protocol in _PORTED else (0, 0)
    return rule.direction, rule.protocol, ports[0], ports[1], cidr


def _rule(parent: ET.Element, action: str, direction: str, priority: str, proto: str, **attrs: str) -> None:
    rule = X.sub(parent, "rule", action=action, direction=direction, priority=priority)
    X.sub(rule, proto, **attrs)


def _user_rule(parent: ET.Element, rule: pb.SecurityRule) -> None:
    direction, proto, low, high, cidr = normal(rule)
    net = ipaddress.ip_network(cidr)
    side = "src" if direction == "inbound" else "dst"
    attrs = {f"{side}ipaddr": str(net.network_address), f"{side}ipmask": str(net.prefixlen)}
    if proto in _PORTED:
        attrs |= {"dstportstart": str(low), "dstportend": str(high)}
    _rule(parent, "accept", _DIRECTION[direction], RULE_PRIORITY, proto, **attrs)


def build(name: str, vpc: str, rules: list[pb.SecurityRule], uuid: str = "") -> str:
    root = ET.Element("filter", name=name, chain="root")
    if uuid:
        X.sub(root, "uuid", uuid)
    _rule(root, "accept", "out", "100", "udp", srcportstart="68", dstportstart="67", comment=f"{MARK}; vpc={vpc}")
    _rule(root, "accept", "in", "100", "udp", srcportstart="67", dstportstart="68")
    _rule(root, "accept", "inout", "100", "all", state="ESTABLISHED,RELATED")
    seen: set[tuple[str, str, int, int, str]] = set()
    for rule in rules:
        if normal(rule) not in seen:
            seen.add(normal(rule))
            _user_rule(root, rule)
    _rule(root, "drop", "in", "900", "all")
    if any(r.direction == "outbound" for r in rules):
        _rule(root, "drop", "out", "900", "all")
    return X.tostring(root)


def build_union(name: str, groups: list[str]) -> str:
    """A VM's own filter: the union of its groups (nwfilter merges referenced rules by priority)."""
    root = ET.Element("filter", name=name, chain="root")
    for group in groups:
        X.sub(root, "filterref", filter=group)
    return X.tostring(root)


def _parse_rule(rule: ET.Element) -> pb.SecurityRule | None:
    direction = _BACK.get(rule.get("direction", ""))
    if rule.get("priority") != RULE_PRIORITY or rule.get("action") != "accept" or direction is None or len(rule) != 1:
        return None
    match = rule[0]
    side = "src" if direction == "inbound" else "dst"
    cidr = f"{match.get(f'{side}ipaddr', '0.0.0.0')}/{match.get(f'{side}ipmask', '0')}"
    out = pb.SecurityRule(direction=direction, protocol=match.tag, cidr=str(ipaddress.ip_network(cidr, strict=False)))
    if match.tag in _PORTED:
        out.from_port = int(match.get("dstportstart", "0"))
        out.to_port = int(match.get("dstportend", match.get("dstportstart", "65535")))
    return out


def parse(text: str) -> FilterView:
    root = X.parse(text)
    vpc, is_group = "", False
    for match in root.iterfind("rule/*"):
        comment = match.get("comment", "")
        if comment.startswith(MARK):
            is_group = True
            vpc = comment.partition("vpc=")[2]
    rules = [r for r in (_parse_rule(e) for e in root.findall("rule")) if r is not None]
    return FilterView(root.get("name", ""), X.text(root, "uuid"), vpc, rules, is_group)
