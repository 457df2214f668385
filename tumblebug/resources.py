"""Namespace resources — vNets, security groups, SSH keys, specs, images, data disks —
each bound to a spider connection and made through spider.

The record is written (status Creating, with a request ID) before spider is
asked, and completed after; spider's own idempotency by request ID makes asking
again after a crash harmless.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as spb
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.names import check_name
from services.paging import page_size
from services.proto_time import now
from services.store import Store
from tumblebug import keyring, keyspace
from tumblebug.keyring import Keyring
from tumblebug.namespaces import Namespaces
from tumblebug.spider_client import Spider

# collection → the `spec` oneof field it holds
COLLECTIONS = {"vnets": "vnet", "security-groups": "security_group", "ssh-keys": "ssh_key", "specs": "spec_ref",
               "images": "image_ref", "data-disks": "data_disk"}
CREATING, READY, DELETING = "Creating", "Ready", "Deleting"
DEFAULT_CIDR, DEFAULT_SUBNET = "10.0.0.0/16", "10.0.1.0/24"


def collection_field(collection: str) -> str:
    found = COLLECTIONS.get(collection)
    if found is None:
        raise errors.InvalidArgument.field("collection", f"unknown collection {collection!r}; one of "
                                                         f"{', '.join(COLLECTIONS)}")
    return found


def default_name(kind: str, connection: str) -> str:
    """The name of a connection's default resource in a namespace."""
    return keyspace.spider_name("default", kind, connection)


