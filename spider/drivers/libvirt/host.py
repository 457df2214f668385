"""What a connection learns about its host once: architecture, guest domain types, features."""

from __future__ import annotations

from dataclasses import dataclass, field

import libvirt

from spider.drivers.libvirt import xmltools as X

# The fastest domain type a host offers for an architecture wins.
_PREFERENCE = ("kvm", "qemu", "test")


@dataclass(frozen=True)
class HostFacts:
    arch: str
    domain_types: dict[str, str] = field(default_factory=dict)  # guest arch → domain type
    nwfilter: bool = False

    def domain_type(self, arch: str) -> str:
        return self.domain_types.get(arch) or self.domain_types.get(self.arch) or next(
            iter(self.domain_types.values()), "kvm")

    def guest_arch(self, wanted: str) -> str:
        """`wanted` when the host can run it, else the host's own architecture."""
        return wanted if wanted in self.domain_types else self.arch


def parse_capabilities(text: str, nwfilter: bool) -> HostFacts:
    root = X.parse(text)
    types: dict[str, str] = {}
    for guest in root.findall("guest"):
        arch = guest.find("arch")
        if arch is None or guest.findtext("os_type") != "hvm":
            continue
        offered = [d.get("type", "") for d in arch.findall("domain")]
        ranked = sorted(offered, key=lambda t: _PREFERENCE.index(t) if t in _PREFERENCE else len(_PREFERENCE))
        if ranked:
            types[arch.get("name", "")] = ranked[0]
    return HostFacts(arch=X.text(root, "host/cpu/arch", "x86_64"), domain_types=types, nwfilter=nwfilter)


def has_nwfilter(conn: libvirt.virConnect) -> bool:
    """True when the connection serves nwfilters (libvirt's test driver does not)."""
    try:
        conn.listAllNWFilters(0)
    except libvirt.libvirtError as err:
        if err.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
            return False
        raise
    return True


def probe(conn: libvirt.virConnect) -> HostFacts:
    return parse_capabilities(conn.getCapabilities(), has_nwfilter(conn))
