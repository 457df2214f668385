"""VM ↔ libvirt domain XML.

The domain's name is the VM's cloud-side name, so it is the idempotency token: a
repeated create finds the domain already defined. What spider needs to read back
(spec, image, subnet, address, key pair, groups, the create token) is kept in the
domain's metadata. The cloud ID of a VM is the domain UUID.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, fields

from spider.drivers.libvirt import xmltools as X


@dataclass
class VmMeta:
    """spider's `<cb:vm>` metadata of a domain."""

    token: str = ""
    spec: str = ""
    image: str = ""
    zone: str = ""
    network: str = ""  # name of the libvirt network the VM is on
    vpc: str = ""  # the VPC (network) UUID, when the network is a VPC
    subnet: str = ""  # subnet CIDR
    ip: str = ""  # the address reserved for the VM in its subnet
    keypair: str = ""
    groups: str = ""  # space-separated security group (nwfilter) names
    union: str = ""  # the VM's own filter joining several groups
    seed: str = ""  # seed file path (local hosts) or volume name (remote hosts)
    root_gib: str = ""

    def element(self) -> ET.Element:
        return ET.Element(X.qname("vm"), {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)})

    @classmethod
    def from_element(cls, elem: ET.Element | None) -> VmMeta:
        if elem is None:
            return cls()
        return cls(**{f.name: elem.get(f.name, "") for f in fields(cls)})


@dataclass
class Disk:
    device: str  # disk | cdrom
    target: str  # vda, sda…
    pool: str = ""
    volume: str = ""
    file: str = ""
    format: str = ""


@dataclass
class Nic:
    network: str
    mac: str
    filter: str = ""


@dataclass
class DomainSpec:
    """What a new VM's domain is made of."""

    name: str
    type: str
    arch: str
    vcpu: int
    memory_mib: int
    meta: VmMeta
    disks: list[Disk] = field(default_factory=list)
    nics: list[Nic] = field(default_factory=list)


@dataclass
class DomainView:
    name: str
    uuid: str
    meta: VmMeta
    disks: list[Disk]
    nics: list[Nic]
    keyring: bool


def disk_xml(disk: Disk) -> ET.Element:
    kind = "file" if disk.file else "volume"
    elem = ET.Element("disk", type=kind, device=disk.device)
    X.sub(elem, "driver", name="qemu", type=disk.format or "raw")
    if disk.file:
        X.sub(elem, "source", file=disk.file)
    else:
        X.sub(elem, "source", pool=disk.pool, volume=disk.volume)
    bus = "sata" if disk.device == "cdrom" else "virtio"
    X.sub(elem, "target", dev=disk.target, bus=bus)
    if disk.device == "cdrom":
        X.sub(elem, "readonly")
    return elem


def build(spec: DomainSpec) -> str:
    root = ET.Element("domain", type=spec.type)
    X.sub(root, "name", spec.name)
    X.sub(root, "metadata").append(spec.meta.element())
    X.sub(root, "memory", str(spec.memory_mib), unit="MiB")
    X.sub(root, "vcpu", str(spec.vcpu))
    os = X.sub(root, "os")
    X.sub(os, "type", "hvm", arch=spec.arch)
    X.sub(os, "boot", dev="hd")
    features = X.sub(root, "features")
    X.sub(features, "acpi")
    X.sub(features, "apic")
    devices = X.sub(root, "devices")
    for disk in spec.disks:
        devices.append(disk_xml(disk))
    for nic in spec.nics:
        iface = X.sub(devices, "interface", type="network")
        X.sub(iface, "source", network=nic.network)
        X.sub(iface, "mac", address=nic.mac)
        X.sub(iface, "model", type="virtio")
        if nic.filter:
            X.sub(iface, "filterref", filter=nic.filter)
    X.sub(devices, "serial", type="pty")
    X.sub(devices, "console", type="pty")
    return X.tostring(root)


def keyring_xml(name: str, dom_type: str, arch: str) -> str:
    """The inert domain whose metadata holds the key pairs: never started (see keypairs)."""
    root = ET.Element("domain", type=dom_type)
    X.sub(root, "name", name)
    X.sub(root, "title", "cb-spider key pairs (not a VM; never started)")
    X.sub(root, "metadata").append(ET.Element(X.qname("keyring")))
    X.sub(root, "memory", "1", unit="MiB")
    X.sub(X.sub(root, "os"), "type", "hvm", arch=arch)
    return X.tostring(root)


def parse(text: str) -> DomainView:
    root = X.parse(text)
    disks = []
    for d in root.findall("devices/disk"):
        src = d.find("source")
        disks.append(Disk(device=d.get("device", "disk"), target=X.attr(d, "target", "dev"),
                          pool=src.get("pool", "") if src is not None else "",
                          volume=src.get("volume", "") if src is not None else "",
                          file=src.get("file", "") if src is not None else "", format=X.attr(d, "driver", "type")))
    nics = [Nic(network=X.attr(i, "source", "network"), mac=X.attr(i, "mac", "address"),
                filter=X.attr(i, "filterref", "filter"))
            for i in root.findall("devices/interface")]
    return DomainView(name=X.text(root, "name"), uuid=X.text(root, "uuid"), meta=VmMeta.from_element(
        X.metadata(root, "vm")), disks=disks, nics=nics, keyring=X.metadata(root, "keyring") is not None)


def next_target(view: DomainView) -> str:
    """The first free virtio disk name (vdb, vdc…) for a data disk."""
    used = {d.target for d in view.disks}
    for letter in "bcdefghijklmnopqrstuvwxyz":
        if f"vd{letter}" not in used:
            return f"vd{letter}"
    raise ValueError(f"domain {view.name} has no free disk slot")
