"""Bad input through the gateway and straight at the gRPC servers: a clear 4xx, never a 5xx, a false
rate limit, an UNKNOWN with a traceback, or a message that names an internal address.

Attack-style: real spider, tumblebug and gateway processes, with a real key.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio

from cbapi.spider.v1 import spider_pb2 as spb
from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services import errors, limits
from services import processes as procs
from services.rpc import client
from tests import servers
from tests.support.gateway import KEY, Gateway, start_gateway

TWO_MIB = 2 * 1024 * 1024


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gw(tmp_path_factory: pytest.TempPathFactory, spider_process: servers.Server,
             tumblebug_process: servers.Server) -> AsyncIterator[Gateway]:
    gateway = await start_gateway(tmp_path_factory.mktemp("gateway-bad-input"),
                                  {"spider": spider_process.address, "tumblebug": tumblebug_process.address},
                                  CB_GATEWAY_RATE_PER_SECOND="0")
    yield gateway
    gateway.proc.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def http(gw: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gw.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as c:
        yield c


def _violations(body: dict[str, Any]) -> list[dict[str, str]]:
    return [v for d in body.get("details", []) for v in d.get("fieldViolations", [])]


# ------------------------------------------------------------------ sizes


def _tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.mark.parametrize(("path", "body", "field", "limit"), [
    ("/tumblebug/v1/namespaces", lambda: {"name": f"ns-{_tag()}", "description": "d" * TWO_MIB},
     "namespace.description", "4 KiB"),
    ("/spider/v1/credentials", lambda: {"name": f"cred-{_tag()}", "driver": "mock",
                                        "values": {"access_key": "a", "secret_key": "s" * TWO_MIB}},
     "credential.values[secret_key]", "8 KiB"),
    ("/spider/v1/regions", lambda: {"name": f"reg-{_tag()}", "driver": "mock", "region": "r",
                                    "settings": {"endpoint": "e" * TWO_MIB}},
     "region.settings[endpoint]", "4 KiB"),
], ids=["namespace-description", "credential-secret", "region-setting"])
async def test_a_two_mib_value_is_refused_naming_the_field_and_the_limit(
        http: httpx.AsyncClient, path: str, body: Any, field: str, limit: str) -> None:
    response = await http.post(path, json=body())
    assert response.status_code == 400, response.text[:500]
    answer = response.json()
    assert field in answer["message"] and limit in answer["message"], answer["message"]
    assert [v["field"] for v in _violations(answer)] == [field]


async def test_a_record_over_the_store_limit_is_invalid_argument(etcd_process: servers.Server) -> None:
    # The last line: a write that passed every field limit but is too large as a whole.
    from services.store.etcd import Store
    store = Store.from_endpoints(etcd_process.address)
    await store.connect()
    try:
        record = pb.Namespace(name="big", description="x" * (limits.RECORD_MAX_BYTES + 1))
        with pytest.raises(errors.InvalidArgument) as caught:
            await store.put(f"/cb/test/limits/{_tag()}", record)
        assert "1 MiB" in caught.value.message
        with pytest.raises(errors.InvalidArgument):
            await store.create(f"/cb/test/limits/{_tag()}", record)
    finally:
        await store.close()


# ------------------------------------------------------------ echoed values


async def test_a_4000_character_name_is_a_400_not_a_rate_limit(http: httpx.AsyncClient) -> None:
    name = "a" * 4000
    for response in (await http.post("/tumblebug/v1/namespaces", json={"name": name}),
                     await http.get(f"/tumblebug/v1/namespaces/{name}"),
                     await http.get(f"/spider/v1/credentials/{name}")):
        assert response.status_code == 400, response.text[:300]
        assert len(response.json()["message"]) < 1100


async def test_an_echoed_value_is_cut_so_the_trailers_stay_small(spider_process: servers.Server) -> None:
    # A 12 KiB driver name is within the default field limit and is echoed in the error: it used to
    # travel whole in the trailers twice, over the client's 8 KiB, and come back RESOURCE_EXHAUSTED.
    async with client.channel(spider_process.address) as ch:
        stub = spider_pb2_grpc.SpiderStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateRegion(spb.CreateRegionRequest(region=spb.Region(
                name=f"reg-{_tag()}", driver="x" * 12_000, region="r")), timeout=10)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert len((caught.value.details() or "").encode()) <= errors.MAX_MESSAGE_BYTES


# ---------------------------------------------------------- undecodable bytes


@pytest.mark.parametrize("raw", [
    b"\xff\xfe\xfd garbage \x00\x01",
    b"\x0a\x03\xff\xfe\xfd",  # field 1 (a string) holding invalid UTF-8
    b"\x0b" * 200 + b"\x0c" * 200,  # groups nested 200 deep
], ids=["garbage", "invalid-utf8", "deep-nesting"])
async def test_undecodable_request_bytes_are_invalid_argument_without_a_traceback(
        spider_process: servers.Server, tumblebug_process: servers.Server, raw: bytes) -> None:
    for server, method in ((spider_process, "/cbapi.spider.v1.Spider/GetCredential"),
                           (tumblebug_process, "/cbapi.tumblebug.v1.Tumblebug/WatchMcis"),
                           (spider_process, "/grpc.health.v1.Health/Check")):
        before = server.proc.log_path.stat().st_size
        async with client.channel(server.address, request_ids=False) as ch:
            if method.endswith("Watch" + "Mcis"):
                call: Any = ch.unary_stream(method)(raw, timeout=10)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    async for _ in call:
                        pass
            else:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await ch.unary_unary(method)(raw, timeout=10)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, (method, caught.value.details())
        assert "not a valid" in (caught.value.details() or "")
        with server.proc.log_path.open("rb") as log:
            log.seek(before)
            assert b"Traceback" not in log.read()


# ------------------------------------------------------------------ catalog


async def test_a_catalog_page_token_belongs_to_its_list(tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                                        spider_client: spider_pb2_grpc.SpiderStub,
                                                        cloudtwin_process: servers.Server) -> None:
    conn = await servers.make_connection(spider_client, cloudtwin_process,
                                         *(await servers.twin_regions(cloudtwin_process))[0])
    specs = await tumblebug_client.ListCatalogSpecs(pb.ListCatalogSpecsRequest(connection=conn.name, page_size=1))
    assert specs.next_page_token
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tumblebug_client.ListCatalogImages(pb.ListCatalogImagesRequest(connection=conn.name,
                                                               page_token=specs.next_page_token))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in (caught.value.details() or "")
    # Other filters: refused too; the same list goes on.
    with pytest.raises(grpc.aio.AioRpcError):
        await tumblebug_client.ListCatalogSpecs(pb.ListCatalogSpecsRequest(vcpu_min=64, page_token=specs.next_page_token))
    more = await tumblebug_client.ListCatalogSpecs(pb.ListCatalogSpecsRequest(connection=conn.name, page_size=5,
                                                                page_token=specs.next_page_token))
    assert more.specs and more.specs[0].id != specs.specs[0].id


# ------------------------------------------------------------ who is blamed


async def test_an_unreachable_backend_is_named_without_its_address(tmp_path: Path) -> None:
    port = procs.free_port()
    gateway = await start_gateway(tmp_path, {"spider": f"127.0.0.1:{port}"})
    try:
        async with httpx.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {KEY}"},
                                     timeout=10) as c:
            response = await c.get("/spider/v1/drivers")
        assert response.status_code == 503
        message = response.json()["message"]
        assert "spider is unavailable" in message and "127.0.0.1" not in message and str(port) not in message
    finally:
        with contextlib.suppress(Exception):
            gateway.proc.stop()


async def test_a_cloud_that_does_not_answer_is_not_blamed_on_spider(http: httpx.AsyncClient,
                                                                   spider_client: spider_pb2_grpc.SpiderStub,
                                                                   cloudtwin_process: servers.Server) -> None:
    # A region whose endpoint nothing listens on: spider answers UNAVAILABLE, spider itself is fine.
    tag = _tag()
    dead = f"127.0.0.1:{procs.free_port()}"
    await spider_client.CreateCredential(spb.CreateCredentialRequest(credential=spb.Credential(
        name=f"cred-{tag}", driver="mock", values={"access_key": f"a-{tag}", "secret_key": "s"})))
    await spider_client.CreateRegion(spb.CreateRegionRequest(region=spb.Region(
        name=f"reg-{tag}", driver="mock", region="r", settings={"endpoint": dead, "provider": "aws"})))
    response = await http.post("/spider/v1/connections", json={
        "name": f"c-{tag}", "driver": "mock", "credential": f"cred-{tag}", "region": f"reg-{tag}",
        "limits": {"maxRetries": 1}})
    assert response.status_code == 503, response.text[:300]
    message = response.json()["message"]
    assert "spider is unavailable" not in message and "127.0.0.1" not in message, message


# ------------------------------------------------------------------- watches


async def test_the_watch_of_an_mcis_that_does_not_exist_is_404(http: httpx.AsyncClient) -> None:
    ns = f"ns-{_tag()}"
    assert (await http.post("/tumblebug/v1/namespaces", json={"name": ns})).status_code == 200
    response = await http.get(f"/tumblebug/v1/namespaces/{ns}/mcis/nothing-{_tag()}:watch")
    assert response.status_code == 404, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")


async def test_the_watch_of_a_vm_that_does_not_exist_is_404(http: httpx.AsyncClient,
                                                            spider_client: spider_pb2_grpc.SpiderStub,
                                                            cloudtwin_process: servers.Server) -> None:
    conn = await servers.make_connection(spider_client, cloudtwin_process,
                                         *(await servers.twin_regions(cloudtwin_process))[0])
    response = await http.get(f"/spider/v1/connections/{conn.name}/vms/nothing-{_tag()}:watch")
    assert response.status_code == 404, response.text[:300]


async def test_the_openapi_document_describes_watches_as_event_streams(http: httpx.AsyncClient) -> None:
    doc = (await http.get("/openapi.json")).json()
    watch = doc["paths"]["/tumblebug/v1/namespaces/{namespace}/mcis/{name}:watch"]["get"]["responses"]
    assert list(watch["200"]["content"]) == ["text/event-stream"]
    assert list(watch["404"]["content"]) == ["application/json"]
