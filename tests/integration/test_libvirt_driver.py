"""The libvirt driver in-process against libvirt's test driver (`test:///default`).

The full scenario (VPC, security group, key pair, two VMs, suspend, resume, reboot,
a disk, terminate, delete all) runs through the driver with spider's real gate, and
libvirt-python, not the driver, then checks that nothing is left. Security groups
live in a private libvirtd's nwfilter driver (the test driver has none).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from spider.calllog import CallLog
from spider.calls import CallSite, Gate, Limits
from spider.drivers import base
from tests.integration.conformance import target_libvirt as T

pytestmark = pytest.mark.skipif(bool(T.libvirtd_missing()), reason=T.libvirtd_missing() or "ready")

URI = "test:///default"


@pytest.fixture(scope="module")
def libvirt_mod() -> Iterator[object]:
    import libvirt

    # test:///default lives as long as one connection to it is open: hold one for the module.
    conn = libvirt.open(URI)
    T.ensure_images(URI)
    yield libvirt
    conn.close()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def daemon(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[T.Libvirtd]:
    d = await T.start_libvirtd(tmp_path_factory.mktemp("libvirtd"))
    yield d
    d.stop()


def _gate(log: CallLog, conn: str = "lv") -> Gate:
    return Gate(CallSite(conn, "libvirt", "libvirt", "test-host"), Limits(1000, 1000, 64, 3, 0.01, 0.05), log)


def _info(seed_dir: Path, daemon: T.Libvirtd | None, **extra: str) -> base.ConnectionInfo:
    settings = {"uri": URI, "pool": T.POOL, "seed_dir": str(seed_dir), **extra}
    if daemon is not None:
        settings["nwfilter_uri"] = daemon.nwfilter_uri
    return base.ConnectionInfo(connection="lv", driver="libvirt", region="test-host", zone="", settings=settings)


async def _connect(info: base.ConnectionInfo, log: CallLog) -> base.CloudConnection:
    from spider.drivers.libvirt import LibvirtDriver

    return await LibvirtDriver().connect(info, _gate(log))


def _iid(name: str) -> common.IID:
    return common.IID(name=name, csp_name=f"{name}-t{time.monotonic_ns() % 10**6:06d}")


def _persistent_xml(libvirt: object, domain: str) -> str:
    conn = libvirt.open(URI)  # type: ignore[attr-defined]
    try:
        return str(conn.lookupByName(domain).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))  # type: ignore[attr-defined]
    finally:
        conn.close()


def _snapshot(libvirt: object, nwfilter_uri: str) -> dict[str, set[str]]:
    """What the host holds, read with libvirt-python directly."""
    conn = libvirt.open(URI)  # type: ignore[attr-defined]
    filters = libvirt.open(nwfilter_uri)  # type: ignore[attr-defined]
    try:
        keyring_keys = set()
        vms = set()
        for dom in conn.listAllDomains(0):
            xml = dom.XMLDesc(0)
            if T.is_keyring(xml):
                keyring_keys |= {line for line in xml.splitlines() if "<kp:keypair" in line}
            else:
                vms.add(dom.name())
        return {
            "domains": vms, "keys": keyring_keys, "networks": {n.name() for n in conn.listAllNetworks(0)},
            "volumes": {v.name() for v in conn.storagePoolLookupByName(T.POOL).listAllVolumes(0)},
            "filters": {f.name() for f in filters.listAllNWFilters(0)},
        }
    finally:
        conn.close()
        filters.close()


async def test_full_scenario_leaves_nothing_behind(libvirt_mod: object, daemon: T.Libvirtd, tmp_path: Path) -> None:
    log = CallLog()
    before = _snapshot(libvirt_mod, daemon.nwfilter_uri)
    started = time.perf_counter()
    cloud = await _connect(_info(tmp_path / "seeds", daemon), log)
    assert cloud.vpc and cloud.security_group and cloud.key_pair and cloud.vm and cloud.disk

    vpc = await cloud.vpc.create_vpc(pb.Vpc(iid=_iid("net"), ipv4_cidr="10.20.0.0/16", subnets=[
        pb.Subnet(iid=_iid("front"), ipv4_cidr="10.20.1.0/24"),
        pb.Subnet(iid=_iid("back"), ipv4_cidr="10.20.2.0/24")]), "tok-vpc")
    front, back = (s.iid.csp_id for s in vpc.subnets)
    ssh = pb.SecurityRule(direction="inbound", protocol="tcp", from_port=22, to_port=22, cidr="0.0.0.0/0")
    sg = await cloud.security_group.create_security_group(pb.SecurityGroup(iid=_iid("sg"), rules=[ssh]),
                                                           vpc.iid.csp_id, "tok-sg")
    kp = await cloud.key_pair.create_key_pair(pb.KeyPair(iid=_iid("kp")), "tok-kp")
    assert "PRIVATE KEY" in kp.private_key and kp.public_key.startswith("ssh-ed25519 ")

    vms = []
    for i, subnet in enumerate((front, back)):
        refs = base.VmRefs(image=T.IMAGE, spec=T.SPEC, subnet=subnet, security_groups=(sg.iid.csp_id,),
                           key_pair=kp.iid.csp_id, vpc=vpc.iid.csp_id)
        vm = pb.Vm(iid=_iid(f"vm{i}"), user_data=f"#cloud-config\nhostname: vm{i}\n")
        vms.append(await cloud.vm.start_vm(vm, refs, f"tok-vm{i}"))
    assert [v.status for v in vms] == [common.RUNNING, common.RUNNING]
    assert vms[0].private_ip.startswith("10.20.1.") and vms[1].private_ip.startswith("10.20.2.")
    seed = (tmp_path / "seeds" / f"{vms[0].iid.csp_name}.seed.iso").read_bytes()
    assert kp.public_key.encode() in seed and b"hostname: vm0" in seed

    a, b = vms[0].iid.csp_id, vms[1].iid.csp_id
    await cloud.vm.suspend_vm(a)
    assert await cloud.vm.get_vm_status(a) == common.SUSPENDED
    await cloud.vm.resume_vm(a)
    assert await cloud.vm.get_vm_status(a) == common.RUNNING
    await cloud.vm.reboot_vm(b)
    assert await cloud.vm.get_vm_status(b) == common.RUNNING

    disk = await cloud.disk.create_disk(pb.Disk(iid=_iid("data"), size_gib=5), "tok-disk")
    assert disk.status == "available" and disk.size_gib == 5
    attached = await cloud.disk.attach_disk(disk.iid.csp_id, a)
    assert attached.status == "attached"
    # No hot-plug in the test driver: the disk is in the persistent definition, read directly.
    assert disk.iid.csp_id in _persistent_xml(libvirt_mod, vms[0].iid.csp_name)
    detached = await cloud.disk.detach_disk(disk.iid.csp_id, a)
    assert detached.status == "available" and disk.iid.csp_id not in _persistent_xml(libvirt_mod, vms[0].iid.csp_name)

    for vm in vms:
        await cloud.vm.terminate_vm(vm.iid.csp_id)
    await cloud.disk.delete_disk(disk.iid.csp_id)
    await cloud.key_pair.delete_key_pair(kp.iid.csp_id)
    await cloud.security_group.delete_security_group(sg.iid.csp_id)
    await cloud.vpc.delete_vpc(vpc.iid.csp_id)
    assert cloud.close is not None
    await cloud.close()
    elapsed = time.perf_counter() - started

    assert _snapshot(libvirt_mod, daemon.nwfilter_uri) == before
    assert not list((tmp_path / "seeds").iterdir())
    in_libvirt = sum(e.elapsed_seconds for e in log.entries())
    apis = {e.cloud_api for e in log.entries()}
    assert {"virNetworkDefineXML", "virNWFilterDefineXML", "virDomainDefineXML", "virDomainCreate",
            "virDomainSuspend", "virDomainResume", "virDomainReboot", "virDomainDestroy",
            "virStorageVolCreateXML", "virDomainUndefineFlags"} <= apis
    own = elapsed - in_libvirt
    print(f"\nlibvirt scenario: {elapsed * 1000:.1f} ms, {len(log.entries())} libvirt calls taking "
          f"{in_libvirt * 1000:.1f} ms ({in_libvirt / elapsed:.0%}); driver and gate: {own * 1000:.1f} ms")
