"""The aws driver's handlers: spider's interface mapped onto EC2."""

from __future__ import annotations

import time
from typing import Any

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from spider.drivers import base
from spider.drivers.aws.client import Ec2

VM_STATUS = {
    "pending": common.CREATING,
    "running": common.RUNNING,
    "stopping": common.SUSPENDING,
    "stopped": common.SUSPENDED,
    "shutting-down": common.TERMINATING,
    "terminated": common.TERMINATED,
}
DISK_STATUS = {"creating": "creating", "available": "available", "in-use": "attached", "deleting": "deleting",
               "error": "failed"}
LIVE_INSTANCE_STATES = ["pending", "running", "stopping", "stopped"]
# Catalogs change rarely; thousands of images and types are not fetched for every request.
CATALOG_TTL_S = 300.0
DATA_DEVICES = [f"/dev/sd{c}" for c in "fghijklmnop"]


def name_tag(item: dict[str, Any]) -> str:
    return next((t["Value"] for t in item.get("Tags", []) if t.get("Key") == "Name"), "")


def tag_spec(resource_type: str, name: str, extra: dict[str, str] | None = None) -> list[dict[str, Any]]:
    tags = [{"Key": "Name", "Value": name}, *({"Key": k, "Value": v} for k, v in (extra or {}).items())]
    return [{"ResourceType": resource_type, "Tags": tags}]


def by_name(name: str) -> list[dict[str, Any]]:
    return [{"Name": "tag:Name", "Values": [name]}]


class Catalog(base.ImageHandler, base.SpecHandler, base.RegionZoneHandler):
    """Images, instance types and zones, cached for a few minutes."""

    def __init__(self, ec2: Ec2, owners: list[str]) -> None:
        self.ec2 = ec2
        self.owners = owners
        self._cache: dict[str, tuple[float, list[Any]]] = {}

    async def _cached(self, key: str, load: Any) -> list[Any]:
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < CATALOG_TTL_S:
            return hit[1]
        value = await load()
        self._cache[key] = (time.monotonic(), value)
        return list(value)

    async def list_images(self) -> list[pb.Image]:
        async def load() -> list[pb.Image]:
            raw = await self.ec2.pages("DescribeImages", "Images", "image", Owners=self.owners,
                                       Filters=[{"Name": "state", "Values": ["available"]}])
            return [pb.Image(name=i["ImageId"], display_name=i.get("Name", ""),
                             os=i.get("PlatformDetails") or i.get("Platform") or i.get("Description", ""),
                             architecture=i.get("Architecture", ""), size_gib=_root_size(i)) for i in raw]

        return await self._cached("images", load)

    async def get_image(self, name: str) -> pb.Image:
        for image in await self.list_images():
            if image.name == name:
                return image
        raise errors.NotFound(f"image {name!r} is not offered in {self.ec2.region}")

    async def list_specs(self) -> list[pb.Spec]:
        async def load() -> list[pb.Spec]:
            raw = await self.ec2.pages("DescribeInstanceTypes", "InstanceTypes", "spec")
            return [_spec(t) for t in raw]

        return await self._cached("specs", load)

    async def get_spec(self, name: str) -> pb.Spec:
        for spec in await self.list_specs():
            if spec.name == name:
                return spec
        raise errors.NotFound(f"instance type {name!r} is not offered in {self.ec2.region}")

    async def zones(self) -> list[str]:
        async def load() -> list[str]:
            reply = await self.ec2.call("DescribeAvailabilityZones", "zone")
            return sorted(z["ZoneName"] for z in reply["AvailabilityZones"] if z.get("State") == "available")

        return await self._cached("zones", load)

    async def list_region_zones(self) -> list[pb.RegionZone]:
        return [pb.RegionZone(region=self.ec2.region, zones=await self.zones())]


def _root_size(image: dict[str, Any]) -> int:
    for bdm in image.get("BlockDeviceMappings", []):
        if bdm.get("DeviceName") == image.get("RootDeviceName"):
            return int(bdm.get("Ebs", {}).get("VolumeSize", 0))
    return 0


def _spec(t: dict[str, Any]) -> pb.Spec:
    arches = t.get("ProcessorInfo", {}).get("SupportedArchitectures", [""])
    gpus = sum(int(g.get("Count", 0)) for g in t.get("GpuInfo", {}).get("Gpus", []))
    name = t["InstanceType"]
    return pb.Spec(name=name, vcpu=int(t.get("VCpuInfo", {}).get("DefaultVCpus", 0)),
                   memory_gib=t.get("MemoryInfo", {}).get("SizeInMiB", 0) / 1024,
                   architecture="x86_64" if "x86_64" in arches else arches[0], gpu_count=gpus,
                   family=name.split(".")[0])


