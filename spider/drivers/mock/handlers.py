"""The mock driver's handlers: spider's interface mapped onto CloudTwin's resource API."""

from __future__ import annotations

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from spider.drivers import base
from spider.drivers.mock.client import TwinClient

VM_STATUS = {
    "creating": common.CREATING,
    "running": common.RUNNING,
    "stopping": common.SUSPENDING,
    "stopped": common.SUSPENDED,
    "starting": common.RESUMING,
    "rebooting": common.REBOOTING,
    "terminating": common.TERMINATING,
    "terminated": common.TERMINATED,
    "failed": common.FAILED,
}

DISK_STATUS = {"pending": "creating", "available": "available", "in-use": "attached", "deleting": "deleting"}


def _iid(r: tw.Resource) -> common.IID:
    return common.IID(csp_name=r.name, csp_id=r.id)


def _rules_out(rules: list[pb.SecurityRule]) -> list[tw.Rule]:
    return [tw.Rule(direction=r.direction, protocol=r.protocol, from_port=r.from_port, to_port=r.to_port,
                    cidr=r.cidr) for r in rules]


def _rules_in(rules: list[tw.Rule]) -> list[pb.SecurityRule]:
    return [pb.SecurityRule(direction=r.direction, protocol=r.protocol, from_port=r.from_port, to_port=r.to_port,
                            cidr=r.cidr) for r in rules]


class TwinImages(base.ImageHandler):
    def __init__(self, twin: TwinClient) -> None:
        self.twin = twin

    async def list_images(self) -> list[pb.Image]:
        req = tw.DescribeImagesRequest(provider=self.twin.provider, region=self.twin.region)
        reply = await self.twin.call("DescribeImages", self.twin.stub.DescribeImages, req, "image")
        return [pb.Image(name=i.id, display_name=i.name, os=i.os, architecture=i.architecture, size_gib=i.size_gib)
                for i in reply.images]

    async def get_image(self, name: str) -> pb.Image:
        for image in await self.list_images():
            if image.name == name:
                return image
        raise errors.NotFound(f"image {name!r} is not offered in {self.twin.provider}/{self.twin.region}")


class TwinSpecs(base.SpecHandler, base.PriceHandler):
    """Specs and their prices come from the same catalog call."""

    def __init__(self, twin: TwinClient) -> None:
        self.twin = twin

    async def _describe(self) -> list[tw.Spec]:
        req = tw.DescribeSpecsRequest(provider=self.twin.provider, region=self.twin.region)
        reply = await self.twin.call("DescribeSpecs", self.twin.stub.DescribeSpecs, req, "spec")
        return list(reply.specs)

    async def list_specs(self) -> list[pb.Spec]:
        return [pb.Spec(name=s.name, vcpu=s.vcpu, memory_gib=s.memory_gib, architecture=s.architecture,
                        gpu_count=s.gpu_count, price_per_hour=s.price_per_hour, family=s.family)
                for s in await self._describe()]

    async def get_spec(self, name: str) -> pb.Spec:
        for spec in await self.list_specs():
            if spec.name == name:
                return spec
        raise errors.NotFound(f"spec {name!r} is not offered in {self.twin.provider}/{self.twin.region}")

    async def list_prices(self) -> list[pb.Price]:
        return [pb.Price(spec=s.name, price_per_hour=s.price_per_hour, currency="USD") for s in await self._describe()]


class TwinRegionZones(base.RegionZoneHandler):
    def __init__(self, twin: TwinClient) -> None:
        self.twin = twin

    async def list_region_zones(self) -> list[pb.RegionZone]:
        req = tw.DescribeRegionsRequest(provider=self.twin.provider)
        reply = await self.twin.call("DescribeRegions", self.twin.stub.DescribeRegions, req, "region")
        return [pb.RegionZone(region=r.name, location=r.location, zones=list(r.zones)) for r in reply.regions]


