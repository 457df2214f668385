"""The REST gateway over HTTP only, as a real process in front of the session's spider and of a
test service (`test.library.v1.Library`) that it knows only from a setting.

Covers: the whole spider scenario, error mapping, authentication, rate limits, request IDs,
Server-Sent Events, CORS, the offline docs, the JSON access log, and a backend going down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from google.protobuf import any_pb2, json_format, message_factory
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services import processes as procs
from services.errors import DETAILS_KEY
from services.rpc.tls import server_credentials
from tests import servers
from tests.support.gateway import FLOOD_KEY, KEY, Gateway, start_gateway
from tests.support.gateway_library import SERVICE, library_pool

ORIGIN = "http://dashboard.test"


# ---------------------------------------------------------------- the library service


@dataclass
class Library:
    """A real gRPC server for test.library.v1.Library, with reflection from its own pool."""

    port: int
    server: grpc.aio.Server | None = None
    seen: list[dict[str, str]] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        pool = library_pool()
        service = pool.FindServiceByName(SERVICE)
        cls: dict[str, Any] = {m.name: message_factory.GetMessageClass(m) for m in (
            pool.FindMessageTypeByName(f"test.library.v1.{n}") for n in (
                "Book", "ListBooksResponse", "Everything"))}
        empty = message_factory.GetMessageClass(pool.FindMessageTypeByName("google.protobuf.Empty"))

        def note(context: grpc.aio.ServicerContext) -> None:
            self.seen.append({k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)})

        async def get_book(req: Any, context: grpc.aio.ServicerContext) -> Any:
            note(context)
            return cls["Book"](name=req.name, title="T", author={"name": "A", "born": 1900}, copies=7)

        async def list_books(req: Any, context: grpc.aio.ServicerContext) -> Any:
            note(context)
            return cls["ListBooksResponse"](books=[cls["Book"](name=req.parent, title=json_format.MessageToJson(
                req, indent=None))])

        async def create_book(req: Any, context: grpc.aio.ServicerContext) -> Any:
            book = cls["Book"]()
            book.CopyFrom(req.book)
            book.name = f"{req.parent}/books/{req.request_id or 'new'}"
            return book

        async def echo(req: Any, context: grpc.aio.ServicerContext) -> Any:
            return req

        async def delete_book(req: Any, context: grpc.aio.ServicerContext) -> Any:
            return empty()

        async def fail(req: Any, context: grpc.aio.ServicerContext) -> Any:
            code = grpc.StatusCode[req.code]
            status = status_pb2.Status(code=code.value[0], message=req.message)
            if req.field:
                packed = any_pb2.Any()
                packed.Pack(error_details_pb2.BadRequest(field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=req.field, description="bad")]))
                status.details.append(packed)
            await context.abort(code, req.message, trailing_metadata=((DETAILS_KEY, status.SerializeToString()),))

        async def watch(req: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            note(context)
            if req.parent == "shelves/slow":
                yield cls["Book"](name="first")
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    self.cancelled.set()
                    raise
                return
            for i in range(3):
                yield cls["Book"](name=f"{req.parent}/books/{i}")
                await asyncio.sleep(0.01)
                if req.parent == "shelves/fail":
                    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the shelf broke")

        handlers = {"GetBook": get_book, "GetAuthor": get_book, "ListBooks": list_books, "CreateBook": create_book,
                    "Echo": echo, "Fail": fail, "UpdateBook": create_book, "MoveBook": get_book,
                    "DeleteBook": delete_book}
        methods: dict[str, grpc.RpcMethodHandler] = {}
        for method in service.methods:
            inp = message_factory.GetMessageClass(method.input_type)
            if method.name == "WatchShelf":
                methods[method.name] = grpc.unary_stream_rpc_method_handler(
                    watch, request_deserializer=inp.FromString, response_serializer=_serialize)
            elif method.name in handlers:
                methods[method.name] = grpc.unary_unary_rpc_method_handler(
                    handlers[method.name], request_deserializer=inp.FromString, response_serializer=_serialize)
        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, methods),))
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), self.server)
        reflection.enable_server_reflection([SERVICE, reflection.SERVICE_NAME], self.server, pool=pool)
        assert self.server.add_secure_port(self.address, server_credentials()) == self.port
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
            self.server = None


def _serialize(message: Any) -> bytes:
    return bytes(message.SerializeToString())


# ---------------------------------------------------------------- fixtures


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def library() -> AsyncIterator[Library]:
    lib = Library(procs.free_port())
    await lib.start()
    yield lib
    await lib.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(tmp_path_factory: pytest.TempPathFactory, etcd_process: servers.Server, spider_process: servers.Server,
                  library: Library) -> AsyncIterator[Gateway]:
    gw = await start_gateway(tmp_path_factory.mktemp("gateway"), {"spider": spider_process.address,
                                                                  "library": library.address},
                             CB_GATEWAY_CORS_ORIGINS=ORIGIN, CB_GATEWAY_METRICS_PORT=str(procs.free_port()),
                             CB_ETCD_ENDPOINTS=etcd_process.address)
    yield gw
    gw.proc.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {KEY}"},
                                 timeout=30) as client:
        yield client


def violations(body: dict[str, Any]) -> list[str]:
    return [v["field"] for d in body.get("details", []) for v in d.get("fieldViolations", [])]


async def sse_events(http: httpx.AsyncClient, path: str, limit: int = 100,
                     timeout: float = 30) -> list[tuple[str, Any]]:
    """(event, data) pairs of a Server-Sent Events response, until it ends."""
    out: list[tuple[str, Any]] = []
    async with asyncio.timeout(timeout), http.stream("GET", path) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        name = "message"
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                out.append((name, json.loads(line[6:])))
                if name in ("end", "error") or len(out) >= limit:
                    break
                name = "message"
    return out


# ---------------------------------------------------------------- the spider scenario


async def wait_status(http: httpx.AsyncClient, conn: str, vm: str, want: str) -> list[str]:
    """Follow WatchVm as Server-Sent Events until the VM reaches `want`; the statuses seen."""
    seen: list[str] = []
    async with asyncio.timeout(30), http.stream(
            "GET", f"/spider/v1/connections/{conn}/vms/{vm}:watch", params={"intervalSeconds": "0.2"}) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                status = json.loads(line[6:]).get("status")
                seen.append(status)
                if status == want:
                    return seen
    raise AssertionError(f"{vm} never reached {want}: {seen}")


async def test_spider_scenario_over_http(http: httpx.AsyncClient, cloudtwin_process: servers.Server) -> None:
    provider, region = (await servers.twin_regions(cloudtwin_process))[0]
    tag = uuid.uuid4().hex[:6]
    cred, reg, conn = f"cred-{tag}", f"reg-{tag}", f"conn-{tag}"
    base = f"/spider/v1/connections/{conn}"

    async def ok(method: str, path: str, **kw: Any) -> Any:
        response = await http.request(method, path, **kw)
        assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    made = await ok("POST", "/spider/v1/credentials", json={
        "name": cred, "driver": "mock", "values": {"access_key": f"acct-{tag}", "secret_key": "s3cret"}})
    assert made["keys"] == ["access_key", "secret_key"] and made["values"] == {}  # secrets never come back
    await ok("POST", "/spider/v1/regions", json={"name": reg, "driver": "mock", "region": region,
                                                 "settings": {"endpoint": cloudtwin_process.address, "provider": provider}})
    made = await ok("POST", "/spider/v1/connections", json={"name": conn, "driver": "mock", "credential": cred,
                                                            "region": reg})
    assert made["cloudRegion"] == region and made["provider"] == provider
    spec = (await ok("GET", f"{base}/specs", params={"pageSize": 1}))["specs"][0]["name"]
    image = (await ok("GET", f"{base}/images", params={"pageSize": 1}))["images"][0]["name"]
    vpc = await ok("POST", f"{base}/vpcs", json={"iid": {"name": "net"}, "ipv4Cidr": "10.0.0.0/16",
                                                 "subnets": [{"iid": {"name": "sub"}, "ipv4_cidr": "10.0.1.0/24"}]})
    assert vpc["iid"]["cspId"] and vpc["subnets"][0]["iid"]["name"] == "sub"
    await ok("POST", f"{base}/security-groups", json={"iid": {"name": "web"}, "vpc": "net", "rules": [
        {"direction": "inbound", "protocol": "tcp", "fromPort": 22, "toPort": 22, "cidr": "0.0.0.0/0"}]})
    rules = await ok("POST", f"{base}/security-groups/web/rules", json={"rules": [
        {"direction": "inbound", "protocol": "tcp", "fromPort": 80, "toPort": 80, "cidr": "0.0.0.0/0"}]})
    assert len(rules["rules"]) == 2
    key = await ok("POST", f"{base}/keypairs", json={"iid": {"name": "key"}})
    assert key["privateKey"].startswith("-----BEGIN")
    vm = await ok("POST", f"{base}/vms", params={"requestId": f"req-{tag}"}, json={
        "iid": {"name": "vm1"}, "spec": spec, "image": image, "vpc": "net", "subnet": "sub",
        "securityGroups": ["web"], "keyPair": "key"})
    assert vm["status"] == "CREATING" and vm["iid"]["cspId"]
    assert (await wait_status(http, conn, "vm1", "RUNNING"))[-1] == "RUNNING"
    listed = await ok("GET", f"{base}/vms")
    assert [v["iid"]["name"] for v in listed["vms"]] == ["vm1"]

    assert (await ok("POST", f"{base}/vms/vm1:suspend"))["status"] in ("SUSPENDING", "SUSPENDED")
    await wait_status(http, conn, "vm1", "SUSPENDED")
    again = await http.post(f"{base}/vms/vm1:suspend", json={})
    assert again.status_code == 409 and again.json()["code"] == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert (await ok("POST", f"{base}/vms/vm1:resume", json={}))["status"] in ("RESUMING", "RUNNING")
    await wait_status(http, conn, "vm1", "RUNNING")

    gone = await ok("DELETE", f"{base}/vms/vm1")
    assert gone["name"] == "vm1"
    assert (await http.get(f"{base}/vms/vm1")).status_code == 404
    deadline = time.monotonic() + 30
    for path in (f"{base}/keypairs/key", f"{base}/security-groups/web", f"{base}/vpcs/net", f"/spider/v1/connections/{conn}",
                 f"/spider/v1/regions/{reg}", f"/spider/v1/credentials/{cred}"):
        response = await http.delete(path)
        # The cloud may still hold a dependency of the VM that is terminating: 409 until it lets go.
        for _ in range(100):
            if response.status_code != 409 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
            response = await http.delete(path)
        assert response.status_code == 200, f"DELETE {path}: {response.text}"


# ---------------------------------------------------------------- errors


async def test_errors_map_to_statuses_with_details(http: httpx.AsyncClient) -> None:
    missing = await http.get("/spider/v1/credentials/not-there")
    assert missing.status_code == 404 and missing.json()["code"] == 5 and "not-there" in missing.json()["message"]
    name = f"dup-{uuid.uuid4().hex[:6]}"
    body = {"name": name, "driver": "mock", "values": {"access_key": "a", "secret_key": "b"}}
    assert (await http.post("/spider/v1/credentials", json=body)).status_code == 200
    dup = await http.post("/spider/v1/credentials", json=body)
    assert dup.status_code == 409 and dup.json()["code"] == 6
    bad_name = await http.post("/spider/v1/credentials", json={**body, "name": "Not_Valid"})
    assert bad_name.status_code == 400 and violations(bad_name.json())  # spider's own field violations pass through
    await http.delete(f"/spider/v1/credentials/{name}")

    for code, status in (("NOT_FOUND", 404), ("ALREADY_EXISTS", 409), ("FAILED_PRECONDITION", 409), ("ABORTED", 409),
                         ("RESOURCE_EXHAUSTED", 429), ("UNAVAILABLE", 503), ("DEADLINE_EXCEEDED", 504),
                         ("PERMISSION_DENIED", 403), ("UNAUTHENTICATED", 401), ("INVALID_ARGUMENT", 400)):
        response = await http.post("/v1/fail", json={"code": code, "message": f"it is {code}", "field": "x.y"})
        assert response.status_code == status, code
        assert response.json() == {"code": grpc.StatusCode[code].value[0], "message": f"it is {code}", "details": [
            {"@type": "type.googleapis.com/google.rpc.BadRequest",
             "fieldViolations": [{"field": "x.y", "description": "bad"}]}]}


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("POST", "/spider/v1/credentials", b'{"name": "x", "drver": "mock"}', "credential.drver"),
    ("POST", "/spider/v1/credentials", b'{"name": 5}', "credential.name"),
    ("POST", "/spider/v1/credentials", b'{"name": "x"', "credential"),
    ("POST", "/spider/v1/credentials", b'"just a string"', "credential"),
    ("POST", "/spider/v1/connections", b'{"limits": {"burst": "many"}}', "connection.limits.burst"),
    ("POST", "/spider/v1/connections/c/vms", b'{"rootDiskGib": 99999999999}', "vm.root_disk_gib"),
    ("POST", "/spider/v1/connections/c/vms", b'{"status": "SLEEPING"}', "vm.status"),
    ("GET", "/spider/v1/credentials?pageSize=lots", b"", "page_size"),
    ("GET", "/spider/v1/credentials?colour=red", b"", "colour"),
    ("GET", "/spider/v1/call-log?since=last-week", b"", "since"),
    ("POST", "/v1/echo", b'{"i64": "12x"}', "i64"),
])
async def test_bad_input_is_400_naming_the_field(http: httpx.AsyncClient, method: str, path: str, body: bytes,
                                                 field: str) -> None:
    response = await http.request(method, path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == 3 and field in violations(response.json()), response.text


async def test_no_route_and_wrong_method(http: httpx.AsyncClient) -> None:
    nothing = await http.get("/spider/v1/nothing-here")
    assert nothing.status_code == 404 and nothing.json()["code"] == 5
    wrong = await http.put("/spider/v1/credentials/x")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "DELETE, GET"


# ---------------------------------------------------------------- auth, limits, request IDs


async def test_authentication(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        none = await client.get("/spider/v1/drivers")
        assert none.status_code == 401 and "Bearer" in none.headers["www-authenticate"]
        assert none.json()["code"] == 16
        wrong = await client.get("/spider/v1/drivers", headers={"Authorization": "Bearer wrong-key"})
        assert wrong.status_code == 401 and "Basic" in wrong.headers["www-authenticate"]
        good = await client.get("/spider/v1/drivers", headers={"Authorization": f"Bearer {KEY}"})
        assert good.status_code == 200 and any(d["name"] == "mock" for d in good.json()["drivers"])
        basic = await client.get("/spider/v1/drivers", auth=("admin", KEY))
        assert basic.status_code == 200
        other_client = await client.get("/spider/v1/drivers", auth=("flood", KEY))
        assert other_client.status_code == 401
        for public in ("/healthz", "/readyz", "/openapi.json", "/docs"):
            assert (await client.get(public)).status_code == 200, public


async def test_rate_limit_per_key(gateway: Gateway, http: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {FLOOD_KEY}"},
                                 timeout=30) as flood:
        responses = await asyncio.gather(*(flood.get("/flood/nothing") for _ in range(300)))
    limited = [r for r in responses if r.status_code == 429]
    assert limited, "300 requests at once never hit a limit of 50/s with a burst of 100"
    assert int(limited[0].headers["retry-after"]) >= 1 and limited[0].json()["code"] == 8
    assert {r.status_code for r in responses} == {404, 429}
    assert (await http.get("/spider/v1/drivers")).status_code == 200  # another key is not limited


async def test_request_id_in_out_and_to_grpc(http: httpx.AsyncClient, library: Library) -> None:
    rid = f"rid-{uuid.uuid4().hex}"
    response = await http.get("/v1/shelves/s1/books/b1", headers={"X-Request-Id": rid})
    assert response.status_code == 200 and response.headers["x-request-id"] == rid
    seen = library.seen[-1]
    assert seen["x-request-id"] == rid and seen["x-cb-principal"] == "admin" and seen["x-cb-role"] == "admin"
    fresh = await http.get("/v1/shelves/s1/books/b1", headers={"X-Request-Id": "bad id with spaces"})
    assert fresh.headers["x-request-id"] != "bad id with spaces" and len(fresh.headers["x-request-id"]) == 32
    assert library.seen[-1]["x-request-id"] == fresh.headers["x-request-id"]
    errors = await http.get("/spider/v1/credentials/none", headers={"X-Request-Id": rid})
    assert errors.headers["x-request-id"] == rid


async def test_access_log_is_json_lines(gateway: Gateway, http: httpx.AsyncClient) -> None:
    rid = f"log-{uuid.uuid4().hex}"
    await http.get("/spider/v1/drivers", headers={"X-Request-Id": rid})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in gateway.log.read_text().splitlines() if line.startswith("{")]
        mine = [e for e in lines if e.get("logger") == "gateway.access" and e.get("request_id") == rid]
        if mine:
            assert mine[0]["status"] == 200 and mine[0]["path"] == "/spider/v1/drivers"
            assert mine[0]["client"] == "admin" and mine[0]["ms"] >= 0
            return
        await asyncio.sleep(0.1)
    raise AssertionError("no access-log line for the request")


async def test_prometheus_metrics(gateway: Gateway, http: httpx.AsyncClient) -> None:
    await http.get("/spider/v1/drivers")
    port = gateway.proc.env["CB_GATEWAY_METRICS_PORT"]
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    assert 'cb_gateway_requests_total{method="GET",status="200"}' in text
    assert "cb_gateway_request_seconds_bucket" in text


async def test_cors(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        preflight = await client.options("/spider/v1/drivers", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
        assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == ORIGIN
        actual = await client.get("/spider/v1/drivers", headers={"Origin": ORIGIN, "Authorization": f"Bearer {KEY}"})
        assert actual.headers["access-control-allow-origin"] == ORIGIN
        assert "x-request-id" in actual.headers["access-control-expose-headers"].lower()
        other = await client.options("/spider/v1/drivers", headers={
            "Origin": "http://evil.test", "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in other.headers


# ---------------------------------------------------------------- docs


async def test_openapi_and_docs_work_offline(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        doc = (await client.get("/openapi.json")).json()
        assert doc["openapi"].startswith("3.") and "/spider/v1/connections/{connection}/vms/{name}:suspend" in doc["paths"]
        assert "/v1/{parent}/books" in doc["paths"]  # the library, known only from its setting
        page = await client.get("/docs")
        assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
        assert "http" not in page.text  # every asset from this gateway, none from a CDN
        for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
            response = await client.get(f"/docs/assets/{asset}")
            assert response.status_code == 200 and len(response.content) > 1000, asset


# ---------------------------------------------------------------- a service added by a setting


async def test_library_routes_from_reflection(http: httpx.AsyncClient) -> None:
    listed = await http.get("/v1/shelves/s1/books", params=[
        ("filter.author", "Le Guin"), ("filter.year.from", "1960"), ("genres", "FICTION"), ("genres", "HISTORY"),
        ("minRating", "4"), ("since", "2020-01-01T00:00:00Z")])
    assert listed.status_code == 200, listed.text
    seen = json.loads(listed.json()["books"][0]["title"])
    assert seen == {"parent": "shelves/s1", "filter": {"author": "Le Guin", "year": {"from": 1960}},
                    "genres": ["FICTION", "HISTORY"], "minRating": 4, "since": "2020-01-01T00:00:00Z"}
    author = await http.get("/v1/shelves/s1/books/b1/author")
    assert author.json() == {"name": "A", "born": 1900}  # response_body
    by_path = await http.get("/v1/by-path/any/depth/here")
    assert by_path.json()["name"] == "any/depth/here"  # additional binding with **
    made = await http.post("/v1/shelves/s1/books", params={"request_id": "r9"}, json={"title": "Dune", "copies": 3})
    assert made.json()["name"] == "shelves/s1/books/r9" and made.json()["copies"] == "3"
    echo = await http.get("/v1/echo", params={"i64": "-5", "b": "true", "ri": ["1", "2"], "dur": "2s"})
    assert echo.json()["i64"] == "-5" and echo.json()["b"] is True and echo.json()["ri"] == [1, 2]
    deleted = await http.delete("/v1/shelves/s1/books/b1")
    assert deleted.status_code == 200 and deleted.json() == {}


async def test_server_streaming_as_server_sent_events(http: httpx.AsyncClient, library: Library) -> None:
    events = await sse_events(http, "/v1/shelves/s1:watch")
    assert [e for e, _ in events] == ["message", "message", "message", "end"]
    assert [d.get("name") for _, d in events[:3]] == [f"shelves/s1/books/{i}" for i in range(3)]
    broken = await sse_events(http, "/v1/shelves/fail:watch")
    assert broken[0][0] == "message" and broken[-1][0] == "error"
    assert broken[-1][1]["code"] == 9 and broken[-1][1]["message"] == "the shelf broke"
    bad = await http.get("/v1/shelves/s1:watch", params={"pageSize": "x"})
    assert bad.status_code == 400 and violations(bad.json()) == ["page_size"]


async def test_a_client_leaving_cancels_the_stream(http: httpx.AsyncClient, library: Library) -> None:
    library.cancelled.clear()
    async with asyncio.timeout(10), http.stream("GET", "/v1/shelves/slow:watch") as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                break
    await asyncio.wait_for(library.cancelled.wait(), 10)


async def test_a_backend_down_gives_503_while_others_work(http: httpx.AsyncClient, library: Library) -> None:
    await library.stop()
    try:
        down = await http.get("/v1/shelves/s1/books/b1")
        assert down.status_code == 503 and down.json()["code"] == 14 and "library" in down.json()["message"]
        assert (await http.get("/spider/v1/drivers")).status_code == 200
        ready = (await http.get("/readyz")).json()
        assert ready["ready"] and not ready["backends"]["library"]["serving"] and ready["backends"]["spider"]["serving"]
    finally:
        await library.start()
    deadline = time.monotonic() + 20
    while (await http.get("/v1/shelves/s1/books/b1")).status_code != 200:
        assert time.monotonic() < deadline, "the gateway did not reconnect to the library"
        await asyncio.sleep(0.2)


async def test_a_backend_down_at_start_still_has_its_routes(tmp_path: Path, spider_process: servers.Server) -> None:
    # Nothing listens on the tumblebug port; a spider address that is down uses the installed code.
    gw = await start_gateway(tmp_path, {"spider": f"127.0.0.1:{procs.free_port()}",
                                        "tumblebug": f"127.0.0.1:{procs.free_port()}"})
    try:
        async with httpx.AsyncClient(base_url=gw.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as c:
            response = await c.get("/spider/v1/drivers")
            assert response.status_code == 503 and "spider is unavailable" in response.json()["message"]
            assert (await c.get("/readyz")).status_code == 503
    finally:
        with contextlib.suppress(Exception):
            gw.proc.stop()
