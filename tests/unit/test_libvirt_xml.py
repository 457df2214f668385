"""The libvirt driver's XML builders and parsers: networks, nwfilters, domains, volumes, the seed ISO."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET

import pytest

from cbapi.spider.v1 import spider_pb2 as pb

pytest.importorskip("libvirt")

from spider.drivers.libvirt import domains as D
from spider.drivers.libvirt import networks as N
from spider.drivers.libvirt import nwfilters as F
from spider.drivers.libvirt import volumes as V
from spider.drivers.libvirt.iso9660 import SECTOR, make_iso
from spider.drivers.libvirt.nocloud import seed_iso


def test_network_holds_vpc_cidr_and_one_range_per_subnet() -> None:
    xml = N.build("vpc-a1", "10.0.0.0/16", [("front-x", "10.0.1.0/24"), ("back-y", "10.0.2.0/25")], "nat", "tok")
    root = ET.fromstring(xml)
    assert root.find("forward").get("mode") == "nat"
    assert (root.find("ip").get("address"), root.find("ip").get("prefix")) == ("10.0.0.1", "16")
    ranges = [(r.get("start"), r.get("end")) for r in root.iterfind("ip/dhcp/range")]
    assert ranges == [("10.0.1.1", "10.0.1.254"), ("10.0.2.1", "10.0.2.126")]
    view = N.parse(xml)
    assert view.cidr == "10.0.0.0/16" and view.gateway == "10.0.0.1" and view.token == "tok"
    assert view.subnets == ["10.0.1.0/24", "10.0.2.0/25"]
    assert view.names == {"10.0.1.0/24": "front-x", "10.0.2.0/25": "back-y"}


def test_isolated_network_has_no_forward_and_no_dhcp_without_subnets() -> None:
    root = ET.fromstring(N.build("v", "192.168.10.0/24", [], "none", "t"))
    assert root.find("forward") is None and root.find("ip/dhcp") is None


def test_range_and_cidr_round_trip_and_foreign_ranges_get_a_covering_block() -> None:
    for cidr in ("10.0.1.0/24", "10.0.0.0/30", "172.16.0.0/12"):
        assert N.cidr_of(*N.range_of(cidr)) == cidr
    assert N.cidr_of("192.168.122.2", "192.168.122.254") == "192.168.122.0/24"
    with pytest.raises(ValueError, match="no room"):
        N.range_of("10.0.0.0/31")


def test_free_address_skips_gateway_hosts_and_tried_ones() -> None:
    view = N.parse(N.build("v", "10.0.0.0/24", [("s", "10.0.0.0/28")], "nat", "t"))
    view.hosts.append(N.Host("52:54:00:00:00:01", "10.0.0.2", "vm1"))
    assert N.free_address(view, "10.0.0.0/28", set()) == "10.0.0.3"  # .1 is the gateway, .2 is taken
    assert N.free_address(view, "10.0.0.0/28", {"10.0.0.3"}) == "10.0.0.4"
    full = {f"10.0.0.{i}" for i in range(1, 15)}
    assert N.free_address(view, "10.0.0.0/28", full) == ""


def _rule(direction: str, proto: str, low: int = 0, high: int = 0, cidr: str = "0.0.0.0/0") -> pb.SecurityRule:
    return pb.SecurityRule(direction=direction, protocol=proto, from_port=low, to_port=high, cidr=cidr)


def test_nwfilter_rules_round_trip_with_fixed_rules_left_out() -> None:
    rules = [_rule("inbound", "tcp", 22, 22), _rule("inbound", "udp", 5000, 5100, "10.1.0.0/16"),
             _rule("inbound", "icmp", cidr="192.168.0.0/24"), _rule("outbound", "all", cidr="10.0.0.0/8")]
    xml = F.build("sg-1", "vpc-uuid; token=t", rules, uuid="5f1c3f0e-8f7a-4d0b-9d55-2f7c3a1d9e10")
    view = F.parse(xml)
    assert view.is_group and view.vpc == "vpc-uuid; token=t" and view.uuid.startswith("5f1c3f0e")
    assert [F.normal(r) for r in view.rules] == [F.normal(r) for r in rules]
    root = ET.fromstring(xml)
    drops = [(r.get("direction"), r.get("priority")) for r in root.iter("rule") if r.get("action") == "drop"]
    assert drops == [("in", "900"), ("out", "900")]  # outbound is closed because the group has outbound rules


def test_nwfilter_inbound_only_group_leaves_outbound_open_and_dedupes() -> None:
    ssh = _rule("inbound", "tcp", 22, 22)
    root = ET.fromstring(F.build("sg", "v", [ssh, ssh]))
    assert [r.get("direction") for r in root.iter("rule") if r.get("action") == "drop"] == ["in"]
    assert len(F.parse(F.build("sg", "v", [ssh, ssh])).rules) == 1
    inbound = root.find("rule[@priority='500']/tcp")
    assert inbound is not None and inbound.get("srcipaddr") == "0.0.0.0" and inbound.get("dstportstart") == "22"


def test_filters_without_the_mark_are_not_groups() -> None:
    xml = "<filter name='clean-traffic' chain='root'><filterref filter='no-mac-spoofing'/></filter>"
    assert not F.parse(xml).is_group
    union = ET.fromstring(F.build_union("vm-groups", ["a", "b"]))
    assert [f.get("filter") for f in union.iter("filterref")] == ["a", "b"]


def test_rule_identity_ignores_ports_of_portless_protocols_and_cidr_spelling() -> None:
    assert F.normal(_rule("inbound", "icmp", 3, 4, "10.0.0.1/8")) == ("inbound", "icmp", 0, 0, "10.0.0.0/8")


def _spec() -> D.DomainSpec:
    meta = D.VmMeta(token="t1", spec="small", image="img.qcow2", zone="z", network="n", ip="10.0.1.5",
                    groups="sg-a sg-b", union="vm-groups", root_gib="10")
    return D.DomainSpec(
        name="vm-abc", type="kvm", arch="x86_64", vcpu=2, memory_mib=2048, meta=meta,
        disks=[D.Disk("disk", "vda", pool="p", volume="vm-abc.root", format="qcow2"),
               D.Disk("cdrom", "sda", file="/seeds/vm-abc.seed.iso", format="raw")],
        nics=[D.Nic("n", "52:54:00:aa:bb:cc", "vm-groups")])


def test_domain_xml_carries_devices_and_metadata_that_parse_back() -> None:
    xml = D.build(_spec())
    root = ET.fromstring(xml)
    assert root.get("type") == "kvm" and root.find("os/type").get("arch") == "x86_64"
    assert root.find("memory").text == "2048" and root.find("memory").get("unit") == "MiB"
    assert root.find("devices/disk[@device='cdrom']/readonly") is not None
    view = D.parse(xml)
    assert view.name == "vm-abc" and not view.keyring
    assert view.meta == _spec().meta
    assert [(d.target, d.volume or d.file) for d in view.disks] == [("vda", "vm-abc.root"),
                                                                     ("sda", "/seeds/vm-abc.seed.iso")]
    assert view.nics == [D.Nic("n", "52:54:00:aa:bb:cc", "vm-groups")]
    assert D.next_target(view) == "vdb"


def test_metadata_values_are_escaped_not_spliced() -> None:
    spec = _spec()
    spec.meta.spec = "a'\"<&>"
    assert D.parse(D.build(spec)).meta.spec == "a'\"<&>"


def test_keyring_domain_is_marked() -> None:
    view = D.parse(D.keyring_xml("cb-spider-keyring", "test", "i686"))
    assert view.keyring and view.name == "cb-spider-keyring" and view.disks == []


def test_volumes_are_told_apart_by_suffix() -> None:
    assert V.is_spiders("web-a1b2c3.root") and V.is_spiders("data-x.disk") and V.is_spiders("w.seed")
    assert not V.is_spiders("ubuntu-22.04-x86_64.qcow2")
    image = V.VolumeView("img", "k", "/pool/img", 2 * V.GIB + 1, "raw")
    root = ET.fromstring(V.build("vm.root", 10 * V.GIB, "qcow2", backing=image))
    assert root.find("backingStore/path").text == "/pool/img" and root.find("backingStore/format").get("type") == "raw"
    assert image.size_gib == 3 and V.parse(V.build("d.disk", V.GIB, "qcow2")).size_gib == 1


def _dir_entries(image: bytes) -> dict[str, bytes]:
    """Read the root directory the way a reader does: PVD → root record → entries → extents."""
    pvd = image[16 * SECTOR:17 * SECTOR]
    assert pvd[1:6] == b"CD001"
    root_extent, root_size = struct.unpack("<I", pvd[158:162])[0], struct.unpack("<I", pvd[166:170])[0]
    directory = image[root_extent * SECTOR:root_extent * SECTOR + root_size]
    files, at = {}, 0
    while at < len(directory) and directory[at]:
        length = directory[at]
        extent, size = struct.unpack("<I", directory[at + 2:at + 6])[0], struct.unpack("<I", directory[at + 10:at + 14])[0]
        ident = directory[at + 33:at + 33 + directory[at + 32]]
        if ident not in (b"\x00", b"\x01"):
            files[ident.decode()] = image[extent * SECTOR:extent * SECTOR + size]
        at += length
    return files


def test_iso_holds_files_under_iso9660_names_and_the_label() -> None:
    image = make_iso("cidata", {"meta-data": b"instance-id: i-1\n", "user-data": b"#cloud-config\n" * 300})
    assert len(image) % SECTOR == 0
    assert image[16 * SECTOR + 40:16 * SECTOR + 72].rstrip() == b"cidata"
    assert struct.unpack("<I", image[16 * SECTOR + 80:16 * SECTOR + 84])[0] * SECTOR == len(image)
    files = _dir_entries(image)
    assert files == {"META-DATA;1": b"instance-id: i-1\n", "USER-DATA;1": b"#cloud-config\n" * 300}
    with pytest.raises(ValueError):
        make_iso("x", {"a/b": b""})


def test_seed_puts_the_key_in_meta_data_and_user_data_untouched() -> None:
    files = _dir_entries(seed_iso("vm-1", "vm-1", "ssh-ed25519 AAAAkey", "#!/bin/sh\necho hi\n"))
    meta = files["META-DATA;1"].decode()
    assert "instance-id: vm-1" in meta and "- ssh-ed25519 AAAAkey" in meta and "local-hostname: vm-1" in meta
    assert files["USER-DATA;1"] == b"#!/bin/sh\necho hi\n"
    assert "public-keys" not in _dir_entries(seed_iso("v", "v", "", ""))["META-DATA;1"].decode()
