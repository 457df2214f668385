"""Requests a cloud could not carry out are refused up front, naming the field, before any
default resource is made: unknown images, another connection's spec or image, an unknown
subnet, an image for other processors than the spec's."""

from __future__ import annotations

import grpc

from cbapi.spider.v1 import spider_pb2 as spb
from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from tests import servers
from tests.helpers import expect_error
from tests.integration.tumblebug.helpers import cheapest_spec_and_image, connections, namespace


async def _made(tb: tumblebug_pb2_grpc.TumblebugStub, ns: str) -> list[str]:
    out = []
    for collection in ("vnets", "security-groups", "ssh-keys"):
        out += [r.name for r in (await tb.ListResources(pb.ListResourcesRequest(
            namespace=ns, collection=collection))).resources]
    return out


async def _image_of(stub: spider_pb2_grpc.SpiderStub, conn: str, architecture: str) -> str:
    images = (await stub.ListImages(spb.ListImagesRequest(connection=conn, page_size=1000))).images
    return next(i.name for i in images if i.architecture == architecture)


async def test_dynamic_subgroups_are_checked_before_defaults_are_made(tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                                                      spider_client: spider_pb2_grpc.SpiderStub,
                                                                      cloudtwin_process: servers.Server) -> None:
    ns = await namespace(tumblebug_client)
    conn = (await connections(spider_client, cloudtwin_process, 1))[0].name
    spec, image = await cheapest_spec_and_image(spider_client, conn)

    def request(image_id: str) -> pb.CreateMcisDynamicRequest:
        return pb.CreateMcisDynamicRequest(namespace=ns, name="web", install_agent=False, subgroups=[
            pb.DynamicSubgroup(name="a", spec_id=f"{conn}+{spec}", image_id=image, size=1),
            pb.DynamicSubgroup(name="b", spec_id=f"{conn}+{spec}", image_id=image_id, size=1)])

    err = await expect_error(grpc.StatusCode.NOT_FOUND, tumblebug_client.CreateMcisDynamic(request("no-such-image")))
    assert "subgroups[1].image_id" in (err.details() or "") and "no-such-image" in (err.details() or "")
    arm = await _image_of(spider_client, conn, "arm64")
    err = await expect_error(grpc.StatusCode.INVALID_ARGUMENT, tumblebug_client.CreateMcisDynamic(request(arm)),
                             field="subgroups[1].image_id")
    assert "arm64" in (err.details() or "") and "x86_64" in (err.details() or "")
    assert await _made(tumblebug_client, ns) == []  # no default vNet, security group or key for a refused request
    await expect_error(grpc.StatusCode.NOT_FOUND, tumblebug_client.GetMcis(pb.GetMcisRequest(namespace=ns, name="web")))


async def test_explicit_subgroup_names_only_what_its_connection_has(tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                                                    spider_client: spider_pb2_grpc.SpiderStub,
                                                                    cloudtwin_process: servers.Server) -> None:
    ns = await namespace(tumblebug_client)
    one, two = [c.name for c in await connections(spider_client, cloudtwin_process, 2)]
    for conn, suffix in ((one, "1"), (two, "2")):
        spec, image = await cheapest_spec_and_image(spider_client, conn)
        for collection, res in (
                ("specs", pb.Resource(name=f"spec{suffix}", connection=conn, spec_ref=pb.SpecRef(csp_spec=spec))),
                ("images", pb.Resource(name=f"os{suffix}", connection=conn, image_ref=pb.ImageRef(csp_image=image))),
                ("vnets", pb.Resource(name=f"net{suffix}", connection=conn, vnet=pb.VNet(
                    ipv4_cidr="10.5.0.0/16", subnets=[pb.Subnet(name="main", ipv4_cidr="10.5.1.0/24")])))):
            await tumblebug_client.CreateResource(pb.CreateResourceRequest(namespace=ns, collection=collection,
                                                                           resource=res))
    await tumblebug_client.CreateResource(pb.CreateResourceRequest(namespace=ns, collection="images", resource=pb.Resource(
        name="arm", connection=one, image_ref=pb.ImageRef(csp_image=await _image_of(spider_client, one, "arm64")))))

    def create(**fields: object) -> pb.CreateMcisRequest:
        group = dict(name="g", connection=one, spec="spec1", image="os1", vnet="net1", subnet="main", size=1)
        group.update(fields)
        return pb.CreateMcisRequest(namespace=ns, mcis=pb.Mcis(name="app", install_agent=False,
                                                                subgroups=[pb.Subgroup(**group)]))  # type: ignore[arg-type]

    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, tumblebug_client.CreateMcis(create(spec="spec2")),
                       field="mcis.subgroups[0].spec")
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, tumblebug_client.CreateMcis(create(image="os2")),
                       field="mcis.subgroups[0].image")
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, tumblebug_client.CreateMcis(create(image="arm")),
                       field="mcis.subgroups[0].image")
    err = await expect_error(grpc.StatusCode.NOT_FOUND, tumblebug_client.CreateMcis(create(subnet="nowhere")))
    assert "mcis.subgroups[0].subnet" in (err.details() or "") and "main" in (err.details() or "")
    await expect_error(grpc.StatusCode.NOT_FOUND, tumblebug_client.GetMcis(pb.GetMcisRequest(namespace=ns, name="app")))
