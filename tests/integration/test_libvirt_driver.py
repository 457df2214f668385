"""The libvirt driver in-process against libvirt's test driver (`test:///default`).

The full scenario (VPC, security group, key pair, two VMs, suspend, resume, reboot,
a disk, terminate, delete all) runs through the driver with spider's real gate, and
libvirt-python, not the driver, then checks that nothing is left. Security groups
live in a private libvirtd's nwfilter driver (the test driver has none).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from spider.calllog import CallLog
from spider.calls import CallSite, Gate, Limits
from spider.drivers import base
from spider.drivers.libvirt import nwfilters as F
from tests.integration.conformance import target_libvirt as T

pytestmark = pytest.mark.skipif(bool(T.libvirtd_missing()), reason=T.libvirtd_missing() or "ready")

URI = "test:///default"


@pytest.fixture(scope="module")
def libvirt_mod() -> Iterator[object]:
    import libvirt

    import spider.drivers.libvirt.connect  # noqa: F401  (imported here, so the timings below leave imports out)

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


async def _vpc(cloud: base.CloudConnection, cidr: str = "10.30.0.0/16") -> pb.Vpc:
    assert cloud.vpc is not None
    return await cloud.vpc.create_vpc(pb.Vpc(iid=_iid("v"), ipv4_cidr=cidr, subnets=[
        pb.Subnet(iid=_iid("a"), ipv4_cidr=cidr.replace(".0.0/16", ".1.0/24"))]), f"tok-{time.monotonic_ns()}")


async def test_vm_create_is_idempotent_by_token_and_refuses_a_name_taken(libvirt_mod: object, tmp_path: Path) -> None:
    cloud = await _connect(_info(tmp_path, None), CallLog())
    assert cloud.vm is not None and cloud.security_group is None  # no nwfilters on test:///default
    vm = pb.Vm(iid=_iid("idem"))
    refs = base.VmRefs(image=T.IMAGE, spec=T.SPEC)
    first = await cloud.vm.start_vm(vm, refs, "token-1")
    again = await cloud.vm.start_vm(vm, refs, "token-1")
    assert again.iid.csp_id == first.iid.csp_id and first.status == common.RUNNING
    assert [v.iid.csp_id for v in await cloud.vm.list_vms()].count(first.iid.csp_id) == 1
    with pytest.raises(errors.AlreadyExists):
        await cloud.vm.start_vm(vm, refs, "token-2")
    await cloud.vm.terminate_vm(first.iid.csp_id)
    with pytest.raises(errors.NotFound):
        await cloud.vm.get_vm(first.iid.csp_id)


async def test_refused_create_leaves_nothing_and_errors_keep_libvirt_words(libvirt_mod: object, tmp_path: Path) -> None:
    log = CallLog()
    cloud = await _connect(_info(tmp_path, None), log)
    assert cloud.vm is not None and cloud.vpc is not None
    vpc = await _vpc(cloud)
    before = _snapshot_plain(libvirt_mod)
    bad = base.VmRefs(image="img-does-not-exist", spec=T.SPEC, vpc=vpc.iid.csp_id, subnet=vpc.subnets[0].iid.csp_id)
    with pytest.raises(errors.NotFound) as err:
        await cloud.vm.start_vm(pb.Vm(iid=_iid("bad")), bad, "t")
    assert "img-does-not-exist" in err.value.message and err.value.upstream_code == "VIR_ERR_NO_STORAGE_VOL"
    with pytest.raises(errors.NotFound):
        await cloud.vm.start_vm(pb.Vm(iid=_iid("bad")), base.VmRefs(image=T.IMAGE, spec="huge"), "t")
    assert _snapshot_plain(libvirt_mod) == before  # no root volume, no address, no domain
    for missing in ("not-a-uuid", "6695eb01-0000-0000-0000-000000000000"):
        with pytest.raises(errors.NotFound):
            await cloud.vm.get_vm_status(missing)
        with pytest.raises(errors.NotFound):
            await cloud.vpc.get_vpc(missing)
    assert any(e.error.startswith("VIR_ERR_NO_STORAGE_VOL: ") for e in log.entries())
    await cloud.vpc.delete_vpc(vpc.iid.csp_id)


async def test_vpc_subnets_and_dependencies(libvirt_mod: object, tmp_path: Path) -> None:
    cloud = await _connect(_info(tmp_path, None), CallLog())
    assert cloud.vpc is not None and cloud.vm is not None
    vpc = await _vpc(cloud, "10.40.0.0/16")
    seen = await cloud.vpc.get_vpc(vpc.iid.csp_id)
    assert seen.ipv4_cidr == "10.40.0.0/16" and [(s.iid.csp_name, s.iid.csp_id) for s in seen.subnets] == [
        (vpc.subnets[0].iid.csp_name, "10.40.1.0/24")]
    added = await cloud.vpc.add_subnet(vpc.iid.csp_id, pb.Subnet(iid=_iid("b"), ipv4_cidr="10.40.2.0/24"), "t")
    assert added.iid.csp_id == "10.40.2.0/24"
    with pytest.raises(errors.InvalidArgument):
        await cloud.vpc.add_subnet(vpc.iid.csp_id, pb.Subnet(iid=_iid("c"), ipv4_cidr="10.40.2.128/25"), "t")
    vm = await cloud.vm.start_vm(pb.Vm(iid=_iid("dep")), base.VmRefs(
        image=T.IMAGE, spec=T.SPEC, vpc=vpc.iid.csp_id, subnet="10.40.2.0/24"), "t")
    assert vm.private_ip == "10.40.2.1"  # the gateway 10.40.0.1 is outside this subnet
    with pytest.raises(errors.FailedPrecondition, match="in use"):
        await cloud.vpc.delete_vpc(vpc.iid.csp_id)
    with pytest.raises(errors.FailedPrecondition, match="holds addresses"):
        await cloud.vpc.remove_subnet(vpc.iid.csp_id, "10.40.2.0/24")
    await cloud.vm.terminate_vm(vm.iid.csp_id)
    await cloud.vpc.remove_subnet(vpc.iid.csp_id, "10.40.2.0/24")
    assert [s.iid.csp_id for s in (await cloud.vpc.get_vpc(vpc.iid.csp_id)).subnets] == ["10.40.1.0/24"]
    assert vpc.iid.csp_id in {v.iid.csp_id for v in await cloud.vpc.list_vpcs()}
    await cloud.vpc.delete_vpc(vpc.iid.csp_id)


async def test_key_pairs_import_list_and_delete(libvirt_mod: object, tmp_path: Path) -> None:
    cloud = await _connect(_info(tmp_path, None), CallLog())
    assert cloud.key_pair is not None
    made = await cloud.key_pair.create_key_pair(pb.KeyPair(iid=_iid("gen")), "t1")
    imported = await cloud.key_pair.create_key_pair(pb.KeyPair(iid=_iid("imp"), public_key=made.public_key + " me@x"),
                                                    "t2")
    assert imported.private_key == "" and imported.public_key == made.public_key
    assert imported.fingerprint == made.fingerprint
    again = await cloud.key_pair.create_key_pair(pb.KeyPair(iid=imported.iid), "t2")
    assert again.public_key == imported.public_key  # the same request: the stored key, not a new one
    with pytest.raises(errors.AlreadyExists):
        await cloud.key_pair.create_key_pair(pb.KeyPair(iid=imported.iid), "t3")
    listed = {k.iid.csp_id for k in await cloud.key_pair.list_key_pairs()}
    assert {made.iid.csp_id, imported.iid.csp_id} <= listed
    assert (await cloud.key_pair.get_key_pair(made.iid.csp_id)).private_key == ""
    for kp in (made, imported):
        await cloud.key_pair.delete_key_pair(kp.iid.csp_id)
    with pytest.raises(errors.NotFound):
        await cloud.key_pair.delete_key_pair(made.iid.csp_id)


async def test_groups_join_into_a_vm_filter_and_guard_their_use(libvirt_mod: object, daemon: T.Libvirtd,
                                                                tmp_path: Path) -> None:
    cloud = await _connect(_info(tmp_path, daemon), CallLog())
    assert cloud.security_group is not None and cloud.vm is not None and cloud.vpc is not None
    vpc = await _vpc(cloud, "10.50.0.0/16")
    web = pb.SecurityRule(direction="inbound", protocol="tcp", from_port=80, to_port=80, cidr="0.0.0.0/0")
    groups = [await cloud.security_group.create_security_group(pb.SecurityGroup(iid=_iid(f"g{i}")),
                                                               vpc.iid.csp_id, f"t{i}") for i in range(2)]
    grown = await cloud.security_group.add_rules(groups[0].iid.csp_id, [web])
    assert [F.normal(r) for r in grown.rules] == [F.normal(web)]
    vm = await cloud.vm.start_vm(pb.Vm(iid=_iid("two")), base.VmRefs(
        image=T.IMAGE, spec=T.SPEC, vpc=vpc.iid.csp_id, security_groups=tuple(g.iid.csp_id for g in groups)), "t")
    union = f"{vm.iid.csp_name}-groups"
    assert union in _snapshot(libvirt_mod, daemon.nwfilter_uri)["filters"]
    with pytest.raises(errors.FailedPrecondition, match="in use"):
        await cloud.security_group.delete_security_group(groups[1].iid.csp_id)
    await cloud.vm.terminate_vm(vm.iid.csp_id)
    assert union not in _snapshot(libvirt_mod, daemon.nwfilter_uri)["filters"]
    shrunk = await cloud.security_group.remove_rules(groups[0].iid.csp_id, [web])
    assert list(shrunk.rules) == []
    for group in groups:
        await cloud.security_group.delete_security_group(group.iid.csp_id)
    await cloud.vpc.delete_vpc(vpc.iid.csp_id)


async def test_remote_host_without_uploads_refuses_the_seed_clearly(libvirt_mod: object, daemon: T.Libvirtd,
                                                                    tmp_path: Path) -> None:
    # Over TCP the host is remote: the seed must be uploaded, which the test driver cannot take.
    T.ensure_images(daemon.test_uri)
    cloud = await _connect(_info(tmp_path, None, uri=daemon.tcp_uri), CallLog())
    assert cloud.vm is not None
    with pytest.raises(errors.FailedPrecondition) as err:
        await cloud.vm.start_vm(pb.Vm(iid=_iid("far")), base.VmRefs(image=T.IMAGE, spec=T.SPEC), "t")
    assert err.value.upstream_code == "VIR_ERR_NO_SUPPORT" and "virStorageVolUpload" in err.value.message
    assert not any(v.endswith(".root") for v in _snapshot_plain(libvirt_mod, daemon.test_uri)["volumes"])


async def test_connection_errors_name_the_setting(libvirt_mod: object, tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgument) as err:
        await _connect(_info(tmp_path, None, pool="no-such-pool"), CallLog())
    assert "region.settings.pool" in str(err.value.details())
    with pytest.raises(errors.InvalidArgument):
        await _connect(_info(tmp_path, None, uri="not-a-uri"), CallLog())


async def test_calls_run_in_the_connection_pool_not_on_the_loop(libvirt_mod: object) -> None:
    from spider.drivers.libvirt.client import LibvirtClient

    client = LibvirtClient(URI, _gate(CallLog()), threads=2)
    names = await asyncio.gather(*(client.call("virConnectGetHostname", lambda c: (
        threading.current_thread().name, c.getHostname())) for _ in range(6)))
    assert {n for n, _ in names} <= {"libvirt_0", "libvirt_1"} and threading.current_thread().name == "MainThread"
    await client.close()


def _snapshot_plain(libvirt: object, uri: str = URI) -> dict[str, set[str]]:
    conn = libvirt.open(uri)  # type: ignore[attr-defined]
    try:
        return {"domains": {d.name() for d in conn.listAllDomains(0)},
                "volumes": {v.name() for v in conn.storagePoolLookupByName(T.POOL).listAllVolumes(0)},
                "hosts": {h for n in conn.listAllNetworks(0) for h in n.XMLDesc(0).splitlines() if "<host " in h}}
    finally:
        conn.close()
