"""Spider beyond the driver contract: the registry, secrets, protection of the cloud."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest_asyncio

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as tw_grpc
from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from cbapi.spider.v1 import spider_pb2_grpc
from services.rpc.client import channel
from services.store import Store
from tests import servers
from tests.helpers import expect_error


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest_asyncio.fixture(loop_scope="session")
async def twin_admin(cloudtwin_process: servers.Server) -> AsyncIterator[tw_grpc.CloudTwinStub]:
    async with channel(cloudtwin_process.address) as ch:
        yield tw_grpc.CloudTwinStub(ch)


async def _fault_region(cloudtwin: servers.Server) -> tuple[str, str]:
    """A region used only by the fault tests (knobs are per region)."""
    return (await servers.twin_regions(cloudtwin))[-1]


async def test_drivers_are_listed_with_capabilities(spider_client: spider_pb2_grpc.SpiderStub) -> None:
    drivers = {d.name: d for d in (await spider_client.ListDrivers(pb.ListDriversRequest())).drivers}
    assert drivers["mock"].available and drivers["mock"].capabilities.vm
    assert list(drivers["mock"].credential_keys) == ["access_key", "secret_key"]


async def test_credentials_are_sealed_and_never_returned(spider_client: spider_pb2_grpc.SpiderStub,
                                                         etcd_process: servers.Server) -> None:
    name, secret = _name("cred"), f"very-secret-{uuid.uuid4().hex}"
    made = await spider_client.CreateCredential(pb.CreateCredentialRequest(credential=pb.Credential(
        name=name, driver="mock", values={"access_key": "ak", "secret_key": secret})))
    assert not made.values and list(made.keys) == ["access_key", "secret_key"]
    got = await spider_client.GetCredential(pb.GetCredentialRequest(name=name))
    assert not got.values
    listed = await spider_client.ListCredentials(pb.ListCredentialsRequest(page_size=1000))
    assert all(not c.values for c in listed.credentials)
    store = Store("127.0.0.1", etcd_process.port)
    raw = await store.get(f"/cb/spider/credentials/{name}", pb.CredentialRecord)
    assert raw is not None and secret.encode() not in raw.value.SerializeToString()
    await store.close()
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, spider_client.CreateCredential(pb.CreateCredentialRequest(
        credential=pb.Credential(name=_name("cred"), driver="mock", values={"access_key": "x"}))),
        "credential.values.secret_key")
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, spider_client.CreateCredential(pb.CreateCredentialRequest(
        credential=pb.Credential(name=_name("cred"), driver="warp-drive"))), "driver")
    await expect_error(grpc.StatusCode.ALREADY_EXISTS, spider_client.CreateCredential(pb.CreateCredentialRequest(
        credential=pb.Credential(name=name, driver="mock", values={"access_key": "a", "secret_key": "b"}))))
    await spider_client.DeleteCredential(pb.DeleteCredentialRequest(name=name))
    await expect_error(grpc.StatusCode.NOT_FOUND, spider_client.GetCredential(pb.GetCredentialRequest(name=name)))


async def test_secret_is_not_in_the_logs(spider_client: spider_pb2_grpc.SpiderStub, spider_process: servers.Server) -> None:
    secret = f"never-log-{uuid.uuid4().hex}"
    await spider_client.CreateCredential(pb.CreateCredentialRequest(credential=pb.Credential(
        name=_name("cred"), driver="mock", values={"access_key": "ak", "secret_key": secret})))
    assert secret not in spider_process.proc.log_path.read_text()


async def test_connection_checks_its_parts(spider_client: spider_pb2_grpc.SpiderStub,
                                           cloudtwin_process: servers.Server) -> None:
    provider, region = (await servers.twin_regions(cloudtwin_process))[0]
    conn = await servers.make_connection(spider_client, cloudtwin_process, provider, region)
    got = await spider_client.GetConnection(pb.GetConnectionRequest(name=conn.name))
    assert got.provider == provider and got.cloud_region == region
    await expect_error(grpc.StatusCode.NOT_FOUND, spider_client.CreateConnection(pb.CreateConnectionRequest(
        connection=pb.Connection(name=_name("c"), driver="mock", credential="no-such-cred", region="no-such-region"))))
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, spider_client.CreateConnection(pb.CreateConnectionRequest(
        connection=pb.Connection(name="UPPER", driver="mock", credential="x", region="y"))), "connection.name")
    bad_region = _name("reg")
    await spider_client.CreateRegion(pb.CreateRegionRequest(region=pb.Region(
        name=bad_region, driver="mock", region="atlantis-1", settings={"endpoint": cloudtwin_process.address,
                                                                        "provider": provider})))
    cred = (await spider_client.GetConnection(pb.GetConnectionRequest(name=conn.name))).credential
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, spider_client.CreateConnection(pb.CreateConnectionRequest(
        connection=pb.Connection(name=_name("c"), driver="mock", credential=cred, region=bad_region))))
    # In use: refused; a connection with resources: refused unless forced.
    await expect_error(grpc.StatusCode.FAILED_PRECONDITION,
                       spider_client.DeleteCredential(pb.DeleteCredentialRequest(name=cred)))
    await spider_client.CreateKeyPair(pb.CreateKeyPairRequest(connection=conn.name, key_pair=pb.KeyPair(
        iid=common.IID(name="kp"))))
    await expect_error(grpc.StatusCode.FAILED_PRECONDITION, spider_client.DeleteConnection(pb.DeleteConnectionRequest(
        name=conn.name)))
    await spider_client.DeleteKeyPair(pb.DeleteResourceRequest(connection=conn.name, name="kp"))
    await spider_client.DeleteConnection(pb.DeleteConnectionRequest(name=conn.name))
    await expect_error(grpc.StatusCode.NOT_FOUND, spider_client.GetConnection(pb.GetConnectionRequest(name=conn.name)))


async def test_connections_page(spider_client: spider_pb2_grpc.SpiderStub, cloudtwin_process: servers.Server) -> None:
    provider, region = (await servers.twin_regions(cloudtwin_process))[0]
    for _ in range(3):
        await servers.make_connection(spider_client, cloudtwin_process, provider, region)
    names: list[str] = []
    token = ""
    while True:
        page = await spider_client.ListConnections(pb.ListConnectionsRequest(page_size=2, page_token=token))
        assert len(page.connections) <= 2
        names += [c.name for c in page.connections]
        token = page.next_page_token
        if not token:
            break
    assert len(names) == len(set(names)) >= 3
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT,
                       spider_client.ListConnections(pb.ListConnectionsRequest(page_size=-1)),
                       "page_size")
    # Another list's token does not open another part of the store.
    await expect_error(grpc.StatusCode.INVALID_ARGUMENT, spider_client.ListRegions(pb.ListRegionsRequest(
        page_token="/cb/spider/credentials/x")), "page_token")


async def test_quota_is_resource_exhausted(spider_client: spider_pb2_grpc.SpiderStub, cloudtwin_process: servers.Server,
                                           twin_admin: tw_grpc.CloudTwinStub) -> None:
    provider, region = await _fault_region(cloudtwin_process)
    conn = await servers.make_connection(spider_client, cloudtwin_process, provider, region)
    spec = (await spider_client.ListSpecs(pb.ListSpecsRequest(connection=conn.name))).specs[0].name
    image = (await spider_client.ListImages(pb.ListImagesRequest(connection=conn.name))).images[0].name
    await twin_admin.SetKnobs(tw.SetKnobsRequest(provider=provider, region=region, knobs=tw.Knobs(quota_vms=1)))
    try:
        await spider_client.CreateVm(pb.CreateVmRequest(connection=conn.name, vm=pb.Vm(
            iid=common.IID(name="first"), image=image, spec=spec)))
        err = await expect_error(grpc.StatusCode.RESOURCE_EXHAUSTED, spider_client.CreateVm(pb.CreateVmRequest(
            connection=conn.name, vm=pb.Vm(iid=common.IID(name="second"), image=image, spec=spec))))
        assert "Limit" in (err.details() or "")
        await expect_error(grpc.StatusCode.NOT_FOUND, spider_client.GetVm(pb.GetResourceRequest(connection=conn.name,
                                                                                       name="second")))
    finally:
        await twin_admin.SetKnobs(tw.SetKnobsRequest(provider=provider, region=region, knobs=tw.Knobs(quota_vms=0)))
    await spider_client.DeleteVm(pb.DeleteResourceRequest(connection=conn.name, name="first"))


async def test_throttling_is_retried_until_it_succeeds(spider_client: spider_pb2_grpc.SpiderStub,
                                                       cloudtwin_process: servers.Server,
                                                       twin_admin: tw_grpc.CloudTwinStub) -> None:
    provider, region = await _fault_region(cloudtwin_process)
    conn = await servers.make_connection(spider_client, cloudtwin_process, provider, region)
    await twin_admin.SetKnobs(tw.SetKnobsRequest(provider=provider, region=region,
                                                 knobs=tw.Knobs(api_rate=10, api_burst=2)))
    try:
        names = [f"kp{i}" for i in range(12)]
        await asyncio.gather(*(spider_client.CreateKeyPair(pb.CreateKeyPairRequest(
            connection=conn.name, key_pair=pb.KeyPair(iid=common.IID(name=n)))) for n in names))
    finally:
        await twin_admin.SetKnobs(tw.SetKnobsRequest(provider=provider, region=region,
                                                     knobs=tw.Knobs(api_rate=0, api_burst=0)))
    listed = await spider_client.ListKeyPairs(pb.ListResourcesRequest(connection=conn.name))
    assert sorted(k.iid.name for k in listed.key_pairs) == sorted(names)
    log = await spider_client.ListCallLog(pb.ListCallLogRequest(connection=conn.name, page_size=1000))
    throttled = [e for e in log.entries if "RequestLimitExceeded" in e.error]
    assert throttled, "the twin should have throttled some calls"
    assert max(e.attempt for e in log.entries) > 1
