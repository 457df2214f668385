"""The libvirt target: libvirt's test driver inside a libvirtd that the suite starts.

Spider runs as its own process, and libvirt's test driver keeps its state per
process (`test:///default` is one fake host per process). So the fake host lives in
a libvirtd daemon: spider and the test both reach `test+unix:///default?socket=…`,
the same in-process test driver state seen through libvirt's own remote protocol,
exactly as spider would reach a remote KVM host. The daemon loads only its nwfilter
driver (LIBVIRT_DRIVER_DIR), so no QEMU, dnsmasq or firewall is needed; that real
nwfilter driver (`nwfilter+unix:///system?socket=…`) holds the security groups, which
the test driver has no support for. nwfilter needs a privileged daemon, which locks
/run/libvirt/nwfilter and keeps filters in /etc/libvirt/nwfilter, so the daemon runs
in a mount namespace of its own with both bound to its run directory: daemons of
parallel test sessions neither block nor see each other, and nothing is left on the
machine.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cbapi.spider.v1 import spider_pb2 as pb
from cbapi.spider.v1 import spider_pb2_grpc
from services import processes as procs
from tests.integration.conformance.targets import Target

POOL = "default-pool"  # the test driver's own storage pool
IMAGES = {"ubuntu-22.04-x86_64.qcow2": "qcow2", "debian-12-x86_64.qcow2": "qcow2", "cirros-0.6.2-x86_64.img": "raw"}
IMAGE = "ubuntu-22.04-x86_64.qcow2"
SPEC = "tiny"
SPIDER_NS = "urn:x-cb-suite:spider:libvirt:1"  # the driver's metadata namespace
_MODULES = Path("/usr/lib/x86_64-linux-gnu/libvirt/connection-driver")


def libvirtd_missing() -> str:
    """Why a libvirtd cannot be started here ("" when it can)."""
    try:
        import libvirt  # noqa: F401
    except ImportError:
        return "libvirt-python is not installed (make setup builds it against libvirt-dev)"
    if not shutil.which("libvirtd", path="/usr/sbin:/usr/bin"):
        return "libvirtd is not installed (apt-get install libvirt-daemon)"
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return "the libvirtd for tests runs as root in its own mount namespace (unshare)"
    return ""


@dataclass
class Libvirtd:
    """A private libvirtd: its socket, its log, stopped by its own PID."""

    proc: procs.Proc
    socket: Path
    port: int
    # test:///default lives while one connection to it is open: this one, for the daemon's life.
    keeper: Any = None

    @property
    def test_uri(self) -> str:
        return f"test+unix:///default?socket={self.socket}"

    @property
    def tcp_uri(self) -> str:
        """The same fake host reached over TCP, as a remote host is (no auth, loopback only)."""
        return f"test+tcp://127.0.0.1:{self.port}/default"

    @property
    def nwfilter_uri(self) -> str:
        return f"nwfilter+unix:///system?socket={self.socket}"

    def stop(self) -> None:
        if self.keeper is not None:
            self.keeper.close()
            self.keeper = None
        self.proc.stop()


def _config(run_dir: Path, port: int) -> Path:
    conf = run_dir / "libvirtd.conf"
    conf.write_text("\n".join([
        f'unix_sock_dir = "{run_dir}"', 'unix_sock_rw_perms = "0700"', 'auth_unix_rw = "none"',
        'auth_unix_ro = "none"', "listen_tls = 0", "listen_tcp = 1", 'listen_addr = "127.0.0.1"',
        f'tcp_port = "{port}"', 'auth_tcp = "none"', "",
    ]))
    return conf


def _modules(run_dir: Path) -> Path:
    """A driver directory with only nwfilter: the test driver is built into libvirt itself."""
    mods = run_dir / "drivers"
    mods.mkdir(exist_ok=True)
    link, real = mods / "libvirt_driver_nwfilter.so", _MODULES / "libvirt_driver_nwfilter.so"
    if real.exists() and not link.exists():
        link.symlink_to(real)
    return mods


def _argv(run_dir: Path, port: int) -> list[str]:
    """libvirtd in its own mount namespace, with private /run/libvirt and /etc/libvirt."""
    binary = shutil.which("libvirtd", path="/usr/sbin:/usr/bin") or "libvirtd"
    state, conf = run_dir / "run", run_dir / "etc"
    state.mkdir(exist_ok=True)
    conf.mkdir(exist_ok=True)
    daemon = [binary, "--listen", "--config", str(_config(run_dir, port)), "--pid-file", str(run_dir / "libvirtd.pid")]
    script = (f"mkdir -p /run/libvirt /etc/libvirt && mount --bind {shlex.quote(str(state))} /run/libvirt && "
              f"mount --bind {shlex.quote(str(conf))} /etc/libvirt && exec {shlex.join(daemon)}")
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]


def _reachable(uri: str) -> bool:
    import libvirt

    try:
        libvirt.open(uri).close()
    except libvirt.libvirtError:
        return False
    return True


async def start_libvirtd(run_dir: Path) -> Libvirtd:
    run_dir.mkdir(parents=True, exist_ok=True)
    port = procs.free_port()
    proc = procs.Proc("libvirtd", _argv(run_dir, port), run_dir / "libvirtd.log",
                      env={"LIBVIRT_DRIVER_DIR": str(_modules(run_dir))})
    daemon = Libvirtd(proc, run_dir / "libvirt-sock", port)
    proc.start()

    async def up() -> bool:
        return daemon.socket.exists() and await asyncio.to_thread(_reachable, daemon.test_uri)

    await procs.wait_until(up, "libvirtd", proc, timeout=30)
    import libvirt

    daemon.keeper = await asyncio.to_thread(libvirt.open, daemon.test_uri)
    return daemon


def ensure_images(uri: str, pool: str = POOL) -> None:
    """Put the images an operator would upload into the pool (the test driver keeps only their size)."""
    import libvirt

    conn = libvirt.open(uri)
    try:
        store = conn.storagePoolLookupByName(pool)
        have = {v.name() for v in store.listAllVolumes(0)}
        for name, fmt in IMAGES.items():
            if name not in have:
                store.createXML(f"<volume><name>{name}</name><capacity unit='G'>2</capacity>"
                                f"<target><format type='{fmt}'/></target></volume>", 0)
    finally:
        conn.close()


def is_keyring(domain_xml: str) -> bool:
    return ET.fromstring(domain_xml).find(f"metadata/{{{SPIDER_NS}}}keyring") is not None


def live_vm_ids(uri: str) -> set[str]:
    """UUIDs of the domains that are VMs (spider's keyring is not one)."""
    import libvirt

    conn = libvirt.open(uri)
    try:
        return {d.UUIDString() for d in conn.listAllDomains(0) if not is_keyring(d.XMLDesc(0))}
    finally:
        conn.close()


def inventory(uri: str, nwfilter_uri: str, pool: str = POOL) -> set[str]:
    """Every resource spider could have made on the host: VMs, networks and subnets, volumes, filters, keys."""
    import libvirt

    conn, filters = libvirt.open(uri), libvirt.open(nwfilter_uri)
    try:
        ids: set[str] = set()
        for dom in conn.listAllDomains(0):
            root = ET.fromstring(dom.XMLDesc(0))
            if root.find(f"metadata/{{{SPIDER_NS}}}keyring") is None:
                ids.add(f"domain/{dom.UUIDString()}")
            else:
                ids |= {f"keypair/{e.get('name')}" for e in root.iterfind("metadata/*") if e.tag.endswith("keypair")}
        for net in conn.listAllNetworks(0):
            ids.add(f"network/{net.UUIDString()}")
            ids |= {f"range/{net.name()}/{r.get('start')}" for r in ET.fromstring(net.XMLDesc(0)).iterfind("ip/dhcp/range")}
            ids |= {f"host/{net.name()}/{h.get('ip')}" for h in ET.fromstring(net.XMLDesc(0)).iterfind("ip/dhcp/host")}
        ids |= {f"volume/{v.name()}" for v in conn.storagePoolLookupByName(pool).listAllVolumes(0)}
        ids |= {f"nwfilter/{f.UUIDString()}" for f in filters.listAllNWFilters(0)}
        return ids
    finally:
        conn.close()
        filters.close()


def make_network(uri: str, name: str) -> str:
    import libvirt

    conn = libvirt.open(uri)
    try:
        net = conn.networkDefineXML(f"<network><name>{name}</name><ip address='10.9.0.1' prefix='16'/></network>")
        net.create()
        return str(net.UUIDString())
    finally:
        conn.close()


@dataclass
class LibvirtTarget(Target):
    uri: str = ""
    daemon: Libvirtd | None = field(default=None, repr=False)

    async def cloud_vm_ids(self) -> set[str]:
        return await asyncio.to_thread(live_vm_ids, self.uri)

    async def cloud_make_vpc(self, name: str) -> str:
        return await asyncio.to_thread(make_network, self.uri, name)

    async def cloud_inventory(self) -> set[str]:
        assert self.daemon is not None
        return await asyncio.to_thread(inventory, self.uri, self.daemon.nwfilter_uri)


async def libvirt_target(stub: spider_pb2_grpc.SpiderStub, daemon: Libvirtd, tmp_path: Path) -> LibvirtTarget:
    """A fresh credential, region and connection over the daemon's test driver."""
    await asyncio.to_thread(ensure_images, daemon.test_uri)
    tag = uuid.uuid4().hex[:8]
    await stub.CreateCredential(pb.CreateCredentialRequest(credential=pb.Credential(
        name=f"cred-{tag}", driver="libvirt", values={})))
    settings = {"uri": daemon.test_uri, "pool": POOL, "nwfilter_uri": daemon.nwfilter_uri,
                "seed_dir": str(tmp_path / "seeds")}
    await stub.CreateRegion(pb.CreateRegionRequest(region=pb.Region(
        name=f"reg-{tag}", driver="libvirt", region="test-host", settings=settings)))
    conn = await stub.CreateConnection(pb.CreateConnectionRequest(connection=pb.Connection(
        name=f"c-{tag}", driver="libvirt", credential=f"cred-{tag}", region=f"reg-{tag}")))
    drivers = await stub.ListDrivers(pb.ListDriversRequest())
    caps = next(d.capabilities for d in drivers.drivers if d.name == "libvirt")
    return LibvirtTarget("libvirt", conn.name, IMAGE, SPEC, caps, daemon.test_uri, daemon)

