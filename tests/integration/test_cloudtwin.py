"""CloudTwin as a real process, spoken to over gRPC with the generated stub."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as pb
from cbapi.cloudtwin.v1.cloudtwin_pb2_grpc import CloudTwinStub
from services.processes import Proc, free_port, python_service, start_grpc
from services.rpc.client import channel
from spider.cloudtwin.catalog import Catalog

ROOT = Path(__file__).resolve().parents[2]
LATENCY = 0.3  # boot and action latency of the shared emulator, seconds
RETENTION = 1.0


@dataclass
class Twin:
    """A running emulator process and a channel to it."""

    proc: Proc
    port: int
    channel: grpc.aio.Channel
    stub: CloudTwinStub

    async def close(self) -> None:
        await self.channel.close()
        self.proc.stop()


async def start_twin(run_dir: Path, name: str = "cloudtwin", **env: str) -> Twin:
    port = free_port()
    settings = {"CB_CLOUDTWIN_HOST": "127.0.0.1", "CB_CLOUDTWIN_PORT": str(port),
                "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **env}
    proc = python_service(name, "spider.cloudtwin.server", run_dir, settings)
    try:
        await start_grpc(proc, port, timeout=30)
    except BaseException:
        proc.stop()
        raise
    ch = channel(f"127.0.0.1:{port}")
    return Twin(proc, port, ch, CloudTwinStub(ch))


@pytest.fixture(scope="module")
async def twin(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Twin]:
    t = await start_twin(tmp_path_factory.mktemp("twin"), CB_CLOUDTWIN_SEED="42", CB_CLOUDTWIN_PROVIDERS="5",
                         CB_CLOUDTWIN_BOOT_LATENCY=str(LATENCY), CB_CLOUDTWIN_ACTION_LATENCY=str(LATENCY),
                         CB_CLOUDTWIN_CREATE_LATENCY="0", CB_CLOUDTWIN_TERMINATED_RETENTION_S=str(RETENTION))
    yield t
    await t.close()


def creds(account: str) -> tuple[tuple[str, str], ...]:
    return (("x-twin-access-key", account), ("x-twin-secret-key", "s3cr3t-" + account))


def new_account() -> tuple[tuple[str, str], ...]:
    return creds("acct-" + uuid.uuid4().hex[:10])


@dataclass
class Place:
    """A provider/region picked for a test, with a spec and an image that fit."""

    provider: str
    region: str
    zones: list[str]
    spec: str
    vcpu: int
    image: str
    arm_image: str


async def place(stub: CloudTwinStub, md: Any, index: int = 0) -> Place:
    providers = (await stub.ListProviders(pb.ListProvidersRequest())).providers
    prov = providers[index % len(providers)]
    regions = (await stub.DescribeRegions(pb.DescribeRegionsRequest(provider=prov.name), metadata=md)).regions
    reg = regions[0]
    specs = (await stub.DescribeSpecs(pb.DescribeSpecsRequest(provider=prov.name, region=reg.name),
                                      metadata=md)).specs
    spec = next(s for s in specs if s.family == "general" and s.vcpu == 2)
    images = (await stub.DescribeImages(pb.DescribeImagesRequest(provider=prov.name, region=reg.name),
                                        metadata=md)).images
    x86 = next(i for i in images if i.os == "ubuntu" and i.architecture == "x86_64")
    arm = next(i for i in images if i.architecture == "arm64")
    return Place(prov.name, reg.name, list(reg.zones), spec.name, spec.vcpu, x86.id, arm.id)


async def expect_error(call: Awaitable[Any], code: grpc.StatusCode, cloud_code: str) -> grpc.aio.AioRpcError:
    """The call fails with `code`, and the trailers carry the cloud's error code."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    err = info.value
    assert err.code() == code, err.details()
    trailers = dict(err.trailing_metadata() or ())
    assert trailers.get("x-twin-error-code") == cloud_code, (trailers, err.details())
    return err


def create(p: Place, **kw: Any) -> pb.CreateResourceRequest:
    return pb.CreateResourceRequest(provider=p.provider, region=p.region, **kw)


def get(p: Place, kind: pb.Kind, rid: str) -> pb.GetResourceRequest:
    return pb.GetResourceRequest(provider=p.provider, region=p.region, kind=kind, id=rid)


def act(p: Place, kind: pb.Kind, rid: str, action: str, **kw: Any) -> pb.ActOnResourceRequest:
    return pb.ActOnResourceRequest(provider=p.provider, region=p.region, kind=kind, id=rid, action=action, **kw)


def delete(p: Place, kind: pb.Kind, rid: str) -> pb.DeleteResourceRequest:
    return pb.DeleteResourceRequest(provider=p.provider, region=p.region, kind=kind, id=rid)


def listing(p: Place, kind: pb.Kind, **kw: Any) -> pb.ListResourcesRequest:
    return pb.ListResourcesRequest(provider=p.provider, region=p.region, kind=kind, **kw)


async def wait_state(stub: CloudTwinStub, md: Any, req: pb.GetResourceRequest, state: str,
                     timeout: float = 5.0) -> pb.Resource:
    deadline = time.monotonic() + timeout
    while True:
        res = await stub.GetResource(req, metadata=md)
        if res.state == state:
            return res
        assert time.monotonic() < deadline, f"{req.id} stuck in {res.state}, wanted {state}"
        await asyncio.sleep(0.05)


