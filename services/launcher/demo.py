"""The demo clouds: CloudTwin providers and regions registered as spider connections."""

from __future__ import annotations

import grpc

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as tw_grpc
from cbapi.spider.v1 import spider_pb2 as pb
from cbapi.spider.v1 import spider_pb2_grpc


async def _create(call: object, request: object) -> None:
    try:
        await call(request)  # type: ignore[operator]
    except grpc.aio.AioRpcError as err:
        if err.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise


async def register(spider_addr: str, twin_addr: str, providers: int = 3, regions: int = 3) -> list[str]:
    """Register `providers` × up to `regions` twin regions as connections; returns their names.

    Safe to run again: what exists already is left as it is."""
    async with grpc.aio.insecure_channel(twin_addr) as ch:
        catalog = await tw_grpc.CloudTwinStub(ch).ListProviders(tw.ListProvidersRequest())
    names: list[str] = []
    async with grpc.aio.insecure_channel(spider_addr) as ch:
        spider = spider_pb2_grpc.SpiderStub(ch)
        for provider in list(catalog.providers)[:providers]:
            cred = f"{provider.name}-demo"
            await _create(spider.CreateCredential, pb.CreateCredentialRequest(credential=pb.Credential(
                name=cred, driver="mock", values={"access_key": "demo", "secret_key": "demo-secret"})))
            for region in list(provider.regions)[:regions]:
                name = f"{provider.name}-{region}"
                await _create(spider.CreateRegion, pb.CreateRegionRequest(region=pb.Region(
                    name=name, driver="mock", region=region,
                    settings={"endpoint": twin_addr, "provider": provider.name})))
                await _create(spider.CreateConnection, pb.CreateConnectionRequest(connection=pb.Connection(
                    name=name, driver="mock", credential=cred, region=name)))
                names.append(name)
    return names