class TwinVpcs(base.VpcHandler):
    def __init__(self, twin: TwinClient) -> None:
        self.twin = twin

    async def _subnets_of(self, vpc_id: str) -> list[pb.Subnet]:
        return [pb.Subnet(iid=_iid(s), ipv4_cidr=s.subnet.cidr, zone=s.zone)
                for s in await self.twin.list(tw.SUBNET) if s.subnet.vpc_id == vpc_id]

    async def create_vpc(self, vpc: pb.Vpc, token: str) -> pb.Vpc:
        req = tw.CreateResourceRequest(name=vpc.iid.csp_name, client_token=token, vpc=tw.VpcProps(cidr=vpc.ipv4_cidr))
        made = await self.twin.create(req, "VPC", vpc.iid.name)
        out = pb.Vpc()
        out.CopyFrom(vpc)
        out.iid.csp_id = made.id
        del out.subnets[:]
        for subnet in vpc.subnets:
            out.subnets.append(await self.add_subnet(made.id, subnet, f"{token}/{subnet.iid.name}"))
        return out

    async def get_vpc(self, csp_id: str) -> pb.Vpc:
        r = await self.twin.get(tw.VPC, csp_id)
        return pb.Vpc(iid=_iid(r), ipv4_cidr=r.vpc.cidr, subnets=await self._subnets_of(r.id))

    async def list_vpcs(self) -> list[pb.Vpc]:
        return [pb.Vpc(iid=_iid(r), ipv4_cidr=r.vpc.cidr) for r in await self.twin.list(tw.VPC)]

    async def delete_vpc(self, csp_id: str) -> None:
        for subnet in await self._subnets_of(csp_id):
            await self.twin.delete(tw.SUBNET, subnet.iid.csp_id)
        await self.twin.delete(tw.VPC, csp_id)

    async def add_subnet(self, vpc_csp_id: str, subnet: pb.Subnet, token: str) -> pb.Subnet:
        req = tw.CreateResourceRequest(name=subnet.iid.csp_name, client_token=token, zone=subnet.zone,
                                       subnet=tw.SubnetProps(vpc_id=vpc_csp_id, cidr=subnet.ipv4_cidr))
        made = await self.twin.create(req, "SUBNET", subnet.iid.name)
        return pb.Subnet(iid=common.IID(name=subnet.iid.name, csp_name=made.name, csp_id=made.id),
                         ipv4_cidr=made.subnet.cidr, zone=made.zone)

    async def remove_subnet(self, vpc_csp_id: str, subnet_csp_id: str) -> None:
        await self.twin.delete(tw.SUBNET, subnet_csp_id)


class TwinSecurityGroups(base.SecurityGroupHandler):
    def __init__(self, twin: TwinClient) -> None:
        self.twin = twin

    @staticmethod
    def _out(r: tw.Resource) -> pb.SecurityGroup:
        return pb.SecurityGroup(iid=_iid(r), rules=_rules_in(list(r.security_group.rules)))

    async def create_security_group(self, sg: pb.SecurityGroup, vpc_csp_id: str, token: str) -> pb.SecurityGroup:
        props = tw.SecurityGroupProps(vpc_id=vpc_csp_id, rules=_rules_out(list(sg.rules)))
        req = tw.CreateResourceRequest(name=sg.iid.csp_name, client_token=token, security_group=props)
        return self._out(await self.twin.create(req, "SECURITY_GROUP", sg.iid.name))

    async def get_security_group(self, csp_id: str) -> pb.SecurityGroup:
        return self._out(await self.twin.get(tw.SECURITY_GROUP, csp_id))

    async def list_security_groups(self) -> list[pb.SecurityGroup]:
        return [self._out(r) for r in await self.twin.list(tw.SECURITY_GROUP)]

    async def delete_security_group(self, csp_id: str) -> None:
        await self.twin.delete(tw.SECURITY_GROUP, csp_id)

    async def add_rules(self, csp_id: str, rules: list[pb.SecurityRule]) -> pb.SecurityGroup:
        req = tw.ActOnResourceRequest(kind=tw.SECURITY_GROUP, id=csp_id, action="authorize", rules=_rules_out(rules))
        return self._out(await self.twin.act(req))

    async def remove_rules(self, csp_id: str, rules: list[pb.SecurityRule]) -> pb.SecurityGroup:
        req = tw.ActOnResourceRequest(kind=tw.SECURITY_GROUP, id=csp_id, action="revoke", rules=_rules_out(rules))
        return self._out(await self.twin.act(req))


class TwinKeyPairs(base.KeyPairHandler):
    def __init__(self, twin: TwinClient) -> None:
        self.twin = twin

    @staticmethod
    def _out(r: tw.Resource) -> pb.KeyPair:
        return pb.KeyPair(iid=_iid(r), fingerprint=r.key_pair.fingerprint, public_key=r.key_pair.public_key,
                          private_key=r.key_pair.private_key)

    async def create_key_pair(self, kp: pb.KeyPair, token: str) -> pb.KeyPair:
        req = tw.CreateResourceRequest(name=kp.iid.csp_name, client_token=token,
                                       key_pair=tw.KeyPairProps(public_key=kp.public_key))
        return self._out(await self.twin.create(req, "KEY_PAIR", kp.iid.name))

    async def get_key_pair(self, csp_id: str) -> pb.KeyPair:
        return self._out(await self.twin.get(tw.KEY_PAIR, csp_id))

    async def list_key_pairs(self) -> list[pb.KeyPair]:
        return [self._out(r) for r in await self.twin.list(tw.KEY_PAIR)]

    async def delete_key_pair(self, csp_id: str) -> None:
        await self.twin.delete(tw.KEY_PAIR, csp_id)


