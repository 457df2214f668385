"""VMs as libvirt domains: define from XML, start, pause/resume, reboot, destroy + undefine.

A new VM gets a copy-on-write root volume over its image, a cloud-init seed (its
key pair and user data), and one NIC: on its VPC's network pinned to an address of
its subnet by a DHCP host entry, or on the region's `network` when it names no VPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import defaultdict

import libvirt

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from spider.drivers import base
from spider.drivers.libvirt import domains as D
from spider.drivers.libvirt import lookups as L
from spider.drivers.libvirt import networks as N
from spider.drivers.libvirt import nocloud as S
from spider.drivers.libvirt import nwfilters as F
from spider.drivers.libvirt import volumes as V
from spider.drivers.libvirt.catalog import LibvirtSpecs, describe_image
from spider.drivers.libvirt.client import LibvirtClient
from spider.drivers.libvirt.host import HostFacts
from spider.drivers.libvirt.keypairs import LibvirtKeyPairs
from spider.drivers.libvirt.seeds import Seeds
from spider.drivers.libvirt.settings import LibvirtSettings
from spider.drivers.libvirt.status import vm_status

_HOST = libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST
_ADD, _DELETE = libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE
_UNDEFINE = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
_ADDRESS_TRIES = 8


def _mac() -> str:
    return "52:54:00:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))


def _ambiguous(err: errors.DomainError) -> bool:
    """No answer came back (spider's rule): the cloud may hold what we asked for, so keep it."""
    return isinstance(err, errors.Unavailable | errors.DeadlineExceeded) and not err.upstream_code


def vm_message(view: D.DomainView, state: int, reason: int) -> pb.Vm:
    m = view.meta
    return pb.Vm(iid=common.IID(csp_name=view.name, csp_id=view.uuid), spec=m.spec, image=m.image, zone=m.zone,
                 root_disk_gib=int(m.root_gib or 0), status=vm_status(state, reason), private_ip=m.ip,
                 ssh_access_point=base.ssh_access_point(m.ip),
                 disks=[d.volume for d in view.disks if d.volume.endswith(V.DISK)])


class LibvirtVms(base.VmHandler):
    def __init__(self, client: LibvirtClient, filters: LibvirtClient | None, settings: LibvirtSettings,
                 host: HostFacts, specs: LibvirtSpecs, keys: LibvirtKeyPairs) -> None:
        self.client, self.filters, self.settings, self.host = client, filters, settings, host
        self.specs, self.keys = specs, keys
        self.seeds = Seeds(client, settings)
        # Address picks in one network are serialised here; libvirt refuses duplicates across replicas.
        self._network_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    # ------------------------------------------------------------ create

    async def start_vm(self, vm: pb.Vm, refs: base.VmRefs, token: str) -> pb.Vm:
        name = vm.iid.csp_name
        flavor = await self.specs.get_spec(refs.spec)
        existing = await self.client.call("virDomainLookupByName", lambda c: self._existing(c, name, token), "vm",
                                          vm.iid.name)
        meta = D.VmMeta(token=token, spec=refs.spec, image=refs.image, zone=vm.zone or self.settings.zones[0],
                        keypair=refs.key_pair)
        if existing is None:  # else the same request again: the domain name is the token
            await self._define(vm, refs, meta, flavor)
        try:
            dom_id = await self.client.call("virDomainCreate", lambda c: self._start(c, name), "vm", vm.iid.name)
        except errors.DomainError as err:
            if existing is None and not _ambiguous(err):
                await self._undo(name, meta, undefine=True)
            raise
        return await self.get_vm(dom_id)

    async def _define(self, vm: pb.Vm, refs: base.VmRefs, meta: D.VmMeta, flavor: pb.Spec) -> None:
        image = await self.client.call(
            "virStorageVolGetXMLDesc",
            lambda c: V.parse(L.volume(c, self.settings.image_pool, refs.image).XMLDesc(0)), "image", refs.image)
        meta.root_gib = str(max(vm.root_disk_gib, image.size_gib))
        try:
            spec = await self._assemble(vm, refs, meta, flavor, image)
            await self.client.call("virDomainDefineXML", lambda c: c.defineXML(D.build(spec)), "vm", vm.iid.name)
        except errors.DomainError as err:
            # Without an answer the domain may exist: spider looks for it and adopts it with all it holds.
            if not _ambiguous(err):
                await self._undo(vm.iid.csp_name, meta)
            raise

    @staticmethod
    def _existing(conn: libvirt.virConnect, name: str, token: str) -> str | None:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise
        if D.parse(dom.XMLDesc(0)).meta.token != token:
            raise base.CloudError(errors.AlreadyExists, f"domain {name!r} already exists", "VIR_ERR_DOM_EXIST")
        return str(dom.UUIDString())

    @staticmethod
    def _start(conn: libvirt.virConnect, name: str) -> str:
        dom = conn.lookupByName(name)
        if not dom.isActive():
            dom.create()
        return str(dom.UUIDString())

    async def _assemble(self, vm: pb.Vm, refs: base.VmRefs, meta: D.VmMeta, flavor: pb.Spec,
                        image: V.VolumeView) -> D.DomainSpec:
        """Everything the domain needs, made in order and recorded in `meta` as it is made."""
        name = vm.iid.csp_name
        nic = await self._nic(name, refs, meta)
        if refs.security_groups:
            nic.filter = await self._filter(name, refs.security_groups, meta)
        root = await self._root_volume(name, image, int(meta.root_gib))
        public_key = await self.keys.public_key(refs.key_pair) if refs.key_pair else ""
        seed = await self.seeds.put(name, S.seed_iso(name, name, public_key, vm.user_data))
        meta.seed = seed.file or seed.volume
        arch = self.host.guest_arch(image_arch(refs.image, self.host))
        return D.DomainSpec(name=name, type=self.host.domain_type(arch), arch=arch, vcpu=flavor.vcpu,
                            memory_mib=int(flavor.memory_gib * 1024), meta=meta, disks=[root, seed], nics=[nic])

    async def _nic(self, name: str, refs: base.VmRefs, meta: D.VmMeta) -> D.Nic:
        if not refs.vpc:
            text = await self.client.call("virNetworkGetXMLDesc",
                                          lambda c: c.networkLookupByName(self.settings.network).XMLDesc(0),
                                          "network", self.settings.network)
            meta.network = N.parse(text).name
            return D.Nic(network=meta.network, mac=_mac())
        view = N.parse(await self.client.call("virNetworkGetXMLDesc", lambda c: L.network(c, refs.vpc).XMLDesc(0),
                                              "vpc", refs.vpc))
        meta.network, meta.vpc = view.name, view.uuid
        if not refs.subnet:
            return D.Nic(network=view.name, mac=_mac())
        meta.subnet = refs.subnet
        async with self._network_locks[view.uuid]:
            host = await self._reserve(name, refs.vpc, refs.subnet)
        meta.ip = host.ip
        return D.Nic(network=view.name, mac=host.mac)

    async def _reserve(self, name: str, vpc: str, subnet: str) -> N.Host:
        """A DHCP host entry for the VM in its subnet: the one it has, or a new one on a free address."""
        tried: set[str] = set()
        for _ in range(_ADDRESS_TRIES):
            def add(conn: libvirt.virConnect) -> N.Host | None:
                net = L.network(conn, vpc)
                view = N.parse(net.XMLDesc(0))
                mine = next((h for h in view.hosts if h.name == name), None)
                if mine is not None:
                    return mine  # reserved by an earlier attempt of this create
                if subnet not in view.subnets:
                    raise base.CloudError(errors.NotFound, f"network {view.name!r} has no subnet {subnet}",
                                          "VIR_ERR_NO_NETWORK")
                ip = N.free_address(view, subnet, tried)
                if not ip:
                    raise base.CloudError(errors.ResourceExhausted, f"subnet {subnet} has no free address")
                host = N.Host(_mac(), ip, name)
                try:
                    net.update(_ADD, _HOST, -1, N.host_xml(host), L.update_flags(net))
                except libvirt.libvirtError as err:
                    if err.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:
                        raise
                    tried.add(ip)  # another replica took it a moment ago
                    return None
                return host

            host = await self.client.call("virNetworkUpdate", add, "vm", name)
            if host is not None:
                return host
        raise errors.Aborted(f"could not reserve an address in subnet {subnet} after {_ADDRESS_TRIES} tries")

    async def _filter(self, name: str, groups: tuple[str, ...], meta: D.VmMeta) -> str:
        if self.filters is None:
            raise errors.FailedPrecondition("security groups need nwfilters, which this host's connection lacks; "
                                            "set the region setting nwfilter_uri")
        filters = self.filters

        def resolve(conn: libvirt.virConnect) -> str:
            names = [L.nwfilter(conn, g).name() for g in groups]
            meta.groups = " ".join(names)
            if len(names) == 1:
                return str(names[0])
            union = f"{name}-groups"
            meta.union = union
            conn.nwfilterDefineXML(F.build_union(union, names))
            return union

        return await filters.call("virNWFilterDefineXML", resolve, "vm", name)

    async def _root_volume(self, name: str, image: V.VolumeView, gib: int) -> D.Disk:
        vol_name = f"{name}{V.ROOT}"

        def create(conn: libvirt.virConnect) -> None:
            if L.volume_or_none(conn, self.settings.pool, vol_name) is None:
                xml = V.build(vol_name, max(gib * V.GIB, image.capacity), "qcow2", backing=image)
                conn.storagePoolLookupByName(self.settings.pool).createXML(xml, 0)

        await self.client.call("virStorageVolCreateXML", create, "vm", name)
        return D.Disk(device="disk", target="vda", pool=self.settings.pool, volume=vol_name, format="qcow2")

    async def _undo(self, name: str, meta: D.VmMeta, undefine: bool = False) -> None:
        """Remove what a refused create made, so nothing is left behind; errors here are secondary."""
        with contextlib.suppress(errors.DomainError):
            if undefine:
                await self.client.call("virDomainUndefineFlags",
                                       lambda c: c.lookupByName(name).undefineFlags(_UNDEFINE), "vm", name)
            await self._release(name, meta)

    async def _release(self, name: str, meta: D.VmMeta) -> None:
        """Give back what a VM holds besides its domain: address, own filter, root volume, seed."""
        if meta.ip and meta.vpc:
            def free(conn: libvirt.virConnect) -> None:
                net = L.network(conn, meta.vpc)
                mine = [h for h in N.parse(net.XMLDesc(0)).hosts if h.name == name]
                for host in mine:
                    net.update(_DELETE, _HOST, -1, N.host_xml(host), L.update_flags(net))

            with contextlib.suppress(errors.NotFound):
                await self.client.call("virNetworkUpdate", free, "vm", name)
        if meta.union and self.filters is not None:
            def drop(conn: libvirt.virConnect) -> None:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.nwfilterLookupByName(meta.union).undefine()

            await self.filters.call("virNWFilterUndefine", drop, "vm", name)

        def delete_root(conn: libvirt.virConnect) -> None:
            vol = L.volume_or_none(conn, self.settings.pool, f"{name}{V.ROOT}")
            if vol is not None:
                vol.delete(0)

        await self.client.call("virStorageVolDelete", delete_root, "vm", name)
        await self.seeds.remove(name, meta.seed)

    # ------------------------------------------------------------ read

    async def get_vm(self, csp_id: str) -> pb.Vm:
        def read(conn: libvirt.virConnect) -> tuple[D.DomainView, int, int, bool]:
            dom, view = L.vm_domain(conn, csp_id)
            state, reason = dom.state()
            return view, state, reason, bool(dom.isActive())

        view, state, reason, active = await self.client.call("virDomainGetXMLDesc", read, "vm", csp_id)
        out = vm_message(view, state, reason)
        if not out.private_ip and active:
            out.private_ip = await self._leased_address(csp_id)
            out.ssh_access_point = base.ssh_access_point(out.private_ip)
        return out

    async def _leased_address(self, csp_id: str) -> str:
        """The address the network's DHCP server gave a VM without a reserved one ("" if none yet)."""
        def ask(conn: libvirt.virConnect) -> str:
            found = L.domain(conn, csp_id).interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, 0)
            for nic in (found or {}).values():
                for addr in nic.get("addrs") or []:
                    if addr.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4:
                        return str(addr.get("addr", ""))
            return ""

        try:
            return await self.client.call("virDomainInterfaceAddresses", ask, "vm", csp_id)
        except errors.DomainError:
            return ""  # not known yet (or not offered by this host): the VM simply has no address to show

    async def list_vms(self) -> list[pb.Vm]:
        views = await self.client.call("virConnectListAllDomains", L.domain_views, "vm")
        return [vm_message(v, s, r) for v, s, r in views]

    async def get_vm_status(self, csp_id: str) -> common.VmStatus:
        def state(conn: libvirt.virConnect) -> tuple[int, int]:
            st, reason = L.domain(conn, csp_id).state()
            return int(st), int(reason)

        return vm_status(*await self.client.call("virDomainGetState", state, "vm", csp_id))

    # ------------------------------------------------------------ verbs

    async def suspend_vm(self, csp_id: str) -> None:
        await self.client.call("virDomainSuspend", lambda c: L.domain(c, csp_id).suspend(), "vm", csp_id)

    async def resume_vm(self, csp_id: str) -> None:
        def resume(conn: libvirt.virConnect) -> str:
            dom = L.domain(conn, csp_id)
            state = dom.state()[0]
            if state == libvirt.VIR_DOMAIN_SHUTOFF:
                dom.create()  # a stopped instance starts again
            elif state == libvirt.VIR_DOMAIN_PMSUSPENDED:
                dom.pMWakeup(0)
            else:
                dom.resume()
            return ""

        await self.client.call("virDomainResume", resume, "vm", csp_id)

    async def reboot_vm(self, csp_id: str) -> None:
        await self.client.call("virDomainReboot", lambda c: L.domain(c, csp_id).reboot(0), "vm", csp_id)

    async def terminate_vm(self, csp_id: str) -> None:
        """destroy, give back address/filter/volumes, then undefine: a retry after a crash finishes the job."""
        def stop(conn: libvirt.virConnect) -> D.DomainView:
            dom, view = L.vm_domain(conn, csp_id)
            if dom.isActive():
                dom.destroy()
            return view

        view = await self.client.call("virDomainDestroy", stop, "vm", csp_id)
        await self._release(view.name, view.meta)
        await self.client.call("virDomainUndefineFlags", lambda c: L.domain(c, csp_id).undefineFlags(_UNDEFINE),
                               "vm", csp_id)


def image_arch(image: str, host: HostFacts) -> str:
    return describe_image(image, 0, host.arch).architecture
