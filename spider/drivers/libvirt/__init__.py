"""The `libvirt` driver: one libvirt host (or libvirt's test driver) as a cloud region.

Region: the libvirt URI is the region setting `uri`, or else `region.region` itself
(`qemu:///system`, `qemu+ssh://admin@host/system`, `test:///default`,
`test+unix:///default?socket=…`). The region is the host; its zones are the setting
`zones` (comma-separated), else the region's zone, else `default`.

Credential: no key is required (local URIs and ssh-agent transports need none); give
`username` and `password` for URIs whose server asks for them (SASL, libssh2/libssh),
answered through libvirt's auth callback.

Other region settings: `pool` (storage pool for spider's volumes, default `default`),
`image_pool` (where images are, default `pool`), `network` (the network of VMs that
name no VPC, default `default`), `forward` (VPC networks: nat|route|open|none),
`flavors` (JSON list of {name, vcpu, memory_gib[, architecture, gpu_count, family]};
defaults tiny…xlarge), `seed_dir` (cloud-init seeds on local hosts), `nwfilter_uri`
(where nwfilters live when the hypervisor connection has none), `keyring` (the
key-pair domain), `threads` (worker threads of the connection, default 8), `location`.

Mapping (each module says more): images = volumes of the image pool; specs = the
flavors; VPC = a libvirt network, subnet = a DHCP range in it, cloud ID its CIDR;
security group = an nwfilter; key pair = an entry in the host's keyring, injected with
the user data through a cloud-init NoCloud seed; VM = a persistent domain named by its
cloud-side name, cloud ID its UUID; disk = a volume `<name>.disk` attached as a virtio
disk. Every libvirt call runs in the connection's thread pool, through spider's gate,
logged under libvirt's C API name.
"""

from __future__ import annotations

from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from spider.drivers import base

NOTES = (
    "prices: a libvirt host has no price list",
    "disk: hot-plugged where the host can (virDomainAttachDeviceFlags); a host without device hot-plug "
    "(libvirt's test driver) gets the disk in the VM's persistent definition, seen by the VM from its next start",
    "disk_resize: needs virStorageVolResize, which libvirt's test driver lacks",
    "security_group: libvirt nwfilters, from the hypervisor connection or the region setting nwfilter_uri; "
    "a connection with neither has no security groups",
    "key_pair: kept in the host's keyring domain and injected by a cloud-init seed, which needs "
    "virStorageVolUpload on remote hosts",
)


class LibvirtDriver(base.Driver):
    """Every handler but prices, over libvirt-python (see the module docstring for settings and mapping)."""

    name = "libvirt"
    description = "a libvirt host: KVM/QEMU, or libvirt's test driver (region setting uri, or region.region, is the URI)"
    credential_keys = ()
    name_rules = base.NameRules(max_length=63)

    def capabilities(self) -> pb.Capabilities:
        return pb.Capabilities(images=True, specs=True, region_zones=True, prices=False, vpc=True, subnet=True,
                               security_group=True, key_pair=True, key_pair_import=True, vm=True, vm_suspend=True,
                               vm_reboot=True, disk=True, disk_resize=False, register=True, notes=list(NOTES))

    def unavailable_reason(self) -> str:
        try:
            import libvirt  # noqa: F401  (only whether it imports matters here)
        except ImportError as err:
            return (f"libvirt-python is not installed ({err}); it builds against libvirt-dev and pkg-config "
                    "(make setup installs them where it can)")
        return ""

    async def connect(self, info: base.ConnectionInfo, caller: base.Caller) -> base.CloudConnection:
        reason = self.unavailable_reason()
        if reason:
            raise errors.FailedPrecondition(f"driver 'libvirt' is unavailable here: {reason}")
        from spider.drivers.libvirt.connect import open_connection

        return await open_connection(info, caller)