class Vpcs(base.VpcHandler):
    def __init__(self, ec2: Ec2) -> None:
        self.ec2 = ec2

    async def _subnets(self, vpc_id: str) -> list[pb.Subnet]:
        raw = await self.ec2.pages("DescribeSubnets", "Subnets", "subnet",
                                   Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
        return [pb.Subnet(iid=common.IID(csp_name=name_tag(s), csp_id=s["SubnetId"]), ipv4_cidr=s["CidrBlock"],
                          zone=s.get("AvailabilityZone", "")) for s in raw]

    async def create_vpc(self, vpc: pb.Vpc, token: str) -> pb.Vpc:
        # CreateVpc takes no ClientToken: the Name tag makes a repeated create find the first one.
        found = await self.ec2.call("DescribeVpcs", "vpc", vpc.iid.name, Filters=by_name(vpc.iid.csp_name))
        if found["Vpcs"]:
            vpc_id = found["Vpcs"][0]["VpcId"]
        else:
            made = await self.ec2.call("CreateVpc", "vpc", vpc.iid.name, CidrBlock=vpc.ipv4_cidr,
                                       TagSpecifications=tag_spec("vpc", vpc.iid.csp_name, dict(vpc.tags)))
            vpc_id = made["Vpc"]["VpcId"]
        out = pb.Vpc()
        out.CopyFrom(vpc)
        out.iid.csp_id = vpc_id
        del out.subnets[:]
        for subnet in vpc.subnets:
            out.subnets.append(await self.add_subnet(vpc_id, subnet, token))
        return out

    async def get_vpc(self, csp_id: str) -> pb.Vpc:
        reply = await self.ec2.call("DescribeVpcs", "vpc", csp_id, VpcIds=[csp_id])
        v = reply["Vpcs"][0]
        return pb.Vpc(iid=common.IID(csp_name=name_tag(v), csp_id=v["VpcId"]), ipv4_cidr=v["CidrBlock"],
                      subnets=await self._subnets(csp_id))

    async def list_vpcs(self) -> list[pb.Vpc]:
        raw = await self.ec2.pages("DescribeVpcs", "Vpcs", "vpc")
        # The region's default VPC is the cloud's own, not a resource anyone made.
        return [pb.Vpc(iid=common.IID(csp_name=name_tag(v), csp_id=v["VpcId"]), ipv4_cidr=v["CidrBlock"])
                for v in raw if not v.get("IsDefault")]

    async def delete_vpc(self, csp_id: str) -> None:
        for subnet in await self._subnets(csp_id):
            await self.remove_subnet(csp_id, subnet.iid.csp_id)
        await self.ec2.call("DeleteVpc", "vpc", csp_id, VpcId=csp_id)

    async def add_subnet(self, vpc_csp_id: str, subnet: pb.Subnet, token: str) -> pb.Subnet:
        found = await self.ec2.call("DescribeSubnets", "subnet", subnet.iid.name, Filters=[
            *by_name(subnet.iid.csp_name), {"Name": "vpc-id", "Values": [vpc_csp_id]}])
        if found["Subnets"]:
            s = found["Subnets"][0]
        else:
            params: dict[str, Any] = {"VpcId": vpc_csp_id, "CidrBlock": subnet.ipv4_cidr,
                                      "TagSpecifications": tag_spec("subnet", subnet.iid.csp_name)}
            if subnet.zone:
                params["AvailabilityZone"] = subnet.zone
            s = (await self.ec2.call("CreateSubnet", "subnet", subnet.iid.name, **params))["Subnet"]
        return pb.Subnet(iid=common.IID(name=subnet.iid.name, csp_name=subnet.iid.csp_name, csp_id=s["SubnetId"]),
                         ipv4_cidr=s["CidrBlock"], zone=s.get("AvailabilityZone", ""))

    async def remove_subnet(self, vpc_csp_id: str, subnet_csp_id: str) -> None:
        await self.ec2.call("DeleteSubnet", "subnet", subnet_csp_id, SubnetId=subnet_csp_id)


def _permissions(rules: list[pb.SecurityRule]) -> list[dict[str, Any]]:
    out = []
    for r in rules:
        perm: dict[str, Any] = {"IpProtocol": "-1" if r.protocol == "all" else r.protocol,
                                "IpRanges": [{"CidrIp": r.cidr or "0.0.0.0/0"}]}
        if r.protocol in ("tcp", "udp"):
            perm["FromPort"], perm["ToPort"] = r.from_port, r.to_port
        elif r.protocol == "icmp":
            perm["FromPort"], perm["ToPort"] = -1, -1
        out.append(perm)
    return out


def _rules(group: dict[str, Any]) -> list[pb.SecurityRule]:
    out = []
    for direction, key in (("inbound", "IpPermissions"), ("outbound", "IpPermissionsEgress")):
        for perm in group.get(key, []):
            protocol = "all" if perm.get("IpProtocol") in ("-1", -1) else str(perm.get("IpProtocol"))
            for rng in perm.get("IpRanges", []):
                out.append(pb.SecurityRule(direction=direction, protocol=protocol,
                                           from_port=int(perm.get("FromPort", 0) or 0),
                                           to_port=int(perm.get("ToPort", 0) or 0), cidr=rng.get("CidrIp", "")))
    return out


class SecurityGroups(base.SecurityGroupHandler):
    def __init__(self, ec2: Ec2) -> None:
        self.ec2 = ec2

    @staticmethod
    def _out(g: dict[str, Any]) -> pb.SecurityGroup:
        return pb.SecurityGroup(iid=common.IID(csp_name=g["GroupName"], csp_id=g["GroupId"]), rules=_rules(g))

    async def create_security_group(self, sg: pb.SecurityGroup, vpc_csp_id: str, token: str) -> pb.SecurityGroup:
        found = await self.ec2.call("DescribeSecurityGroups", "security_group", sg.iid.name, Filters=[
            {"Name": "group-name", "Values": [sg.iid.csp_name]}, {"Name": "vpc-id", "Values": [vpc_csp_id]}])
        if found["SecurityGroups"]:
            return self._out(found["SecurityGroups"][0])
        made = await self.ec2.call("CreateSecurityGroup", "security_group", sg.iid.name, GroupName=sg.iid.csp_name,
                                   Description=f"{sg.iid.name} (cb-spider)", VpcId=vpc_csp_id,
                                   TagSpecifications=tag_spec("security-group", sg.iid.csp_name, dict(sg.tags)))
        if sg.rules:
            return await self.add_rules(made["GroupId"], list(sg.rules))
        return await self.get_security_group(made["GroupId"])

    async def get_security_group(self, csp_id: str) -> pb.SecurityGroup:
        reply = await self.ec2.call("DescribeSecurityGroups", "security_group", csp_id, GroupIds=[csp_id])
        return self._out(reply["SecurityGroups"][0])

    async def list_security_groups(self) -> list[pb.SecurityGroup]:
        raw = await self.ec2.pages("DescribeSecurityGroups", "SecurityGroups", "security_group")
        # Every VPC's "default" group belongs to the cloud.
        return [self._out(g) for g in raw if g["GroupName"] != "default"]

    async def _change(self, csp_id: str, rules: list[pb.SecurityRule], verb: str) -> pb.SecurityGroup:
        for direction, api in (("inbound", f"{verb}SecurityGroupIngress"), ("outbound", f"{verb}SecurityGroupEgress")):
            chosen = [r for r in rules if r.direction == direction]
            if chosen:
                await self.ec2.call(api, "security_group", csp_id, GroupId=csp_id, IpPermissions=_permissions(chosen))
        return await self.get_security_group(csp_id)

    async def delete_security_group(self, csp_id: str) -> None:
        await self.ec2.call("DeleteSecurityGroup", "security_group", csp_id, GroupId=csp_id)

    async def add_rules(self, csp_id: str, rules: list[pb.SecurityRule]) -> pb.SecurityGroup:
        return await self._change(csp_id, rules, "Authorize")

    async def remove_rules(self, csp_id: str, rules: list[pb.SecurityRule]) -> pb.SecurityGroup:
        return await self._change(csp_id, rules, "Revoke")


class KeyPairs(base.KeyPairHandler):
    """Key pairs are named in EC2 (RunInstances takes the name), so the name is the cloud ID."""

    def __init__(self, ec2: Ec2) -> None:
        self.ec2 = ec2

    @staticmethod
    def _out(k: dict[str, Any]) -> pb.KeyPair:
        return pb.KeyPair(iid=common.IID(csp_name=k["KeyName"], csp_id=k["KeyName"]),
                          fingerprint=k.get("KeyFingerprint", ""), public_key=k.get("PublicKey", "").strip())

    async def create_key_pair(self, kp: pb.KeyPair, token: str) -> pb.KeyPair:
        name = kp.iid.csp_name
        try:
            if kp.public_key:
                await self.ec2.call("ImportKeyPair", "key_pair", kp.iid.name, KeyName=name,
                                    PublicKeyMaterial=kp.public_key.encode(),
                                    TagSpecifications=tag_spec("key-pair", name))
                return await self.get_key_pair(name)
            made = await self.ec2.call("CreateKeyPair", "key_pair", kp.iid.name, KeyName=name, KeyType="ed25519",
                                       TagSpecifications=tag_spec("key-pair", name))
        except errors.AlreadyExists:
            return await self.get_key_pair(name)  # a repeated create: the first one made it
        out = await self.get_key_pair(name)
        out.private_key = made.get("KeyMaterial", "")
        return out

    async def get_key_pair(self, csp_id: str) -> pb.KeyPair:
        reply = await self.ec2.call("DescribeKeyPairs", "key_pair", csp_id, KeyNames=[csp_id], IncludePublicKey=True)
        return self._out(reply["KeyPairs"][0])

    async def list_key_pairs(self) -> list[pb.KeyPair]:
        reply = await self.ec2.call("DescribeKeyPairs", "key_pair", IncludePublicKey=True)
        return [self._out(k) for k in reply["KeyPairs"]]

    async def delete_key_pair(self, csp_id: str) -> None:
        await self.ec2.call("DeleteKeyPair", "key_pair", csp_id, KeyName=csp_id)


class Vms(base.VmHandler):
    def __init__(self, ec2: Ec2, catalog: Catalog, default_zone: str) -> None:
        self.ec2 = ec2
        self.catalog = catalog
        self.default_zone = default_zone

    async def zone(self) -> str:
        return self.default_zone or (await self.catalog.zones())[0]

    @staticmethod
    def _out(i: dict[str, Any]) -> pb.Vm:
        root = i.get("RootDeviceName")
        disks = [m["Ebs"]["VolumeId"] for m in i.get("BlockDeviceMappings", [])
                 if m.get("DeviceName") != root and "Ebs" in m]
        return pb.Vm(iid=common.IID(csp_name=name_tag(i), csp_id=i["InstanceId"]), spec=i.get("InstanceType", ""),
                     image=i.get("ImageId", ""), zone=i.get("Placement", {}).get("AvailabilityZone", ""),
                     status=VM_STATUS.get(i.get("State", {}).get("Name", ""), common.FAILED),
                     private_ip=i.get("PrivateIpAddress", ""), public_ip=i.get("PublicIpAddress", ""), disks=disks,
                     ssh_access_point=base.ssh_access_point(i.get("PublicIpAddress") or i.get("PrivateIpAddress", "")))

    async def _instances(self, **params: Any) -> list[dict[str, Any]]:
        reservations = await self.ec2.pages("DescribeInstances", "Reservations", "vm", **params)
        return [i for r in reservations for i in r.get("Instances", [])]

    async def start_vm(self, vm: pb.Vm, refs: base.VmRefs, token: str) -> pb.Vm:
        # ClientToken makes AWS itself idempotent; the Name-tag lookup covers endpoints that ignore it.
        live = [{"Name": "instance-state-name", "Values": LIVE_INSTANCE_STATES}]
        found = await self._instances(Filters=[*by_name(vm.iid.csp_name), *live])
        if found:
            return self._out(found[0])
        params: dict[str, Any] = {
            "ImageId": refs.image, "InstanceType": refs.spec, "MinCount": 1, "MaxCount": 1, "ClientToken": token,
            "TagSpecifications": tag_spec("instance", vm.iid.csp_name, dict(vm.tags)),
        }
        if refs.subnet:
            params["SubnetId"] = refs.subnet
        else:
            params["Placement"] = {"AvailabilityZone": vm.zone or await self.zone()}
        if refs.security_groups:
            params["SecurityGroupIds"] = list(refs.security_groups)
        if refs.key_pair:
            params["KeyName"] = refs.key_pair
        if vm.user_data:
            params["UserData"] = vm.user_data
        if vm.root_disk_gib:
            image = await self.ec2.call("DescribeImages", "image", refs.image, ImageIds=[refs.image])
            root = image["Images"][0].get("RootDeviceName", "/dev/xvda")
            params["BlockDeviceMappings"] = [{"DeviceName": root, "Ebs": {"VolumeSize": vm.root_disk_gib}}]
        made = await self.ec2.call("RunInstances", "vm", vm.iid.name, **params)
        return self._out(made["Instances"][0])

    async def get_vm(self, csp_id: str) -> pb.Vm:
        found = await self._instances(InstanceIds=[csp_id])
        if not found:
            raise errors.NotFound(f"instance {csp_id!r} not found")
        return self._out(found[0])

    async def list_vms(self) -> list[pb.Vm]:
        return [self._out(i) for i in await self._instances()]

    async def get_vm_status(self, csp_id: str) -> common.VmStatus:
        return (await self.get_vm(csp_id)).status

    async def suspend_vm(self, csp_id: str) -> None:
        await self.ec2.call("StopInstances", "vm", csp_id, InstanceIds=[csp_id])

    async def resume_vm(self, csp_id: str) -> None:
        await self.ec2.call("StartInstances", "vm", csp_id, InstanceIds=[csp_id])

    async def reboot_vm(self, csp_id: str) -> None:
        await self.ec2.call("RebootInstances", "vm", csp_id, InstanceIds=[csp_id])

    async def terminate_vm(self, csp_id: str) -> None:
        await self.ec2.call("TerminateInstances", "vm", csp_id, InstanceIds=[csp_id])


class Disks(base.DiskHandler):
    def __init__(self, ec2: Ec2, vms: Vms) -> None:
        self.ec2 = ec2
        self.vms = vms

    @staticmethod
    def _out(v: dict[str, Any]) -> pb.Disk:
        return pb.Disk(iid=common.IID(csp_name=name_tag(v), csp_id=v["VolumeId"]), size_gib=int(v.get("Size", 0)),
                       disk_type=v.get("VolumeType", ""), zone=v.get("AvailabilityZone", ""),
                       status=DISK_STATUS.get(v.get("State", ""), v.get("State", "")))

    async def create_disk(self, disk: pb.Disk, token: str) -> pb.Disk:
        found = await self.ec2.call("DescribeVolumes", "disk", disk.iid.name, Filters=by_name(disk.iid.csp_name))
        if found["Volumes"]:
            return self._out(found["Volumes"][0])
        made = await self.ec2.call("CreateVolume", "disk", disk.iid.name, Size=disk.size_gib,
                                   AvailabilityZone=disk.zone or await self.vms.zone(),
                                   VolumeType=disk.disk_type or "gp3", ClientToken=token,
                                   TagSpecifications=tag_spec("volume", disk.iid.csp_name, dict(disk.tags)))
        return self._out(made)

    async def get_disk(self, csp_id: str) -> pb.Disk:
        reply = await self.ec2.call("DescribeVolumes", "disk", csp_id, VolumeIds=[csp_id])
        return self._out(reply["Volumes"][0])

    async def list_disks(self) -> list[pb.Disk]:
        # Root volumes come and go with their instances (deleted on termination): not resources here.
        raw = await self.ec2.pages("DescribeVolumes", "Volumes", "disk")
        return [self._out(v) for v in raw if not any(a.get("DeleteOnTermination") for a in v.get("Attachments", []))]

    async def delete_disk(self, csp_id: str) -> None:
        await self.ec2.call("DeleteVolume", "disk", csp_id, VolumeId=csp_id)

    async def attach_disk(self, csp_id: str, vm_csp_id: str) -> pb.Disk:
        instance = (await self.vms._instances(InstanceIds=[vm_csp_id]))[0]
        used = {m.get("DeviceName") for m in instance.get("BlockDeviceMappings", [])}
        device = next((d for d in DATA_DEVICES if d not in used), None)
        if device is None:
            raise errors.ResourceExhausted(f"instance {vm_csp_id} has no free device name for another disk")
        await self.ec2.call("AttachVolume", "disk", csp_id, VolumeId=csp_id, InstanceId=vm_csp_id, Device=device)
        return await self.get_disk(csp_id)

    async def detach_disk(self, csp_id: str, vm_csp_id: str) -> pb.Disk:
        await self.ec2.call("DetachVolume", "disk", csp_id, VolumeId=csp_id, InstanceId=vm_csp_id)
        return await self.get_disk(csp_id)

    async def resize_disk(self, csp_id: str, size_gib: int) -> pb.Disk:
        await self.ec2.call("ModifyVolume", "disk", csp_id, VolumeId=csp_id, Size=size_gib)
        return await self.get_disk(csp_id)
