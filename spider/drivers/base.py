"""The driver interface: one abstract class per handler, a connection that hands
them out, and a Driver that opens connections.

A driver speaks one cloud. Every call it makes to its cloud goes through the
`Caller` spider gives it, which applies the connection's rate limit and
concurrency bound, retries what the driver marks retryable, and writes the call
log. Data crosses this boundary as spider's own protobuf messages; a driver
fills in what the cloud observed (IDs, status, addresses).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, cast

from cbapi.common.v1 import common_pb2
from cbapi.spider.v1 import spider_pb2 as pb
from services import errors

T = TypeVar("T")
H = TypeVar("H")


class CloudError(Exception):
    """An error a cloud returned, classified by the driver."""

    def __init__(self, error: type[errors.DomainError], message: str, cloud_code: str = "",
                 retryable: bool = False, transport: bool = False) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.cloud_code = cloud_code
        self.retryable = retryable
        # No answer came back from the cloud's endpoint (refused, reset, timed out, no route).
        self.transport = transport

    def to_domain(self) -> errors.DomainError:
        prefix = f"{self.cloud_code}: " if self.cloud_code else ""
        if self.error is errors.InvalidArgument:
            err: errors.DomainError = errors.InvalidArgument(f"the cloud refused the request: {prefix}{self.message}")
        else:
            err = self.error(f"{prefix}{self.message}")
        err.upstream_code = self.cloud_code
        return err


class Caller(Protocol):
    """How a driver makes each call to its cloud (see spider.calls.Gate)."""

    async def __call__(self, api: str, fn: Callable[[], Awaitable[T]], resource_type: str = "",
                       resource_name: str = "") -> T: ...


@dataclass(frozen=True)
class ConnectionInfo:
    """Everything a driver needs to reach one cloud region with one credential."""

    connection: str
    driver: str
    region: str
    zone: str
    settings: Mapping[str, str] = field(default_factory=dict)
    credential: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class NameRules:
    """How a cloud wants its resource names: held as data, applied by spider."""

    max_length: int = 63
    # Characters the cloud refuses are replaced by '-'.
    disallowed: str = r"[^a-z0-9-]"
    lowercase: bool = True

    def cloud_name(self, name: str, suffix: str) -> str:
        base = name.lower() if self.lowercase else name
        base = re.sub(self.disallowed, "-", base)
        room = self.max_length - len(suffix) - 1
        return f"{base[:room].rstrip('-')}-{suffix}"


SSH_PORT = 22


def ssh_access_point(host: str, port: int = SSH_PORT) -> str:
    """`host:port` of a VM's SSH server (CB-Spider's SSHAccessPoint); "" while it has no address."""
    if not host:
        return ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class VmRefs:
    """The cloud IDs of what a new VM uses, resolved by spider from user names."""

    image: str
    spec: str
    subnet: str = ""
    security_groups: tuple[str, ...] = ()
    key_pair: str = ""
    vpc: str = ""


# ------------------------------------------------------------------ handlers


class ImageHandler(ABC):
    @abstractmethod
    async def list_images(self) -> list[pb.Image]: ...

    @abstractmethod
    async def get_image(self, name: str) -> pb.Image: ...


class SpecHandler(ABC):
    @abstractmethod
    async def list_specs(self) -> list[pb.Spec]: ...

    @abstractmethod
    async def get_spec(self, name: str) -> pb.Spec: ...


class RegionZoneHandler(ABC):
    @abstractmethod
    async def list_region_zones(self) -> list[pb.RegionZone]: ...


class PriceHandler(ABC):
    @abstractmethod
    async def list_prices(self) -> list[pb.Price]: ...


class VpcHandler(ABC):
    """VPCs with their subnets. `create_vpc` makes the VPC and every subnet it lists."""

    @abstractmethod
    async def create_vpc(self, vpc: pb.Vpc, token: str) -> pb.Vpc: ...

    @abstractmethod
    async def get_vpc(self, csp_id: str) -> pb.Vpc: ...

    @abstractmethod
    async def list_vpcs(self) -> list[pb.Vpc]: ...

    @abstractmethod
    async def delete_vpc(self, csp_id: str) -> None: ...

    @abstractmethod
    async def add_subnet(self, vpc_csp_id: str, subnet: pb.Subnet, token: str) -> pb.Subnet: ...

    @abstractmethod
    async def remove_subnet(self, vpc_csp_id: str, subnet_csp_id: str) -> None: ...


class SecurityGroupHandler(ABC):
    @abstractmethod
    async def create_security_group(self, sg: pb.SecurityGroup, vpc_csp_id: str, token: str) -> pb.SecurityGroup: ...

    @abstractmethod
    async def get_security_group(self, csp_id: str) -> pb.SecurityGroup: ...

    @abstractmethod
    async def list_security_groups(self) -> list[pb.SecurityGroup]: ...

    @abstractmethod
    async def delete_security_group(self, csp_id: str) -> None: ...

    @abstractmethod
    async def add_rules(self, csp_id: str, rules: list[pb.SecurityRule]) -> pb.SecurityGroup: ...

    @abstractmethod
    async def remove_rules(self, csp_id: str, rules: list[pb.SecurityRule]) -> pb.SecurityGroup: ...


class KeyPairHandler(ABC):
    """Key pairs; a create without a public key generates one and returns its private key once."""

    @abstractmethod
    async def create_key_pair(self, kp: pb.KeyPair, token: str) -> pb.KeyPair: ...

    @abstractmethod
    async def get_key_pair(self, csp_id: str) -> pb.KeyPair: ...

    @abstractmethod
    async def list_key_pairs(self) -> list[pb.KeyPair]: ...

    @abstractmethod
    async def delete_key_pair(self, csp_id: str) -> None: ...


class VmHandler(ABC):
    """VMs. `start_vm` returns once the cloud accepted the VM; `token` makes a retry harmless."""

    @abstractmethod
    async def start_vm(self, vm: pb.Vm, refs: VmRefs, token: str) -> pb.Vm: ...

    @abstractmethod
    async def get_vm(self, csp_id: str) -> pb.Vm: ...

    @abstractmethod
    async def list_vms(self) -> list[pb.Vm]: ...

    @abstractmethod
    async def get_vm_status(self, csp_id: str) -> common_pb2.VmStatus: ...

    @abstractmethod
    async def suspend_vm(self, csp_id: str) -> None: ...

    @abstractmethod
    async def resume_vm(self, csp_id: str) -> None: ...

    @abstractmethod
    async def reboot_vm(self, csp_id: str) -> None: ...

    @abstractmethod
    async def terminate_vm(self, csp_id: str) -> None: ...


class DiskHandler(ABC):
    @abstractmethod
    async def create_disk(self, disk: pb.Disk, token: str) -> pb.Disk: ...

    @abstractmethod
    async def get_disk(self, csp_id: str) -> pb.Disk: ...

    @abstractmethod
    async def list_disks(self) -> list[pb.Disk]: ...

    @abstractmethod
    async def delete_disk(self, csp_id: str) -> None: ...

    @abstractmethod
    async def attach_disk(self, csp_id: str, vm_csp_id: str) -> pb.Disk: ...

    @abstractmethod
    async def detach_disk(self, csp_id: str, vm_csp_id: str) -> pb.Disk: ...

    @abstractmethod
    async def resize_disk(self, csp_id: str, size_gib: int) -> pb.Disk: ...


@dataclass(frozen=True)
class Slot:
    """Where a connection keeps one kind of handler, and the capability that declares it."""

    handler: type
    attr: str
    capability: str
    noun: str


SLOTS: tuple[Slot, ...] = (
    Slot(ImageHandler, "image", "images", "images"),
    Slot(SpecHandler, "spec", "specs", "specs"),
    Slot(RegionZoneHandler, "region_zone", "region_zones", "region and zone listing"),
    Slot(PriceHandler, "price", "prices", "prices"),
    Slot(VpcHandler, "vpc", "vpc", "VPCs"),
    Slot(SecurityGroupHandler, "security_group", "security_group", "security groups"),
    Slot(KeyPairHandler, "key_pair", "key_pair", "key pairs"),
    Slot(VmHandler, "vm", "vm", "VMs"),
    Slot(DiskHandler, "disk", "disk", "disks"),
)
_SLOT_OF: dict[type, Slot] = {s.handler: s for s in SLOTS}


def slot_of(handler: type) -> Slot:
    return _SLOT_OF[handler]


@dataclass
class CloudConnection:
    """An open connection to one cloud region: the handlers the driver supports (None if not)."""

    provider: str
    region: str
    image: ImageHandler | None = None
    spec: SpecHandler | None = None
    region_zone: RegionZoneHandler | None = None
    price: PriceHandler | None = None
    vpc: VpcHandler | None = None
    security_group: SecurityGroupHandler | None = None
    key_pair: KeyPairHandler | None = None
    vm: VmHandler | None = None
    disk: DiskHandler | None = None
    close: Callable[[], Awaitable[None]] | None = None

    def get(self, handler: type[H]) -> H | None:
        """The handler of that type (e.g. `get(ImageHandler)`), or None when this connection has none."""
        found = getattr(self, slot_of(handler).attr)
        return cast(H, found) if isinstance(found, handler) else None


def capability_mismatches(caps: pb.Capabilities, cloud: CloudConnection) -> list[str]:
    """Where a driver's declared capabilities and a connection's real handlers disagree.

    A handler must be declared, and of its slot's type. A declared handler may be missing from
    one connection (libvirt without nwfilters has no security groups) only when a note of the
    capabilities says why (`"<capability>: …"`)."""
    out = []
    for slot in SLOTS:
        found = getattr(cloud, slot.attr)
        declared = getattr(caps, slot.capability)
        if found is not None and not isinstance(found, slot.handler):
            out.append(f"{slot.attr} is a {type(found).__name__}, not a {slot.handler.__name__}")
        elif found is not None and not declared:
            out.append(f"it has a {slot.handler.__name__} but does not declare {slot.capability}")
        elif found is None and declared and not any(n.startswith(f"{slot.capability}:") for n in caps.notes):
            out.append(f"it declares {slot.capability} but has no {slot.handler.__name__}, and no note says why")
    return out


class Driver(ABC):
    """A cloud driver: what it can do, and how to open a connection."""

    name: str = ""
    description: str = ""
    credential_keys: tuple[str, ...] = ()
    name_rules: NameRules = NameRules()

    @abstractmethod
    def capabilities(self) -> pb.Capabilities: ...

    def unavailable_reason(self) -> str:
        """Why this driver cannot be used on this machine ("" when it can)."""
        return ""

    @abstractmethod
    async def connect(self, info: ConnectionInfo, caller: Caller) -> CloudConnection:
        """Open a connection; raise a DomainError when the region or credential is unusable."""

    def describe(self) -> pb.Driver:
        reason = self.unavailable_reason()
        return pb.Driver(name=self.name, description=self.description, capabilities=self.capabilities(),
                         available=not reason, unavailable_reason=reason,
                         credential_keys=list(self.credential_keys))