class TwinVms(base.VmHandler):
    def __init__(self, twin: TwinClient) -> None:
        self.twin = twin

    @staticmethod
    def _out(r: tw.Resource) -> pb.Vm:
        return pb.Vm(iid=_iid(r), spec=r.vm.spec, image=r.vm.image_id, zone=r.zone,
                     root_disk_gib=r.vm.root_disk_gib, status=VM_STATUS.get(r.state, common.FAILED),
                     private_ip=r.vm.private_ip, public_ip=r.vm.public_ip, disks=list(r.vm.disk_ids),
                     ssh_access_point=base.ssh_access_point(r.vm.public_ip or r.vm.private_ip, r.vm.ssh_port)
                     if r.vm.ssh_port else "")

    async def start_vm(self, vm: pb.Vm, refs: base.VmRefs, token: str) -> pb.Vm:
        props = tw.VmProps(spec=refs.spec, image_id=refs.image, subnet_id=refs.subnet,
                           security_group_ids=list(refs.security_groups), key_pair_id=refs.key_pair,
                           user_data=vm.user_data, root_disk_gib=vm.root_disk_gib)
        req = tw.CreateResourceRequest(name=vm.iid.csp_name, client_token=token, zone=vm.zone, vm=props,
                                       tags=dict(vm.tags))
        return self._out(await self.twin.create(req, "VM", vm.iid.name))

    async def get_vm(self, csp_id: str) -> pb.Vm:
        return self._out(await self.twin.get(tw.VM, csp_id))

    async def list_vms(self) -> list[pb.Vm]:
        return [self._out(r) for r in await self.twin.list(tw.VM)]

    async def get_vm_status(self, csp_id: str) -> common.VmStatus:
        return (await self.get_vm(csp_id)).status

    async def _act(self, csp_id: str, action: str) -> None:
        await self.twin.act(tw.ActOnResourceRequest(kind=tw.VM, id=csp_id, action=action))

    async def suspend_vm(self, csp_id: str) -> None:
        await self._act(csp_id, "stop")

    async def resume_vm(self, csp_id: str) -> None:
        await self._act(csp_id, "start")

    async def reboot_vm(self, csp_id: str) -> None:
        await self._act(csp_id, "reboot")

    async def terminate_vm(self, csp_id: str) -> None:
        await self.twin.delete(tw.VM, csp_id)


class TwinDisks(base.DiskHandler):
    def __init__(self, twin: TwinClient) -> None:
        self.twin = twin

    @staticmethod
    def _out(r: tw.Resource) -> pb.Disk:
        return pb.Disk(iid=_iid(r), size_gib=r.disk.size_gib, disk_type=r.disk.disk_type, zone=r.zone,
                       status=DISK_STATUS.get(r.state, r.state))

    async def create_disk(self, disk: pb.Disk, token: str) -> pb.Disk:
        req = tw.CreateResourceRequest(name=disk.iid.csp_name, client_token=token, zone=disk.zone,
                                       disk=tw.DiskProps(size_gib=disk.size_gib, disk_type=disk.disk_type))
        return self._out(await self.twin.create(req, "DISK", disk.iid.name))

    async def get_disk(self, csp_id: str) -> pb.Disk:
        return self._out(await self.twin.get(tw.DISK, csp_id))

    async def list_disks(self) -> list[pb.Disk]:
        return [self._out(r) for r in await self.twin.list(tw.DISK)]

    async def delete_disk(self, csp_id: str) -> None:
        await self.twin.delete(tw.DISK, csp_id)

    async def attach_disk(self, csp_id: str, vm_csp_id: str) -> pb.Disk:
        req = tw.ActOnResourceRequest(kind=tw.DISK, id=csp_id, action="attach", target_id=vm_csp_id)
        return self._out(await self.twin.act(req))

    async def detach_disk(self, csp_id: str, vm_csp_id: str) -> pb.Disk:
        req = tw.ActOnResourceRequest(kind=tw.DISK, id=csp_id, action="detach", target_id=vm_csp_id)
        return self._out(await self.twin.act(req))

    async def resize_disk(self, csp_id: str, size_gib: int) -> pb.Disk:
        req = tw.ActOnResourceRequest(kind=tw.DISK, id=csp_id, action="resize", size_gib=size_gib)
        return self._out(await self.twin.act(req))