class Resources:
    def __init__(self, store: Store, spider: Spider, namespaces: Namespaces, keyring: Keyring) -> None:
        self.store = store
        self.spider = spider
        self.namespaces = namespaces
        self.keyring = keyring

    async def get(self, ns: str, collection: str, name: str) -> pb.Resource:
        collection_field(collection)
        found = await self.store.must_get(keyspace.resource(ns, collection, name), pb.Resource,
                                          f"{collection[:-1]} {name!r} in namespace {ns!r}")
        return found.value

    async def ready(self, ns: str, collection: str, name: str, field: str) -> pb.Resource:
        found = await self.store.get(keyspace.resource(ns, collection, name), pb.Resource)
        if found is None:
            raise errors.NotFound(f"{field}: {collection[:-1]} {name!r} not found in namespace {ns!r}")
        if found.value.status != READY:
            raise errors.FailedPrecondition(f"{field}: {collection[:-1]} {name!r} is {found.value.status}")
        return found.value

    async def list(self, ns: str, collection: str, size: int, token: str) -> tuple[list[pb.Resource], str]:
        collection_field(collection)
        await self.namespaces.get(ns)
        page = await self.store.page(keyspace.resources(ns, collection), pb.Resource, page_size(size), token)
        return [i.value for i in page.items], page.next_key

    async def create(self, ns: str, collection: str, resource: pb.Resource, request_id: str) -> pb.Resource:
        """Record, make through spider, complete. The same request_id again returns the first result."""
        field = collection_field(collection)
        await self.namespaces.get(ns)
        check_name(resource.name, "resource.name")
        if not resource.connection:
            raise errors.InvalidArgument.field("resource.connection", "the spider connection is required")
        if resource.WhichOneof("spec") != field:
            raise errors.InvalidArgument.field(f"resource.{field}", f"a {collection[:-1]} needs its {field} spec")
        await self.spider.connection(resource.connection)
        record = pb.Resource()
        record.CopyFrom(resource)
        record.collection = collection
        record.status = CREATING
        record.request_id = request_id or uuid.uuid4().hex
        record.iid.CopyFrom(common.IID(name=keyspace.spider_name(ns, resource.name)))
        record.create_time.CopyFrom(now())
        # A key to generate is made here, not by the cloud, so that it is sealed in the same write as
        # the intent: a crash anywhere after leaves no key pair whose private half is lost.
        generate = record.HasField("ssh_key") and not (resource.ssh_key.public_key or resource.ssh_key.private_key)
        private_key = _take_private_key(record) if record.HasField("ssh_key") else ""
        key = keyspace.resource(ns, collection, resource.name)
        try:
            await self._record(ns, key, record, private_key)
        except errors.AlreadyExists:
            existing = await self.get(ns, collection, resource.name)
            if not request_id or existing.request_id != request_id:
                raise errors.AlreadyExists(
                    f"{collection[:-1]} {resource.name!r} already exists in namespace {ns!r}") from None
            if existing.status == READY:
                return existing
            record = existing
            if generate:
                # The request that generated it never finished, so its caller never saw the key.
                private_key = await self.keyring.private_key(ns, record.name) or ""
        out = await self.drive(ns, record)
        if generate and private_key:
            out.ssh_key.private_key = private_key  # the one time it is returned
        return out

    async def _record(self, ns: str, key: str, record: pb.Resource, private_key: str) -> None:
        """Write a new record, with its sealed private key in the same transaction when it has one."""
        if not private_key:
            await self.store.create(key, record)
            return
        sealed = self.keyring.sealed(ns, record.name, private_key)
        for _ in range(2):
            try:
                await self.store.commit([(key, record), sealed], [])
                return
            except errors.Aborted:
                if await self.store.get(key, pb.Resource) is not None:
                    raise errors.AlreadyExists(f"{record.name!r} already exists") from None
                # A secret outlived its record (a delete stopped between the two): it is nobody's.
                await self.store.delete(sealed[0])
        raise errors.Aborted(f"{record.name!r} is being created concurrently; retry")

    async def drive(self, ns: str, record: pb.Resource) -> pb.Resource:
        """Make the spider resource of a Creating record and store the result."""
        key = keyspace.resource(ns, record.collection, record.name)
        try:
            made = await self._make(ns, record)
        except errors.DomainError as err:
            if isinstance(err, errors.Unavailable | errors.DeadlineExceeded | errors.Aborted):
                raise  # spider may still finish it: keep the intent; a retry or the reconciler completes it
            if record.HasField("ssh_key"):
                await self.keyring.forget(ns, record.name)
            await self.store.delete(key)
            raise

        def ready(rec: pb.Resource) -> pb.Resource:
            rec.CopyFrom(made)
            rec.status = READY
            return rec

        return await self.store.modify(key, pb.Resource, ready, f"{record.collection[:-1]} {record.name!r}")

    async def _make(self, ns: str, rec: pb.Resource) -> pb.Resource:
        out = pb.Resource()
        out.CopyFrom(rec)
        conn, name, rid = rec.connection, rec.iid.name, rec.request_id
        call = self.spider.call
        stub = self.spider.stub
        kind = rec.WhichOneof("spec")
        if kind == "vnet":
            vpc = await call(stub.CreateVpc, spb.CreateVpcRequest(connection=conn, request_id=rid, vpc=spb.Vpc(
                iid=common.IID(name=name), ipv4_cidr=rec.vnet.ipv4_cidr,
                subnets=[spb.Subnet(iid=common.IID(name=s.name), ipv4_cidr=s.ipv4_cidr) for s in rec.vnet.subnets])))
            out.iid.CopyFrom(vpc.iid)
        elif kind == "security_group":
            vnet = await self.ready(ns, "vnets", rec.security_group.vnet, "resource.security_group.vnet")
            rules = [spb.SecurityRule(direction=r.direction, protocol=r.protocol, from_port=r.from_port,
                                      to_port=r.to_port, cidr=r.cidr) for r in rec.security_group.rules]
            sg = await call(stub.CreateSecurityGroup, spb.CreateSecurityGroupRequest(
                connection=conn, request_id=rid,
                security_group=spb.SecurityGroup(iid=common.IID(name=name), vpc=vnet.iid.name, rules=rules)))
            out.iid.CopyFrom(sg.iid)
        elif kind == "ssh_key":
            # Always an import: tumblebug made or was given the pair (a cloud-made private key could
            # be lost between the cloud's answer and tumblebug's write).
            kp = await call(stub.CreateKeyPair, spb.CreateKeyPairRequest(connection=conn, request_id=rid,
                                                                         key_pair=spb.KeyPair(
                iid=common.IID(name=name), public_key=rec.ssh_key.public_key)))
            out.iid.CopyFrom(kp.iid)
            out.ssh_key.CopyFrom(pb.SshKey(public_key=kp.public_key, fingerprint=kp.fingerprint,
                                           private_key_held=rec.ssh_key.private_key_held))
        elif kind == "spec_ref":
            spec = await call(stub.GetSpec, spb.GetSpecRequest(connection=conn, name=rec.spec_ref.csp_spec))
            out.spec_ref.CopyFrom(pb.SpecRef(csp_spec=spec.name, vcpu=spec.vcpu, memory_gib=spec.memory_gib,
                                             price_per_hour=spec.price_per_hour, architecture=spec.architecture))
            out.iid.CopyFrom(common.IID(name=spec.name, csp_name=spec.name, csp_id=spec.name))
        elif kind == "image_ref":
            image = await call(stub.GetImage, spb.GetImageRequest(connection=conn, name=rec.image_ref.csp_image))
            out.image_ref.CopyFrom(pb.ImageRef(csp_image=image.name, os=image.os, architecture=image.architecture))
            out.iid.CopyFrom(common.IID(name=image.name, csp_name=image.name, csp_id=image.name))
        elif kind == "data_disk":
            disk = await call(stub.CreateDisk, spb.CreateDiskRequest(connection=conn, request_id=rid, disk=spb.Disk(
                iid=common.IID(name=name), size_gib=rec.data_disk.size_gib, disk_type=rec.data_disk.disk_type)))
            out.iid.CopyFrom(disk.iid)
        return out

    async def delete(self, ns: str, collection: str, name: str, force: bool,
                     in_use: Callable[[str, str, str], Awaitable[str]]) -> None:
        """Delete through spider, then forget. Refused while an MCIS uses it, unless forced."""
        rec = await self.get(ns, collection, name)
        user = await in_use(ns, collection, name)
        if user and not force:
            raise errors.FailedPrecondition(f"{collection[:-1]} {name!r} is used by {user}; delete that first")
        await self._destroy(rec)
        # The secret before its record: a delete cut short leaves a record without a key, never a key
        # without its record (which would block making the name again).
        if rec.HasField("ssh_key"):
            await self.keyring.forget(ns, name)
        await self.store.delete(keyspace.resource(ns, collection, name))

    async def _destroy(self, rec: pb.Resource) -> None:
        request = spb.DeleteResourceRequest(connection=rec.connection, name=rec.iid.name)
        rpc = {"vnet": self.spider.stub.DeleteVpc, "security_group": self.spider.stub.DeleteSecurityGroup,
               "ssh_key": self.spider.stub.DeleteKeyPair, "data_disk": self.spider.stub.DeleteDisk}.get(
                   rec.WhichOneof("spec") or "")
        if rpc is None or not rec.iid.name:
            return  # specs and images are references, nothing to delete in a cloud
        deadline = time.monotonic() + 60
        while True:
            try:
                await self.spider.call(rpc, request)
                return
            except errors.NotFound:
                return
            except errors.FailedPrecondition:
                # A VM that used it is still terminating in the cloud: give it a moment.
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def resume_pending(self) -> int:
        """Finish every resource left Creating by a tumblebug that stopped (same request IDs)."""
        done = 0
        for ns in await self.store.list_all(keyspace.namespace(), pb.Namespace):
            for item in await self.store.list_all(keyspace.resources(ns.value.name), pb.Resource):
                if item.value.status != CREATING:
                    continue
                try:
                    await self.drive(ns.value.name, item.value)
                    done += 1
                except errors.DomainError:
                    continue
        return done

    # ---------------------------------------------------- dynamic defaults

    async def ensure_defaults(self, ns: str, connection: str) -> tuple[str, str, str]:
        """The connection's default vNet, security group and SSH key in `ns`, made exactly once
        however many requests ask at the same moment. Returns their names."""
        vnet = default_name("vnet", connection)
        sg = default_name("sg", connection)
        key = default_name("key", connection)
        rules = [pb.FirewallRule(direction="inbound", protocol="tcp", from_port=22, to_port=22, cidr="0.0.0.0/0"),
                 pb.FirewallRule(direction="inbound", protocol="all", cidr="10.0.0.0/8"),
                 pb.FirewallRule(direction="outbound", protocol="all", cidr="0.0.0.0/0")]

        async def network() -> None:  # the group needs its vNet first
            await self._ensure(ns, "vnets", pb.Resource(name=vnet, connection=connection, vnet=pb.VNet(
                ipv4_cidr=DEFAULT_CIDR, subnets=[pb.Subnet(name="default", ipv4_cidr=DEFAULT_SUBNET)])))
            await self._ensure(ns, "security-groups", pb.Resource(
                name=sg, connection=connection, security_group=pb.SecurityGroup(vnet=vnet, rules=rules)))

        await asyncio.gather(network(), self._ensure(ns, "ssh-keys", pb.Resource(
            name=key, connection=connection, ssh_key=pb.SshKey())))
        return vnet, sg, key

    async def _ensure(self, ns: str, collection: str, want: pb.Resource) -> None:
        # One request ID per default resource: whoever drives it, spider makes it once.
        request_id = f"default:{ns}:{collection}:{want.name}"
        key = keyspace.resource(ns, collection, want.name)
        deadline = time.monotonic() + 120
        while True:
            found = await self.store.get(key, pb.Resource)
            if found is not None and found.value.status == READY:
                return
            if found is None:
                try:
                    await self.create(ns, collection, want, request_id)
                    return
                except (errors.AlreadyExists, errors.Aborted):
                    pass  # another request is making it: wait for it below
            elif time.time() - found.value.create_time.ToSeconds() > 20:
                # Its maker seems gone: finish it ourselves (idempotent by request ID).
                try:
                    await self.drive(ns, found.value)
                    return
                except errors.Aborted:
                    pass
            if time.monotonic() > deadline:
                raise errors.DeadlineExceeded(f"default {collection[:-1]} {want.name!r} did not become ready")
            await asyncio.sleep(0.1)


def _take_private_key(record: pb.Resource) -> str:
    """Settle an SSH key record's public key and take its private key out of it (it is sealed
    apart): generated when neither was given, else checked against each other."""
    given = record.ssh_key
    private_key, public_key = given.private_key, given.public_key
    if not private_key and not public_key:
        pair = keyring.generate()
        private_key, public_key = pair.private_key, pair.public_key
    elif private_key:
        derived = keyring.public_of(private_key, "resource.ssh_key.private_key")
        if public_key and not keyring.same_key(public_key, derived):
            raise errors.InvalidArgument.field("resource.ssh_key.public_key", "is not the public half of private_key")
        public_key = public_key or derived
    record.ssh_key.CopyFrom(pb.SshKey(public_key=public_key, private_key_held=bool(private_key)))
    return private_key
