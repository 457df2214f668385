"""Spider's unregister (forget one resource, leave it in the cloud) and an unreachable cloud."""

from __future__ import annotations

import uuid

import grpc
from google.rpc import error_details_pb2, status_pb2

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from cbapi.spider.v1 import spider_pb2_grpc
from services.errors import DETAILS_KEY
from services.processes import free_port
from tests import servers
from tests.helpers import expect_error, wait_disk_status, wait_vm_status


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def test_unregister_is_refused_while_another_record_names_it(spider_client: spider_pb2_grpc.SpiderStub,
                                                                   cloudtwin_process: servers.Server) -> None:
    provider, region = (await servers.twin_regions(cloudtwin_process))[0]
    c = (await servers.make_connection(spider_client, cloudtwin_process, provider, region)).name
    vpc, sg = _name("vpc"), _name("sg")
    await spider_client.CreateVpc(pb.CreateVpcRequest(connection=c, vpc=pb.Vpc(iid=common.IID(name=vpc),
                                                                      ipv4_cidr="10.0.0.0/16")))
    await spider_client.CreateSecurityGroup(pb.CreateSecurityGroupRequest(connection=c, security_group=pb.SecurityGroup(
        iid=common.IID(name=sg), vpc=vpc)))
    err = await expect_error(grpc.StatusCode.FAILED_PRECONDITION, spider_client.UnregisterResource(
        pb.UnregisterResourceRequest(connection=c, collection="vpcs", name=vpc)))
    assert sg in (err.details() or "")
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, spider_client.UnregisterResource(
        pb.UnregisterResourceRequest(connection=c, collection="widgets", name=vpc)), "collection")

    # A VM with a disk attached: the disk names the VM, so the VM stays until the disk lets go.
    specs = await spider_client.ListSpecs(pb.ListSpecsRequest(connection=c))
    images = await spider_client.ListImages(pb.ListImagesRequest(connection=c))
    spec = next(s.name for s in specs.specs if s.architecture == "x86_64")
    image = next(i.name for i in images.images if i.architecture == "x86_64")
    vm, disk = _name("vm"), _name("disk")
    await spider_client.CreateVm(pb.CreateVmRequest(connection=c, vm=pb.Vm(iid=common.IID(name=vm), image=image, spec=spec)))
    await wait_vm_status(spider_client, c, vm, common.RUNNING)
    await spider_client.CreateDisk(pb.CreateDiskRequest(connection=c, disk=pb.Disk(iid=common.IID(name=disk), size_gib=1)))
    await wait_disk_status(spider_client, c, disk, "available")
    await spider_client.AttachDisk(pb.AttachDiskRequest(connection=c, name=disk, vm=vm))
    await expect_error(grpc.StatusCode.FAILED_PRECONDITION, spider_client.UnregisterResource(
        pb.UnregisterResourceRequest(connection=c, collection="vms", name=vm)))
    gone = await spider_client.UnregisterResource(pb.UnregisterResourceRequest(connection=c, collection="disks", name=disk))
    assert gone.collection == "disks" and gone.iid.name == disk and gone.iid.csp_id
    forgotten = await spider_client.UnregisterResource(pb.UnregisterResourceRequest(connection=c, collection="vms", name=vm))
    listed = await spider_client.ListVms(pb.ListResourcesRequest(connection=c))
    assert vm not in {v.iid.name for v in listed.vms}
    # Still in the cloud: adopt it again under a new name and delete it for real.
    again = _name("vm")
    await spider_client.RegisterResource(pb.RegisterResourceRequest(connection=c, collection="vms", name=again,
                                                           csp_id=forgotten.iid.csp_id))
    assert (await spider_client.GetVm(pb.GetResourceRequest(connection=c, name=again))).status == common.RUNNING
    await spider_client.DeleteConnection(pb.DeleteConnectionRequest(name=c, force=True))


async def test_an_unreachable_cloud_is_not_spider_unavailable(spider_client: spider_pb2_grpc.SpiderStub) -> None:
    """A driver that gets no answer from its cloud: UNAVAILABLE blaming the cloud, without its address."""
    tag = uuid.uuid4().hex[:6]
    dead = f"127.0.0.1:{free_port()}"  # nothing listens here
    await spider_client.CreateCredential(pb.CreateCredentialRequest(credential=pb.Credential(
        name=f"cred-{tag}", driver="mock", values={"access_key": "ak", "secret_key": "sk"})))
    await spider_client.CreateRegion(pb.CreateRegionRequest(region=pb.Region(
        name=f"reg-{tag}", driver="mock", region="r1", settings={"endpoint": dead, "provider": "p1"})))
    err = await expect_error(grpc.StatusCode.UNAVAILABLE, spider_client.CreateConnection(pb.CreateConnectionRequest(
        connection=pb.Connection(name=f"c-{tag}", driver="mock", credential=f"cred-{tag}", region=f"reg-{tag}",
                                 limits=pb.ConnectionLimits(max_retries=1)))))
    message = err.details() or ""
    assert f"connection 'c-{tag}'" in message and "unreachable" in message
    assert "127.0.0.1" not in message and dead not in message
    status = status_pb2.Status.FromString(next(v for k, v in err.trailing_metadata() or () if k == DETAILS_KEY))
    infos = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append(info)
    assert [(i.reason, i.domain, i.metadata["connection"]) for i in infos] == [("CLOUD_UNREACHABLE", "spider",
                                                                               f"c-{tag}")]
