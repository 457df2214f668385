"""API keys with roles and namespace scopes, through real gateway processes in front of the
session's spider and tumblebug (etcd holds the keys): keys are made, listed and revoked by an
admin over REST; the backends refuse what a key's role or namespace does not allow; identity
headers sent by a client count for nothing; a revoked key stops working here at once and on a
second gateway within seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio

from cbapi.tumblebug.v1 import tumblebug_pb2 as tbpb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services import processes as procs
from services.rpc.client import channel
from tests import servers
from tests.support.cbctl import Cbctl
from tests.support.gateway import KEY, Gateway, start_gateway


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateways(tmp_path_factory: pytest.TempPathFactory, etcd_process: servers.Server, spider_process: servers.Server,
                   tumblebug_process: servers.Server) -> AsyncIterator[tuple[Gateway, Gateway]]:
    """Two gateway replicas sharing etcd (their stored keys) and the backends."""
    backends = {"spider": spider_process.address, "tumblebug": tumblebug_process.address}
    env = {"CB_ETCD_ENDPOINTS": etcd_process.address, "CB_GATEWAY_KEY_HASH_ROUNDS": "4"}
    one = await start_gateway(tmp_path_factory.mktemp("gw-roles-1"), backends, **env)
    two = await start_gateway(tmp_path_factory.mktemp("gw-roles-2"), backends, **env)
    yield one, two
    one.proc.stop()
    two.proc.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def admin(gateways: tuple[Gateway, Gateway]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateways[0].url, headers={"Authorization": f"Bearer {KEY}"},
                                 timeout=30) as client:
        yield client


def tag() -> str:
    return uuid.uuid4().hex[:6]


async def make_key(admin: httpx.AsyncClient, role: str, namespace: str = "") -> tuple[str, str]:
    name = f"{role}-{tag()}"
    response = await admin.post("/gateway/v1/apikeys", json={"name": name, "role": role, "namespace": namespace})
    assert response.status_code == 200, response.text
    return name, response.json()["key"]


async def make_namespace(admin: httpx.AsyncClient) -> str:
    ns = f"ns-{tag()}"
    response = await admin.post("/tumblebug/v1/namespaces", json={"name": ns})
    assert response.status_code == 200, response.text
    return ns


def as_key(base: str, key: str, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}", **headers}, timeout=30)


def denied(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 403, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == grpc.StatusCode.PERMISSION_DENIED.value[0]
    for word in words:
        assert word in body["message"], body["message"]


async def test_admin_creates_lists_and_revokes_keys(admin: httpx.AsyncClient, gateways: tuple[Gateway, Gateway]) -> None:
    name, key = await make_key(admin, "operator", "team-x")
    assert key.startswith(f"cb.{name}.")
    listed = (await admin.get("/gateway/v1/apikeys", params={"pageSize": 1000})).json()["apiKeys"]
    mine = next(k for k in listed if k["name"] == name)
    assert mine["role"] == "operator" and mine["namespace"] == "team-x" and mine["source"] == "stored"
    assert mine["createTime"] and "key" not in mine and "bcryptHash" not in mine  # the key is shown once only
    assert any(k["name"] == "admin" and k["source"] == "static" for k in listed)
    assert (await admin.get(f"/gateway/v1/apikeys/{name}")).json()["role"] == "operator"
    again = await admin.post("/gateway/v1/apikeys", json={"name": name, "role": "viewer"})
    assert again.status_code == 409
    bad = await admin.post("/gateway/v1/apikeys", json={"name": f"x-{tag()}", "role": "root"})
    assert bad.status_code == 400 and "role" in bad.text
    assert (await admin.delete("/gateway/v1/apikeys/admin")).status_code == 409  # static: not here
    # Only an unscoped admin manages keys.
    async with as_key(str(admin.base_url), key) as operator:
        denied(await operator.get("/gateway/v1/apikeys"), "operator", "unscoped admin")
        denied(await operator.post("/gateway/v1/apikeys", json={"name": f"y-{tag()}", "role": "admin"}))
    assert (await admin.delete(f"/gateway/v1/apikeys/{name}")).status_code == 200
    assert (await admin.get(f"/gateway/v1/apikeys/{name}")).status_code == 404
    doc = (await admin.get("/openapi.json")).json()
    assert set(doc["paths"]["/gateway/v1/apikeys"]) == {"get", "post"}
    assert set(doc["paths"]["/gateway/v1/apikeys/{name}"]) == {"get", "delete"}


async def test_viewer_reads_but_cannot_create(admin: httpx.AsyncClient) -> None:
    _, key = await make_key(admin, "viewer")
    async with as_key(str(admin.base_url), key) as viewer:
        assert (await viewer.get("/tumblebug/v1/namespaces")).status_code == 200
        assert (await viewer.get("/spider/v1/connections")).status_code == 200
        denied(await viewer.post("/tumblebug/v1/namespaces", json={"name": f"ns-{tag()}"}),
               "role viewer", "/cbapi.tumblebug.v1.Tumblebug/CreateNamespace", "needs operator")
        denied(await viewer.post("/spider/v1/regions", json={"name": f"r-{tag()}", "driver": "mock", "region": "x"}),
               "CreateRegion")


async def test_operator_cannot_read_or_create_credentials(admin: httpx.AsyncClient) -> None:
    _, key = await make_key(admin, "operator")
    async with as_key(str(admin.base_url), key) as operator:
        denied(await operator.get("/spider/v1/credentials"), "role operator", "ListCredentials", "needs admin")
        denied(await operator.get("/spider/v1/credentials/anything"), "GetCredential")
        denied(await operator.post("/spider/v1/credentials", json={
            "name": f"c-{tag()}", "driver": "mock", "values": {"access_key": "a", "secret_key": "b"}}),
            "CreateCredential")
        ns = f"ns-{tag()}"
        assert (await operator.post("/tumblebug/v1/namespaces", json={"name": ns})).status_code == 200
        assert (await operator.delete(f"/tumblebug/v1/namespaces/{ns}")).status_code == 200
    assert (await admin.get("/spider/v1/credentials")).status_code == 200


async def test_namespace_scoped_key_stays_in_its_namespace(admin: httpx.AsyncClient) -> None:
    mine, other = await make_namespace(admin), await make_namespace(admin)
    _, key = await make_key(admin, "operator", mine)
    async with as_key(str(admin.base_url), key) as scoped:
        assert (await scoped.get(f"/tumblebug/v1/namespaces/{mine}")).status_code == 200
        assert (await scoped.get(f"/tumblebug/v1/namespaces/{mine}/mcis")).status_code == 200
        assert (await scoped.get(f"/tumblebug/v1/namespaces/{mine}/vnets")).status_code == 200
        assert (await scoped.get("/tumblebug/v1/catalog/specs", params={"pageSize": 1})).status_code == 200
        denied(await scoped.get(f"/tumblebug/v1/namespaces/{other}"), f"limited to namespace '{mine}'", other)
        denied(await scoped.get(f"/tumblebug/v1/namespaces/{other}/mcis"), "ListMcis")
        denied(await scoped.get(f"/tumblebug/v1/namespaces/{other}/mcis/any:watch"), "WatchMcis")  # a stream
        denied(await scoped.delete(f"/tumblebug/v1/namespaces/{other}"), "DeleteNamespace")
        denied(await scoped.get("/tumblebug/v1/namespaces"), "not a method of one namespace")
        denied(await scoped.get("/spider/v1/connections"), "ListConnections")
    assert (await admin.get(f"/tumblebug/v1/namespaces/{other}")).status_code == 200  # untouched


async def test_identity_headers_from_a_client_are_ignored(admin: httpx.AsyncClient) -> None:
    _, key = await make_key(admin, "viewer")
    forged = {"x-cb-role": "admin", "x-cb-principal": "admin", "x-cb-namespace": "", "x-cb-client": "admin"}
    async with as_key(str(admin.base_url), key, **forged) as viewer:
        denied(await viewer.post("/tumblebug/v1/namespaces", json={"name": f"ns-{tag()}"}), "role viewer")
        denied(await viewer.get("/spider/v1/credentials"), "role viewer")


async def test_revoked_key_is_refused_here_at_once_and_on_another_replica_soon(
        admin: httpx.AsyncClient, gateways: tuple[Gateway, Gateway]) -> None:
    name, key = await make_key(admin, "viewer")
    one, two = gateways
    async with as_key(one.url, key) as here, as_key(two.url, key) as there:
        assert (await here.get("/tumblebug/v1/namespaces")).status_code == 200
        # The other replica learns of the new key from etcd's watch.
        for _ in range(50):
            if (await there.get("/tumblebug/v1/namespaces")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the second gateway never accepted the new key")
        assert (await admin.delete(f"/gateway/v1/apikeys/{name}")).status_code == 200
        gone = await here.get("/tumblebug/v1/namespaces")
        assert gone.status_code == 401 and gone.json()["message"] == "invalid API key"
        for _ in range(50):  # at most 5 s
            if (await there.get("/tumblebug/v1/namespaces")).status_code == 401:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the second gateway still accepts a revoked key after 5 s")


async def test_backend_enforces_the_role_from_metadata(tumblebug_process: servers.Server) -> None:
    """A backend takes the identity metadata only from the gateway's certificate; any other
    certificate of the suite is a service with full rights, whatever metadata it sends."""
    ca, cert, key = procs.identity("gateway").read()
    as_gateway = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    async with grpc.aio.secure_channel(tumblebug_process.address, as_gateway) as ch:
        stub = tumblebug_pb2_grpc.TumblebugStub(ch)
        viewer = (("x-cb-principal", "v"), ("x-cb-role", "viewer"), ("x-cb-namespace", ""))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CreateNamespace(tbpb.CreateNamespaceRequest(namespace=tbpb.Namespace(name=f"ns-{tag()}")),
                                       metadata=viewer, timeout=10)
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED and "role viewer" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListNamespaces(tbpb.ListNamespacesRequest(), metadata=(("x-cb-role", "root"),), timeout=10)
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED and "unknown role" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListNamespaces(tbpb.ListNamespacesRequest(), timeout=10)  # the gateway must say who
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
        await stub.ListNamespaces(tbpb.ListNamespacesRequest(), metadata=viewer, timeout=10)
    async with channel(tumblebug_process.address) as ch:  # the suite's admin certificate: full rights
        await tumblebug_pb2_grpc.TumblebugStub(ch).CreateNamespace(
            tbpb.CreateNamespaceRequest(namespace=tbpb.Namespace(name=f"ns-{tag()}")), metadata=viewer, timeout=10)


async def test_cbctl_creates_lists_and_deletes_api_keys(gateways: tuple[Gateway, Gateway], tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CB_", "CBCTL_", "XDG_"))}
    env.update(HOME=str(home), CB_RUN_DIR=str(tmp_path / "run"), CB_GATEWAY_URL=gateways[0].url, CB_API_KEY=KEY,
               COLUMNS="200", CB_NAMESPACE="configured-default")
    cbctl = Cbctl(env, home)
    name = f"ci-{tag()}"
    made = await cbctl.ok("create", "apikey", name, "--role", "operator", "--namespace", "team-q")
    key = next(line.split(": ", 1)[1] for line in made.out.splitlines() if line.startswith("key: "))
    assert key.startswith(f"cb.{name}.") and "not shown again" in made.out and "namespace team-q" in made.out
    listed = await cbctl.ok("get", "apikeys")
    row = next(line.split() for line in listed.out.splitlines() if line.startswith(name))
    assert row[1:4] == ["operator", "team-q", "stored"] and key not in listed.out
    # The configured default namespace does not scope a key; only --namespace does.
    unscoped = f"ro-{tag()}"
    shown = json.loads((await cbctl.ok("create", "apikey", unscoped, "--role", "viewer", "-o", "json")).out)
    assert shown["apiKey"]["namespace"] == "" and shown["key"].startswith(f"cb.{unscoped}.")
    no_role = await cbctl("create", "apikey", f"x-{tag()}")
    assert no_role.code == 1 and "--role" in no_role.err
    # The new key works for what its role allows, and cbctl names the refusal.
    as_viewer = await cbctl("create", "namespace", f"ns-{tag()}", CB_API_KEY=shown["key"])
    assert as_viewer.code == 1 and "role viewer" in as_viewer.err
    await cbctl.ok("delete", "apikey", name)
    await cbctl.ok("delete", "apikey", unscoped)
    gone = await cbctl("get", "namespaces", CB_API_KEY=shown["key"])
    assert gone.code == 1 and "invalid API key" in gone.err
    assert name not in (await cbctl.ok("get", "apikeys")).out