async def wait_gone(stub: CloudTwinStub, md: Any, req: pb.GetResourceRequest, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await stub.GetResource(req, metadata=md)
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND
            return
        assert time.monotonic() < deadline, f"{req.id} still there"
        await asyncio.sleep(0.05)


def seconds(ts: Any) -> float:
    return float(ts.ToNanoseconds() / 1e9)


@dataclass
class Net:
    vpc: str
    subnet: str
    sg: str


async def network(stub: CloudTwinStub, md: Any, p: Place, cidr: str = "10.1.0.0/16") -> Net:
    vpc = await stub.CreateResource(create(p, name="net", vpc=pb.VpcProps(cidr=cidr)), metadata=md)
    sub_cidr = cidr.replace("0.0/16", "1.0/24")
    subnet = await stub.CreateResource(create(p, name="sub", zone=p.zones[0],
                                              subnet=pb.SubnetProps(vpc_id=vpc.id, cidr=sub_cidr)), metadata=md)
    rule = pb.Rule(direction="inbound", protocol="tcp", from_port=22, to_port=22, cidr="0.0.0.0/0")
    sg = await stub.CreateResource(create(p, name="sg", security_group=pb.SecurityGroupProps(
        vpc_id=vpc.id, rules=[rule])), metadata=md)
    return Net(vpc.id, subnet.id, sg.id)


def vm_request(p: Place, net: Net, name: str = "vm", **kw: Any) -> pb.CreateResourceRequest:
    props = pb.VmProps(spec=p.spec, image_id=p.image, subnet_id=net.subnet, security_group_ids=[net.sg])
    return create(p, name=name, vm=props, **kw)


async def set_knobs(stub: CloudTwinStub, p: Place, **knobs: Any) -> None:
    await stub.SetKnobs(pb.SetKnobsRequest(provider=p.provider, region=p.region, knobs=pb.Knobs(**knobs)))


# -- catalog and credentials ---------------------------------------------------------


async def test_catalog_matches_the_seed(twin: Twin) -> None:
    md = new_account()
    providers = (await twin.stub.ListProviders(pb.ListProvidersRequest())).providers
    expected = Catalog(42, 5)
    assert [p.name for p in providers] == list(expected.providers)
    for prov in providers:
        regions = await twin.stub.DescribeRegions(pb.DescribeRegionsRequest(provider=prov.name), metadata=md)
        assert regions == expected.providers[prov.name].regions_response
        assert 3 <= len(regions.regions) <= 6 and list(prov.regions) == [r.name for r in regions.regions]
        reg = regions.regions[0]
        assert reg.location.display and reg.zones == [f"{reg.name}-a", f"{reg.name}-b", f"{reg.name}-c"]
        specs = await twin.stub.DescribeSpecs(pb.DescribeSpecsRequest(provider=prov.name, region=reg.name),
                                              metadata=md)
        assert specs == expected.region(prov.name, reg.name).specs_response
        truth = await twin.stub.GetSpecTruth(pb.GetSpecTruthRequest(provider=prov.name, region=reg.name,
                                                                    spec=specs.specs[0].name))
        assert truth == expected.truth(prov.name, reg.name, specs.specs[0].name)


async def test_unknown_provider_and_region(twin: Twin) -> None:
    md = new_account()
    err = await expect_error(twin.stub.DescribeRegions(pb.DescribeRegionsRequest(provider="atlantis"), metadata=md),
                             grpc.StatusCode.NOT_FOUND, "InvalidRegion")
    assert "atlantis" in (err.details() or "")
    p = await place(twin.stub, md)
    err = await expect_error(twin.stub.DescribeSpecs(pb.DescribeSpecsRequest(provider=p.provider, region="xx-nowhere"),
                                                     metadata=md), grpc.StatusCode.NOT_FOUND, "InvalidRegion")
    assert "xx-nowhere" in (err.details() or "")
    await expect_error(twin.stub.ListResources(pb.ListResourcesRequest(provider=p.provider, region="xx-nowhere",
                                                                       kind=pb.VM), metadata=md),
                       grpc.StatusCode.NOT_FOUND, "InvalidRegion")


async def test_unauthenticated(twin: Twin) -> None:
    p = await place(twin.stub, new_account())
    await expect_error(twin.stub.ListResources(listing(p, pb.VM)), grpc.StatusCode.UNAUTHENTICATED,
                       "Unauthenticated")
    await expect_error(twin.stub.CreateResource(create(p, vpc=pb.VpcProps(cidr="10.0.0.0/16")),
                                                metadata=(("x-twin-access-key", "only-access"),)),
                       grpc.StatusCode.UNAUTHENTICATED, "Unauthenticated")
    await expect_error(twin.stub.DescribeImages(pb.DescribeImagesRequest(provider=p.provider, region=p.region),
                                                metadata=(("x-twin-access-key", "a"), ("x-twin-secret-key", ""))),
                       grpc.StatusCode.UNAUTHENTICATED, "Unauthenticated")


async def test_the_secret_of_an_account_is_checked(twin: Twin) -> None:
    # The first call fixes the account's secret; another secret with its access key is refused.
    md = new_account()
    access = md[0][1]
    p = await place(twin.stub, md)
    vpc = await twin.stub.CreateResource(create(p, vpc=pb.VpcProps(cidr="10.7.0.0/16")), metadata=md)
    wrong = (("x-twin-access-key", access), ("x-twin-secret-key", "guessed"))
    await expect_error(twin.stub.GetResource(get(p, pb.VPC, vpc.id), metadata=wrong),
                       grpc.StatusCode.UNAUTHENTICATED, "Unauthenticated")
    await expect_error(twin.stub.ListResources(listing(p, pb.VPC), metadata=wrong),
                       grpc.StatusCode.UNAUTHENTICATED, "Unauthenticated")
    await expect_error(twin.stub.DescribeSpecs(pb.DescribeSpecsRequest(provider=p.provider, region=p.region),
                                               metadata=wrong), grpc.StatusCode.UNAUTHENTICATED, "Unauthenticated")
    assert (await twin.stub.GetResource(get(p, pb.VPC, vpc.id), metadata=md)).id == vpc.id


async def test_accounts_are_isolated(twin: Twin) -> None:
    alice, bob = new_account(), new_account()
    p = await place(twin.stub, alice)
    vpc = await twin.stub.CreateResource(create(p, vpc=pb.VpcProps(cidr="10.9.0.0/16")), metadata=alice)
    assert vpc.account == alice[0][1]
    await expect_error(twin.stub.GetResource(get(p, pb.VPC, vpc.id), metadata=bob),
                       grpc.StatusCode.NOT_FOUND, "ResourceNotFound")
    await expect_error(twin.stub.DeleteResource(delete(p, pb.VPC, vpc.id), metadata=bob),
                       grpc.StatusCode.NOT_FOUND, "ResourceNotFound")
    assert not (await twin.stub.ListResources(listing(p, pb.VPC), metadata=bob)).resources
    assert [r.id for r in (await twin.stub.ListResources(listing(p, pb.VPC), metadata=alice)).resources] == [vpc.id]
    # Bob cannot build on Alice's VPC either.
    await expect_error(twin.stub.CreateResource(create(p, subnet=pb.SubnetProps(vpc_id=vpc.id, cidr="10.9.1.0/24")),
                                                metadata=bob), grpc.StatusCode.NOT_FOUND, "ResourceNotFound")


# -- networks, security groups, keys ---------------------------------------------------------


async def test_vpc_subnet_security_group(twin: Twin) -> None:
    md = new_account()
    p = await place(twin.stub, md)
    vpc = await twin.stub.CreateResource(create(p, name="v", vpc=pb.VpcProps(cidr="10.2.0.0/16")), metadata=md)
    assert vpc.id.startswith("vpc-") and vpc.state == "pending" and vpc.next_state == "available"
    assert abs(seconds(vpc.next_state_time) - seconds(vpc.create_time) - LATENCY) < 1e-3
    await wait_state(twin.stub, md, get(p, pb.VPC, vpc.id), "available", timeout=LATENCY + 2)
    await expect_error(twin.stub.CreateResource(create(p, vpc=pb.VpcProps(cidr="10.2.0.1/16")), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameterValue")

    def subnet(cidr: str, zone: str = "") -> pb.CreateResourceRequest:
        return create(p, name="s", zone=zone, subnet=pb.SubnetProps(vpc_id=vpc.id, cidr=cidr))

    sub = await twin.stub.CreateResource(subnet("10.2.1.0/24", p.zones[1]), metadata=md)
    assert sub.id.startswith("subnet-") and sub.zone == p.zones[1] and sub.subnet.vpc_id == vpc.id
    await expect_error(twin.stub.CreateResource(subnet("10.3.1.0/24"), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameterValue")  # outside the VPC
    await expect_error(twin.stub.CreateResource(subnet("10.2.1.128/25"), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameterValue")  # overlaps
    await expect_error(twin.stub.CreateResource(subnet("10.2.2.0/24", "mars-a"), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameterValue")  # no such zone

    ssh = pb.Rule(direction="inbound", protocol="tcp", from_port=22, to_port=22, cidr="0.0.0.0/0")
    web = pb.Rule(direction="inbound", protocol="tcp", from_port=80, to_port=80, cidr="10.0.0.0/8")
    sg = await twin.stub.CreateResource(create(p, name="sg", security_group=pb.SecurityGroupProps(
        vpc_id=vpc.id, rules=[ssh])), metadata=md)
    assert sg.id.startswith("sg-") and len(sg.security_group.rules) == 1
    sg = await twin.stub.ActOnResource(act(p, pb.SECURITY_GROUP, sg.id, "authorize", rules=[web, ssh]), metadata=md)
    assert [r.from_port for r in sg.security_group.rules] == [22, 80]
    sg = await twin.stub.ActOnResource(act(p, pb.SECURITY_GROUP, sg.id, "revoke", rules=[ssh]), metadata=md)
    assert [r.from_port for r in sg.security_group.rules] == [80]
    bad = pb.Rule(direction="sideways", protocol="tcp", from_port=1, to_port=2)
    await expect_error(twin.stub.ActOnResource(act(p, pb.SECURITY_GROUP, sg.id, "authorize", rules=[bad]),
                                               metadata=md), grpc.StatusCode.INVALID_ARGUMENT,
                       "InvalidParameterValue")

    named = await twin.stub.ListResources(listing(p, pb.SUBNET, name="s"), metadata=md)
    assert [r.id for r in named.resources] == [sub.id]
    assert not (await twin.stub.ListResources(listing(p, pb.SUBNET, name="other"), metadata=md)).resources

    # A VPC with a subnet or a security group in it cannot go.
    await expect_error(twin.stub.DeleteResource(delete(p, pb.VPC, vpc.id), metadata=md),
                       grpc.StatusCode.FAILED_PRECONDITION, "DependencyViolation")
    gone = await twin.stub.DeleteResource(delete(p, pb.SUBNET, sub.id), metadata=md)
    assert gone.state == "deleting"
    await twin.stub.DeleteResource(delete(p, pb.SECURITY_GROUP, sg.id), metadata=md)
    await twin.stub.DeleteResource(delete(p, pb.VPC, vpc.id), metadata=md)
    for kind, rid in ((pb.SUBNET, sub.id), (pb.SECURITY_GROUP, sg.id), (pb.VPC, vpc.id)):
        await wait_gone(twin.stub, md, get(p, kind, rid), timeout=LATENCY + 2)


async def test_key_pairs(twin: Twin) -> None:
    md = new_account()
    p = await place(twin.stub, md)
    made = await twin.stub.CreateResource(create(p, name="gen", key_pair=pb.KeyPairProps()), metadata=md)
    assert made.id.startswith("key-")
    assert made.key_pair.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert made.key_pair.public_key.startswith("ssh-ed25519 ") and made.key_pair.fingerprint.startswith("SHA256:")
    again = await twin.stub.GetResource(get(p, pb.KEY_PAIR, made.id), metadata=md)
    assert again.key_pair.private_key == "" and again.key_pair.public_key == made.key_pair.public_key

    imported = await twin.stub.CreateResource(create(p, name="imp", key_pair=pb.KeyPairProps(
        public_key=made.key_pair.public_key + " someone@laptop")), metadata=md)
    assert imported.key_pair.fingerprint == made.key_pair.fingerprint and not imported.key_pair.private_key
    await expect_error(twin.stub.CreateResource(create(p, key_pair=pb.KeyPairProps(public_key="ssh-rsa AAAAnope")),
                                                metadata=md), grpc.StatusCode.INVALID_ARGUMENT,
                       "InvalidParameterValue")
    await expect_error(twin.stub.ActOnResource(act(p, pb.KEY_PAIR, made.id, "rotate"), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameterValue")
    await twin.stub.DeleteResource(delete(p, pb.KEY_PAIR, imported.id), metadata=md)
    await wait_gone(twin.stub, md, get(p, pb.KEY_PAIR, imported.id), timeout=LATENCY + 2)


# -- VMs -----------------------------------------------------------------------------


async def test_vm_lifecycle_with_real_timing(twin: Twin) -> None:
    md = new_account()
    p = await place(twin.stub, md)
    net = await network(twin.stub, md, p)
    vm = await twin.stub.CreateResource(vm_request(p, net, name="web-1", tags={"app": "web"}), metadata=md)
    assert vm.id.startswith("i-") and vm.state == "creating" and vm.next_state == "running"
    assert vm.vm.vcpu == p.vcpu and vm.zone == p.zones[0] and vm.tags["app"] == "web"
    assert vm.vm.private_ip == vm.vm.public_ip and vm.vm.private_ip.startswith("127.")
    assert not vm.vm.private_ip.startswith("127.0.0.") and vm.vm.root_disk_gib >= 8
    assert abs(seconds(vm.next_state_time) - seconds(vm.create_time) - LATENCY) < 1e-3
    req = get(p, pb.VM, vm.id)
    await wait_state(twin.stub, md, req, "running", timeout=LATENCY + 2)
    assert time.time() >= seconds(vm.next_state_time) - 0.05

    await expect_error(twin.stub.ActOnResource(act(p, pb.VM, vm.id, "start"), metadata=md),
                       grpc.StatusCode.FAILED_PRECONDITION, "IncorrectState")
    await expect_error(twin.stub.ActOnResource(act(p, pb.VM, vm.id, "fly"), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameterValue")
    for action, via, to in (("stop", "stopping", "stopped"), ("start", "starting", "running"),
                            ("reboot", "rebooting", "running")):
        began = time.monotonic()
        moving = await twin.stub.ActOnResource(act(p, pb.VM, vm.id, action), metadata=md)
        assert (moving.state, moving.next_state) == (via, to)
        await wait_state(twin.stub, md, req, to, timeout=LATENCY + 2)
        assert time.monotonic() - began >= LATENCY - 0.05

    # The subnet and the security group stay while the VM lives.
    await expect_error(twin.stub.DeleteResource(delete(p, pb.SUBNET, net.subnet), metadata=md),
                       grpc.StatusCode.FAILED_PRECONDITION, "DependencyViolation")
    await expect_error(twin.stub.DeleteResource(delete(p, pb.SECURITY_GROUP, net.sg), metadata=md),
                       grpc.StatusCode.FAILED_PRECONDITION, "DependencyViolation")

    going = await twin.stub.DeleteResource(delete(p, pb.VM, vm.id), metadata=md)
    assert (going.state, going.next_state) == ("terminating", "terminated")
    await expect_error(twin.stub.ActOnResource(act(p, pb.VM, vm.id, "stop"), metadata=md),
                       grpc.StatusCode.FAILED_PRECONDITION, "IncorrectState")
    done = await wait_state(twin.stub, md, req, "terminated", timeout=LATENCY + 2)
    assert done.next_state == "deleted"
    again = await twin.stub.DeleteResource(delete(p, pb.VM, vm.id), metadata=md)
    assert again.state == "terminated"
    listed = (await twin.stub.ListResources(listing(p, pb.VM), metadata=md)).resources
    assert [(r.id, r.state) for r in listed] == [(vm.id, "terminated")]
    await twin.stub.DeleteResource(delete(p, pb.SUBNET, net.subnet), metadata=md)
    await wait_gone(twin.stub, md, req, timeout=RETENTION + 3)


async def test_vm_validation(twin: Twin) -> None:
    md = new_account()
    p = await place(twin.stub, md)
    net = await network(twin.stub, md, p)
    other = await network(twin.stub, md, p, cidr="10.7.0.0/16")
    cases: list[tuple[pb.VmProps, grpc.StatusCode, str]] = [
        (pb.VmProps(spec="z9.huge", image_id=p.image, subnet_id=net.subnet), grpc.StatusCode.INVALID_ARGUMENT,
         "InvalidInstanceType"),
        (pb.VmProps(spec=p.spec, image_id="img-missing", subnet_id=net.subnet), grpc.StatusCode.NOT_FOUND,
         "InvalidImageId.NotFound"),
        (pb.VmProps(spec=p.spec, image_id=p.arm_image, subnet_id=net.subnet), grpc.StatusCode.INVALID_ARGUMENT,
         "InvalidParameterValue"),
        (pb.VmProps(spec=p.spec, image_id=p.image, subnet_id="subnet-0000000000000000"),
         grpc.StatusCode.NOT_FOUND, "ResourceNotFound"),
        (pb.VmProps(spec=p.spec, image_id=p.image, subnet_id=net.subnet, security_group_ids=[other.sg]),
         grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameterValue"),
        (pb.VmProps(spec=p.spec, image_id=p.image, subnet_id=net.subnet, key_pair_id="key-0000000000000001"),
         grpc.StatusCode.NOT_FOUND, "ResourceNotFound"),
        (pb.VmProps(spec=p.spec, image_id=p.image, subnet_id=net.subnet, root_disk_gib=1),
         grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameterValue"),
    ]
    for props, code, cloud_code in cases:
        await expect_error(twin.stub.CreateResource(create(p, vm=props), metadata=md), code, cloud_code)
    await expect_error(twin.stub.CreateResource(create(p), metadata=md), grpc.StatusCode.INVALID_ARGUMENT,
                       "InvalidParameterValue")
    await expect_error(twin.stub.CreateResource(vm_request(p, net, zone=p.zones[1]), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameterValue")  # not the subnet's zone
    assert not (await twin.stub.ListResources(listing(p, pb.VM), metadata=md)).resources
    # Without a subnet, a VM joins the region's default network in the zone asked for.
    plain = await twin.stub.CreateResource(create(p, zone=p.zones[2], vm=pb.VmProps(spec=p.spec, image_id=p.image)),
                                           metadata=md)
    assert plain.zone == p.zones[2] and not plain.vm.subnet_id and plain.vm.private_ip.startswith("127.")


async def test_disks(twin: Twin) -> None:
    md = new_account()
    p = await place(twin.stub, md)
    net = await network(twin.stub, md, p)
    vm = await twin.stub.CreateResource(vm_request(p, net), metadata=md)
    disk = await twin.stub.CreateResource(create(p, name="data", zone=p.zones[0], disk=pb.DiskProps(size_gib=20)),
                                          metadata=md)
    assert disk.id.startswith("vol-") and disk.state == "pending" and disk.disk.disk_type == "standard"
    await expect_error(twin.stub.ActOnResource(act(p, pb.DISK, disk.id, "attach", target_id=vm.id), metadata=md),
                       grpc.StatusCode.FAILED_PRECONDITION, "IncorrectState")  # disk still pending
    await wait_state(twin.stub, md, get(p, pb.DISK, disk.id), "available", timeout=LATENCY + 2)
    await wait_state(twin.stub, md, get(p, pb.VM, vm.id), "running", timeout=LATENCY + 2)

    attached = await twin.stub.ActOnResource(act(p, pb.DISK, disk.id, "attach", target_id=vm.id), metadata=md)
    assert attached.state == "in-use" and attached.disk.attached_to == vm.id
    assert list((await twin.stub.GetResource(get(p, pb.VM, vm.id), metadata=md)).vm.disk_ids) == [disk.id]
    await expect_error(twin.stub.ActOnResource(act(p, pb.DISK, disk.id, "attach", target_id=vm.id), metadata=md),
                       grpc.StatusCode.FAILED_PRECONDITION, "VolumeInUse")
    await expect_error(twin.stub.DeleteResource(delete(p, pb.DISK, disk.id), metadata=md),
                       grpc.StatusCode.FAILED_PRECONDITION, "VolumeInUse")
    await expect_error(twin.stub.ActOnResource(act(p, pb.DISK, disk.id, "resize", size_gib=10), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameterValue")
    grown = await twin.stub.ActOnResource(act(p, pb.DISK, disk.id, "resize", size_gib=50), metadata=md)
    assert grown.disk.size_gib == 50 and grown.state == "in-use"

    await expect_error(twin.stub.ActOnResource(act(p, pb.DISK, disk.id, "detach", target_id="i-0000000000000000"),
                                               metadata=md), grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameterValue")
    detached = await twin.stub.ActOnResource(act(p, pb.DISK, disk.id, "detach", target_id=vm.id), metadata=md)
    assert detached.state == "available" and not detached.disk.attached_to
    assert not (await twin.stub.GetResource(get(p, pb.VM, vm.id), metadata=md)).vm.disk_ids
    await expect_error(twin.stub.ActOnResource(act(p, pb.DISK, disk.id, "detach"), metadata=md),
                       grpc.StatusCode.FAILED_PRECONDITION, "IncorrectState")

    # A disk in another zone cannot be attached; a terminated VM lets go of its disks.
    far = await twin.stub.CreateResource(create(p, zone=p.zones[2], disk=pb.DiskProps(size_gib=5, disk_type="ssd")),
                                         metadata=md)
    await wait_state(twin.stub, md, get(p, pb.DISK, far.id), "available", timeout=LATENCY + 2)
    await expect_error(twin.stub.ActOnResource(act(p, pb.DISK, far.id, "attach", target_id=vm.id), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameterValue")
    await twin.stub.ActOnResource(act(p, pb.DISK, disk.id, "attach", target_id=vm.id), metadata=md)
    await twin.stub.DeleteResource(delete(p, pb.VM, vm.id), metadata=md)
    assert (await twin.stub.GetResource(get(p, pb.DISK, disk.id), metadata=md)).state == "in-use"
    freed = await wait_state(twin.stub, md, get(p, pb.DISK, disk.id), "available", timeout=LATENCY + 2)
    assert not freed.disk.attached_to
    await twin.stub.DeleteResource(delete(p, pb.DISK, disk.id), metadata=md)
    await wait_gone(twin.stub, md, get(p, pb.DISK, disk.id), timeout=LATENCY + 2)


# -- create semantics ------------------------------------------------------------------


async def test_idempotent_create(twin: Twin) -> None:
    md = new_account()
    p = await place(twin.stub, md)
    net = await network(twin.stub, md, p)
    first = await twin.stub.CreateResource(vm_request(p, net, client_token="tok-1"), metadata=md)
    second = await twin.stub.CreateResource(vm_request(p, net, client_token="tok-1"), metadata=md)
    assert first.id == second.id and second.client_token == "tok-1"
    assert first.vm.private_ip == second.vm.private_ip
    assert len((await twin.stub.ListResources(listing(p, pb.VM), metadata=md)).resources) == 1
    await expect_error(twin.stub.CreateResource(create(p, client_token="tok-1", vpc=pb.VpcProps(cidr="10.0.0.0/16")),
                                                metadata=md), grpc.StatusCode.INVALID_ARGUMENT,
                       "IdempotentParameterMismatch")
    # The token is the account's own: another account's same token makes a new VM... in its own network.
    other = new_account()
    other_net = await network(twin.stub, other, p)
    theirs = await twin.stub.CreateResource(vm_request(p, other_net, client_token="tok-1"), metadata=other)
    assert theirs.id != first.id


async def test_lost_response_leaves_the_vm(twin: Twin) -> None:
    md = new_account()
    p = await place(twin.stub, md, index=1)
    net = await network(twin.stub, md, p)
    await set_knobs(twin.stub, p, create_latency=pb.Latency(median_s=3.0))
    try:
        # The client gives up (deadline) mid-call: the VM exists anyway.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await twin.stub.CreateResource(vm_request(p, net, name="lost", client_token="lost-1"), metadata=md,
                                           timeout=0.5)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # The client dies (cancelled) mid-call: the VM exists anyway.
        call = asyncio.ensure_future(twin.stub.CreateResource(vm_request(p, net, name="cancelled"), metadata=md))
        await asyncio.sleep(0.5)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        listed = (await twin.stub.ListResources(listing(p, pb.VM), metadata=md)).resources
        assert sorted(r.name for r in listed) == ["cancelled", "lost"]
        assert all(r.state == "creating" for r in listed)
        # Retrying with the same token finds the VM at once instead of making another.
        began = time.monotonic()
        again = await twin.stub.CreateResource(vm_request(p, net, name="lost", client_token="lost-1"), metadata=md)
        assert time.monotonic() - began < 1.0
        assert again.id == next(r.id for r in listed if r.name == "lost")
    finally:
        await set_knobs(twin.stub, p, create_latency=pb.Latency(median_s=0.0))
    # The create latency counts before the boot: running after 3 s + boot latency.
    await wait_state(twin.stub, md, get(p, pb.VM, again.id), "running", timeout=3.0 + LATENCY + 3)


async def test_quotas(twin: Twin) -> None:
    md = new_account()
    p = await place(twin.stub, md, index=2)
    net = await network(twin.stub, md, p)
    await set_knobs(twin.stub, p, quota_vms=2)
    try:
        a = await twin.stub.CreateResource(vm_request(p, net, name="a"), metadata=md)
        await twin.stub.CreateResource(vm_request(p, net, name="b"), metadata=md)
        err = await expect_error(twin.stub.CreateResource(vm_request(p, net, name="c"), metadata=md),
                                 grpc.StatusCode.RESOURCE_EXHAUSTED, "InstanceLimitExceeded")
        assert "2" in (err.details() or "")
        # Another account has a quota of its own.
        other = new_account()
        other_net = await network(twin.stub, other, p)
        await twin.stub.CreateResource(vm_request(p, other_net), metadata=other)
        # Terminating a VM frees its share.
        await twin.stub.DeleteResource(delete(p, pb.VM, a.id), metadata=md)
        await twin.stub.CreateResource(vm_request(p, net, name="c"), metadata=md)

        await set_knobs(twin.stub, p, quota_vms=0, quota_vcpus=p.vcpu * 3)
        await twin.stub.CreateResource(vm_request(p, net, name="d"), metadata=md)
        await expect_error(twin.stub.CreateResource(vm_request(p, net, name="e"), metadata=md),
                           grpc.StatusCode.RESOURCE_EXHAUSTED, "VcpuLimitExceeded")
    finally:
        await set_knobs(twin.stub, p, quota_vms=0, quota_vcpus=0)


async def test_throttling(twin: Twin) -> None:
    md = new_account()
    p = await place(twin.stub, md, index=3)
    await set_knobs(twin.stub, p, api_rate=2.0, api_burst=3)
    try:
        results = await asyncio.gather(*(twin.stub.ListResources(listing(p, pb.VPC), metadata=md)
                                         for _ in range(10)), return_exceptions=True)
        throttled = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert 5 <= len(throttled) <= 7, results
        for err in throttled:
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert dict(err.trailing_metadata() or ()).get("x-twin-error-code") == "RequestLimitExceeded"
        await expect_error(twin.stub.GetResource(get(p, pb.VPC, "vpc-0000000000000001"), metadata=md),
                           grpc.StatusCode.RESOURCE_EXHAUSTED, "RequestLimitExceeded")
        # Tokens come back at the configured rate; the catalog is not throttled.
        await twin.stub.DescribeSpecs(pb.DescribeSpecsRequest(provider=p.provider, region=p.region), metadata=md)
        await asyncio.sleep(0.6)
        await twin.stub.ListResources(listing(p, pb.VPC), metadata=md)
    finally:
        await set_knobs(twin.stub, p, api_rate=0.0, api_burst=0)
    await asyncio.gather(*(twin.stub.ListResources(listing(p, pb.VPC), metadata=md) for _ in range(20)))


async def test_injected_failures(twin: Twin) -> None:
    md = new_account()
    p = await place(twin.stub, md, index=4)
    net = await network(twin.stub, md, p)
    await set_knobs(twin.stub, p, failure_rate=1.0, create_latency=pb.Latency(median_s=0.2))
    try:
        began = time.monotonic()
        err = await expect_error(twin.stub.CreateResource(vm_request(p, net, client_token="f-1"), metadata=md),
                                 grpc.StatusCode.UNAVAILABLE, "InsufficientInstanceCapacity")
        assert time.monotonic() - began >= 0.15  # after the create latency
        assert p.spec in (err.details() or "")
        assert not (await twin.stub.ListResources(listing(p, pb.VM), metadata=md)).resources
    finally:
        await set_knobs(twin.stub, p, failure_rate=0.0, create_latency=pb.Latency(median_s=0.0))
    # Nothing was recorded under the token, so the retry makes the VM.
    made = await twin.stub.CreateResource(vm_request(p, net, client_token="f-1"), metadata=md)
    assert made.state == "creating"


async def test_pagination(twin: Twin) -> None:
    md = new_account()
    p = await place(twin.stub, md)
    made = [await twin.stub.CreateResource(create(p, name=f"k{i % 2}", key_pair=pb.KeyPairProps()), metadata=md)
            for i in range(25)]
    seen, token, pages = [], "", 0
    while True:
        page = await twin.stub.ListResources(listing(p, pb.KEY_PAIR, page_size=10, page_token=token), metadata=md)
        seen += [r.id for r in page.resources]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == [r.id for r in made] and pages == 3
    evens = await twin.stub.ListResources(listing(p, pb.KEY_PAIR, name="k0", page_size=5), metadata=md)
    assert [r.id for r in evens.resources] == [r.id for r in made[0:10:2]] and evens.next_page_token
    rest = await twin.stub.ListResources(listing(p, pb.KEY_PAIR, name="k0", page_size=50,
                                                 page_token=evens.next_page_token), metadata=md)
    assert [r.id for r in rest.resources] == [r.id for r in made[10::2]] and not rest.next_page_token
    await expect_error(twin.stub.ListResources(listing(p, pb.KEY_PAIR, page_token="garbage!"), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameterValue")
    await expect_error(twin.stub.ListResources(listing(p, pb.VM, page_token=evens.next_page_token), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameterValue")
    await expect_error(twin.stub.ListResources(listing(p, pb.KIND_UNSPECIFIED), metadata=md),
                       grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameterValue")


async def test_knobs_admin(twin: Twin) -> None:
    defaults = await twin.stub.GetKnobs(pb.GetKnobsRequest())
    assert defaults.boot_latency.median_s == LATENCY and defaults.quota_vms == 0
    providers = (await twin.stub.ListProviders(pb.ListProvidersRequest())).providers
    prov = providers[0]
    changed = await twin.stub.SetKnobs(pb.SetKnobsRequest(provider=prov.name, knobs=pb.Knobs(quota_vcpus=512)))
    assert changed.regions_changed == len(prov.regions)
    one = await twin.stub.GetKnobs(pb.GetKnobsRequest(provider=prov.name, region=prov.regions[-1]))
    assert one.quota_vcpus == 512 and one.boot_latency.median_s == LATENCY
    everywhere = await twin.stub.SetKnobs(pb.SetKnobsRequest(knobs=pb.Knobs(quota_vcpus=0)))
    assert everywhere.regions_changed == sum(len(p.regions) for p in providers)
    await expect_error(twin.stub.SetKnobs(pb.SetKnobsRequest(provider="atlantis", knobs=pb.Knobs(quota_vms=1))),
                       grpc.StatusCode.NOT_FOUND, "InvalidRegion")
    await expect_error(twin.stub.SetKnobs(pb.SetKnobsRequest(knobs=pb.Knobs(failure_rate=1.5))),
                       grpc.StatusCode.INVALID_ARGUMENT, "InvalidParameterValue")


async def test_stats(twin: Twin) -> None:
    stats = await twin.stub.GetStats(pb.GetStatsRequest())
    assert stats.providers == 5 and stats.regions == Catalog(42, 5).region_count()
    assert stats.resources_by_kind["VPC"] >= 1 and stats.vms_running >= 0


# -- persistence -----------------------------------------------------------------------


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "twin.state"
    env = {"CB_CLOUDTWIN_STATE_FILE": str(state_file), "CB_CLOUDTWIN_BOOT_LATENCY": "0.2",
           "CB_CLOUDTWIN_ACTION_LATENCY": "0.2", "CB_CLOUDTWIN_PROVIDERS": "3"}
    md = new_account()
    first = await start_twin(tmp_path, "twin-1", **env)
    try:
        p = await place(first.stub, md)
        net = await network(first.stub, md, p)
        vms = [await first.stub.CreateResource(vm_request(p, net, name=f"vm{i}", client_token=f"t{i}"), metadata=md)
               for i in range(3)]
        key = await first.stub.CreateResource(create(p, key_pair=pb.KeyPairProps()), metadata=md)
        await set_knobs(first.stub, p, quota_vms=9)
        await wait_state(first.stub, md, get(p, pb.VM, vms[-1].id), "running")
        stopped = await first.stub.ActOnResource(act(p, pb.VM, vms[0].id, "stop"), metadata=md)
        assert stopped.state == "stopping"
    finally:
        await first.close()  # SIGTERM: a graceful stop saves the state
    assert state_file.exists() and not first.proc.alive()
    # It holds user-data (agent seeds) and secret digests: owner only.
    assert state_file.stat().st_mode & 0o777 == 0o600

    second = await start_twin(tmp_path, "twin-2", **env)
    try:
        for vm in vms:
            back = await second.stub.GetResource(get(p, pb.VM, vm.id), metadata=md)
            assert back.vm.private_ip == vm.vm.private_ip and back.name == vm.name
        # The stop begun before the restart completes after it, on the original schedule.
        await wait_state(second.stub, md, get(p, pb.VM, vms[0].id), "stopped")
        kept = await second.stub.GetResource(get(p, pb.KEY_PAIR, key.id), metadata=md)
        assert kept.key_pair.public_key == key.key_pair.public_key and not kept.key_pair.private_key
        assert (await second.stub.GetKnobs(pb.GetKnobsRequest(provider=p.provider, region=p.region))).quota_vms == 9
        # The account's secret was kept: a restart is no chance to claim it with another.
        await expect_error(second.stub.GetResource(get(p, pb.VM, vms[0].id), metadata=(
            ("x-twin-access-key", md[0][1]), ("x-twin-secret-key", "claimed-after-restart"))),
            grpc.StatusCode.UNAUTHENTICATED, "Unauthenticated")
        # Tokens, IDs and addresses carry on without reuse.
        same = await second.stub.CreateResource(vm_request(p, net, name="vm0", client_token="t0"), metadata=md)
        assert same.id == vms[0].id
        fresh = await second.stub.CreateResource(vm_request(p, net, name="new"), metadata=md)
        assert fresh.id not in {v.id for v in vms}
        assert fresh.vm.private_ip not in {v.vm.private_ip for v in vms}
        listed = await second.stub.ListResources(listing(p, pb.VM), metadata=md)
        assert [r.id for r in listed.resources] == [*(v.id for v in vms), fresh.id]
        # A crash loses at most the last second: the housekeeper saved in the background.
        await asyncio.sleep(1.5)
        second.proc.kill()
    finally:
        await second.close()

    third = await start_twin(tmp_path, "twin-3", **env)
    try:
        back = await third.stub.GetResource(get(p, pb.VM, fresh.id), metadata=md)
        assert back.vm.private_ip == fresh.vm.private_ip
    finally:
        await third.close()


async def test_start_overrides_from_knobs_json(tmp_path: Path) -> None:
    catalog = Catalog(5, 2)
    prov = next(iter(catalog.providers.values()))
    region = next(iter(prov.regions))
    overrides = (f'[{{"provider": "{prov.name}", "region": "{region}", '
                 '"knobs": {"quota_vms": 3, "create_latency": {"median_s": 0.25, "sigma": 0.1}}}]')
    t = await start_twin(tmp_path, CB_CLOUDTWIN_SEED="5", CB_CLOUDTWIN_PROVIDERS="2",
                         CB_CLOUDTWIN_KNOBS_JSON=overrides, CB_CLOUDTWIN_FAILURE_RATE="0.5")
    try:
        there = await t.stub.GetKnobs(pb.GetKnobsRequest(provider=prov.name, region=region))
        assert there.quota_vms == 3 and there.create_latency.median_s == 0.25 and there.failure_rate == 0.5
        other = list(prov.regions)[1]
        elsewhere = await t.stub.GetKnobs(pb.GetKnobsRequest(provider=prov.name, region=other))
        assert elsewhere.quota_vms == 0 and elsewhere.create_latency.median_s == 0.0
    finally:
        await t.close()


# -- scale -----------------------------------------------------------------------------


@pytest.mark.slow
async def test_hundred_providers_with_hundred_vms_each(tmp_path: Path) -> None:
    t = await start_twin(tmp_path, CB_CLOUDTWIN_PROVIDERS="100", CB_CLOUDTWIN_BOOT_LATENCY="1.0",
                         CB_LOG_LEVEL="WARNING")
    md = new_account()
    try:
        providers = (await t.stub.ListProviders(pb.ListProvidersRequest())).providers
        assert len(providers) == 100
        began = time.monotonic()
        places = await asyncio.gather(*(place(t.stub, md, i) for i in range(100)))
        nets = await asyncio.gather(*(network(t.stub, md, p) for p in places))
        gate = asyncio.Semaphore(64)

        async def one(p: Place, net: Net, i: int) -> None:
            async with gate:
                await t.stub.CreateResource(vm_request(p, net, name=f"vm-{i}", client_token=f"{p.provider}-{i}"),
                                            metadata=md)

        await asyncio.gather(*(one(p, net, i) for p, net in zip(places, nets, strict=True) for i in range(100)))
        created = time.monotonic() - began
        print(f"\n10,000 VMs (+ 300 catalog calls, 300 network resources) created in {created:.1f} s")
        assert created < 60

        stats = await t.stub.GetStats(pb.GetStatsRequest())
        assert stats.resources_by_kind["VM"] == 10_000

        began = time.monotonic()
        page = await t.stub.ListResources(listing(places[42], pb.VM), metadata=md)
        one_page = time.monotonic() - began
        assert len(page.resources) == 100 and not page.next_page_token
        ips = {r.vm.private_ip for r in page.resources}
        assert len(ips) == 100

        began = time.monotonic()
        seen, token = 0, ""
        while True:
            chunk = await t.stub.ListResources(listing(places[7], pb.VM, page_size=30, page_token=token), metadata=md)
            seen += len(chunk.resources)
            token = chunk.next_page_token
            if not token:
                break
        paged = time.monotonic() - began
        print(f"list one region: {one_page * 1e3:.1f} ms; paging 100 VMs by 30: {paged * 1e3:.1f} ms")
        assert seen == 100 and one_page < 1.0 and paged < 2.0

        await asyncio.sleep(1.1)
        stats = await t.stub.GetStats(pb.GetStatsRequest())
        assert stats.vms_running == 10_000
    finally:
        await t.close()
