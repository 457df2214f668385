"""Catalog handlers: images, specs, regions and zones, prices."""

from __future__ import annotations

import grpc

from cbapi.spider.v1 import spider_pb2 as pb
from cbapi.spider.v1 import spider_pb2_grpc
from tests.helpers import expect_error
from tests.integration.conformance.conftest import need
from tests.integration.conformance.targets import Target


async def test_images_are_listed_filtered_and_paged(spider_client: spider_pb2_grpc.SpiderStub, target: Target) -> None:
    need(target, "images")
    every = (await spider_client.ListImages(pb.ListImagesRequest(connection=target.connection, page_size=1000))).images
    assert every and all(i.name and i.architecture for i in every)
    first = await spider_client.ListImages(pb.ListImagesRequest(connection=target.connection, page_size=2))
    assert len(first.images) == min(2, len(every))
    if len(every) > 2:
        assert first.next_page_token
        second = await spider_client.ListImages(pb.ListImagesRequest(connection=target.connection, page_size=2,
                                                            page_token=first.next_page_token))
        assert {i.name for i in second.images}.isdisjoint({i.name for i in first.images})
    os_word = every[0].os.split()[0].lower() if every[0].os else every[0].name[:3]
    filtered = await spider_client.ListImages(pb.ListImagesRequest(connection=target.connection, filter=os_word,
                                                          page_size=1000))
    assert filtered.images and len(filtered.images) <= len(every)
    got = await spider_client.GetImage(pb.GetImageRequest(connection=target.connection, name=target.image))
    assert got.name == target.image
    await expect_error(grpc.StatusCode.NOT_FOUND,
                       spider_client.GetImage(pb.GetImageRequest(connection=target.connection, name="no-such-image")))


async def test_specs_and_prices(spider_client: spider_pb2_grpc.SpiderStub, target: Target) -> None:
    need(target, "specs")
    specs = (await spider_client.ListSpecs(pb.ListSpecsRequest(connection=target.connection, page_size=1000))).specs
    assert specs and all(s.vcpu > 0 and s.memory_gib > 0 for s in specs)
    got = await spider_client.GetSpec(pb.GetSpecRequest(connection=target.connection, name=target.spec))
    assert got.name == target.spec
    await expect_error(grpc.StatusCode.NOT_FOUND,
                       spider_client.GetSpec(pb.GetSpecRequest(connection=target.connection, name="no-such-spec")))
    need(target, "prices")
    prices = (await spider_client.ListPrices(pb.ListPricesRequest(connection=target.connection, page_size=1000))).prices
    assert {p.spec for p in prices} >= {target.spec}
    assert all(p.price_per_hour > 0 and p.currency for p in prices)


async def test_region_zones(spider_client: spider_pb2_grpc.SpiderStub, target: Target) -> None:
    need(target, "region_zones")
    zones = (await spider_client.ListRegionZones(pb.ListRegionZonesRequest(connection=target.connection))).region_zones
    assert zones and all(rz.region for rz in zones)


async def test_unknown_connection_is_not_found(spider_client: spider_pb2_grpc.SpiderStub, target: Target) -> None:
    await expect_error(grpc.StatusCode.NOT_FOUND, spider_client.ListSpecs(pb.ListSpecsRequest(connection="no-such-conn")))
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, spider_client.ListSpecs(pb.ListSpecsRequest()), "connection")
