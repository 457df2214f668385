"""cbctl as a user runs it: a real `python -m services.cli` process against a real gateway in front
of the session's spider. The whole spider scenario, output formats, configuration, errors."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from tests import servers
from tests.support.cbctl import Cbctl, cbctl_for
from tests.support.gateway import KEY, Gateway, start_gateway


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(tmp_path_factory: pytest.TempPathFactory, spider_process: servers.Server) -> AsyncIterator[Gateway]:
    gw = await start_gateway(tmp_path_factory.mktemp("gateway-cbctl"), {"spider": spider_process.address})
    yield gw
    gw.proc.stop()


@pytest.fixture
def cbctl(gateway: Gateway, tmp_path: Path) -> Cbctl:
    return cbctl_for(gateway, tmp_path)


def manifest(cloudtwin: servers.Server, provider: str, region: str, tag: str, spec: str, image: str) -> str:
    conn = f"conn-{tag}"
    docs = [
        {"kind": "credential", "name": f"cred-{tag}", "spec": {"driver": "mock", "values": {
            "access_key": f"acct-{tag}", "secret_key": "s3cret"}}},
        {"kind": "region", "name": f"reg-{tag}", "spec": {"driver": "mock", "region": region, "settings": {
            "endpoint": cloudtwin.address, "provider": provider}}},
        {"kind": "connection", "name": conn, "spec": {"driver": "mock", "credential": f"cred-{tag}",
                                                      "region": f"reg-{tag}"}},
        {"kind": "vpc", "connection": conn, "name": "net", "spec": {
            "ipv4Cidr": "10.0.0.0/16", "subnets": [{"iid": {"name": "sub"}, "ipv4Cidr": "10.0.1.0/24"}]}},
        {"kind": "securitygroup", "connection": conn, "name": "web", "spec": {"vpc": "net", "rules": [
            {"direction": "inbound", "protocol": "tcp", "fromPort": 22, "toPort": 22, "cidr": "0.0.0.0/0"}]}},
        {"kind": "keypair", "connection": conn, "name": "key"},
        {"kind": "vm", "connection": conn, "name": "vm1", "spec": {
            "spec": spec, "image": image, "vpc": "net", "subnet": "sub", "securityGroups": ["web"],
            "keyPair": "key"}},
    ]
    return yaml.safe_dump_all(docs, sort_keys=False)


async def test_spider_scenario_through_cbctl(cbctl: Cbctl, cloudtwin_process: servers.Server, spider_client: object,
                                             tmp_path: Path) -> None:
    provider, region = (await servers.twin_regions(cloudtwin_process))[0]
    tag = uuid.uuid4().hex[:6]
    conn = f"conn-{tag}"
    # The catalog, read through cbctl before anything exists needs a connection: make one first.
    head = manifest(cloudtwin_process, provider, region, tag, "x", "x").split("---")[0:3]
    (tmp_path / "conn.yaml").write_text("---".join(head))
    first = await cbctl.ok("apply", "-f", str(tmp_path / "conn.yaml"))
    assert first.out.split("\n")[:3] == [f"credential/cred-{tag} created", f"region/reg-{tag} created",
                                         f"connection/conn-{tag} created"]
    spec = json.loads((await cbctl.ok("get", "specs", "-c", conn, "-o", "json")).out)[0]["name"]
    image = json.loads((await cbctl.ok("get", "images", "-c", conn, "-o", "json")).out)[0]["name"]

    path = tmp_path / "suite.yaml"
    path.write_text(manifest(cloudtwin_process, provider, region, tag, spec, image))
    applied = await cbctl.ok("apply", "-f", str(path), "--wait")
    lines = applied.out.strip().splitlines()
    assert lines[:3] == [f"credential/cred-{tag} unchanged", f"region/reg-{tag} unchanged",
                         f"connection/conn-{tag} unchanged"]
    assert lines[3:] == ["vpc/net created", "securitygroup/web created", "keypair/key created", "vm/vm1 created"]
    assert "vm/vm1" in applied.err and "RUNNING" in applied.err  # the progress bar, on stderr

    table = await cbctl.ok("get", "vms", "-c", conn)
    header, row = table.out.strip().splitlines()
    assert header.split()[:3] == ["NAME", "STATUS", "SPEC"] and row.split()[:3] == ["vm1", "RUNNING", spec]
    as_yaml = yaml.safe_load((await cbctl.ok("get", "vm", "vm1", "-c", conn, "-o", "yaml")).out)
    assert as_yaml["iid"]["name"] == "vm1" and as_yaml["status"] == "RUNNING"
    described = await cbctl.ok("describe", "sg", "web", "-c", conn)
    assert described.out.startswith("securitygroup web") and "fromPort: 22" in described.out

    suspended = await cbctl.ok("suspend", "vm", "vm1", "-c", conn, "--wait")
    assert suspended.out.startswith("vm/vm1 ") and "SUSPENDED" in suspended.err
    again = await cbctl("suspend", "vm", "vm1", "-c", conn)
    assert again.code == 1 and "FAILED_PRECONDITION, HTTP 409" in again.err
    await cbctl.ok("resume", "vm", "vm1", "-c", conn, "--wait")
    assert "RUNNING" in (await cbctl.ok("get", "vm", "vm1", "-c", conn)).out

    terminated = await cbctl.ok("delete", "vm", "vm1", "-c", conn, "--wait")
    assert terminated.out.strip() == "vm/vm1 deleted"
    gone = await cbctl("get", "vm", "vm1", "-c", conn)
    assert gone.code == 1 and "NOT_FOUND" in gone.err
    cleaned = await cbctl.ok("delete", "-f", str(path), "--wait")
    assert cleaned.out.strip().splitlines() == [
        "vm/vm1 already gone", "keypair/key deleted", "securitygroup/web deleted", "vpc/net deleted",
        f"connection/conn-{tag} deleted", f"region/reg-{tag} deleted", f"credential/cred-{tag} deleted"]


async def test_create_from_flags_and_stdin(cbctl: Cbctl) -> None:
    name = f"cred-{uuid.uuid4().hex[:6]}"
    made = await cbctl.ok("create", "credential", name, "--set", "driver=mock", "--set", "values.access_key=a",
                          "--set", "values.secret_key=b", "-o", "json")
    assert json.loads(made.out)["keys"] == ["access_key", "secret_key"]
    dup = await cbctl("create", "credential", name, "--set", "driver=mock", "--set", "values={access_key: a, "
                      "secret_key: b}")
    assert dup.code == 1 and "already exists" in dup.err
    doc = yaml.safe_dump({"kind": "credential", "name": name, "spec": {"driver": "mock", "values": {
        "access_key": "a", "secret_key": "b"}}})
    assert (await cbctl.ok("apply", "-f", "-", stdin=doc)).out.strip() == f"credential/{name} unchanged"
    assert (await cbctl.ok("delete", "-f", "-", stdin=doc)).out.strip() == f"credential/{name} deleted"


async def test_errors_are_one_line_and_verbose_explains(cbctl: Cbctl) -> None:
    bad = await cbctl("create", "credential", "Bad_Name", "--set", "driver=mock")
    assert bad.code == 1 and len(bad.err.strip().splitlines()) == 1 and bad.err.startswith("Error: ")
    assert "INVALID_ARGUMENT, HTTP 400" in bad.err
    detailed = await cbctl("create", "credential", "Bad_Name", "--set", "driver=mock", "-v")
    lines = detailed.err.strip().splitlines()
    assert len(lines) >= 3 and any(line.strip().startswith("field ") for line in lines)
    assert any("request id:" in line for line in lines)
    unknown_field = await cbctl("create", "credential", "x1", "--set", "colour=red")
    assert unknown_field.code == 1 and "credential.colour" in unknown_field.err
    no_scope = await cbctl("get", "vms")
    assert no_scope.code == 1 and "--connection" in no_scope.err
    assert "unknown kind" in (await cbctl("get", "pizzas")).err
    bad_file = await cbctl("apply", "-f", "-", stdin="kind: vm\nspec: [1]\n")
    assert bad_file.code == 1 and "document 1" in bad_file.err
    down = await cbctl("get", "drivers", CB_GATEWAY_URL="http://127.0.0.1:9")
    assert down.code == 1 and "cannot reach the gateway" in down.err and len(down.err.strip().splitlines()) == 1
    wrong_key = await cbctl("get", "drivers", CB_API_KEY="wrong")
    assert wrong_key.code == 1 and "UNAUTHENTICATED, HTTP 401" in wrong_key.err
    assert "--api-key, CB_API_KEY or api_key" in wrong_key.err  # what to change, in cbctl's terms


async def test_config_file_and_precedence(cbctl: Cbctl, gateway: Gateway) -> None:
    config = cbctl.home / ".config" / "cbctl" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(yaml.safe_dump({"gateway": gateway.url, "api_key": KEY, "output": "json"}))
    env_free: dict[str, Any] = {"CB_GATEWAY_URL": "", "CB_API_KEY": ""}
    drivers = json.loads((await cbctl.ok("get", "drivers", **env_free)).out)
    assert any(d["name"] == "mock" for d in drivers)
    assert (await cbctl.ok("get", "drivers", "-o", "table", **env_free)).out.startswith("NAME")  # a flag wins
    wrong = await cbctl("get", "drivers", CB_API_KEY="from-env")  # the environment wins over the file
    assert wrong.code == 1 and "401" in wrong.err
    assert (await cbctl.ok("--api-key", KEY, "get", "drivers", CB_API_KEY="from-env")).code == 0  # the flag wins
    config.write_text("gateway: [not, a, url\n")
    broken = await cbctl("get", "drivers", **env_free)
    assert broken.code == 1 and "config.yaml" in broken.err


async def test_local_suite_key_is_found(cbctl: Cbctl, tmp_path: Path) -> None:
    run_dir = Path(cbctl.env["CB_RUN_DIR"])
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "admin.key").write_text(KEY + "\n")
    assert (await cbctl.ok("get", "drivers", CB_API_KEY="")).out.startswith("NAME")
    status = await cbctl("status")
    assert status.code == 1 and "not running" in status.out


async def test_register_and_unregister_a_spider_resource(cbctl: Cbctl, cloudtwin_process: servers.Server,
                                                         spider_client: object) -> None:
    provider, region = (await servers.twin_regions(cloudtwin_process))[0]
    conn = await servers.make_connection(spider_client, cloudtwin_process, provider, region)  # type: ignore[arg-type]
    made = await cbctl.ok("create", "vpc", "net", "-c", conn.name, "--set", "ipv4Cidr=10.1.0.0/16", "-o", "json")
    csp_id = json.loads(made.out)["iid"]["cspId"]
    forgotten = await cbctl.ok("unregister", "vpc", "net", "-c", conn.name)
    assert forgotten.out.strip() == f"vpc/net unregistered; {csp_id} stays in the cloud"
    assert "NOT_FOUND" in (await cbctl("get", "vpc", "net", "-c", conn.name)).err
    adopted = await cbctl.ok("register", "vpc", "again", "--csp-id", csp_id, "-c", conn.name)
    assert adopted.out.strip() == f"vpc/again registered ({csp_id})"
    refused = await cbctl("unregister", "image", "x", "-c", conn.name)
    assert refused.code == 1 and "cannot be registered or unregistered" in refused.err
    await cbctl.ok("delete", "vpc", "again", "-c", conn.name)


async def test_status_checks_http_servers_on_their_own_health_path(cbctl: Cbctl, etcd_process: servers.Server,
                                                                   tmp_path: Path) -> None:
    """etcd and VictoriaMetrics speak HTTP, not gRPC health: status asks their /health."""
    from dragonfly.storage import victoriametrics
    from services import processes as procs

    suite = {"etcd": {"address": f"https://{etcd_process.address}", "pid": etcd_process.proc.pid}}
    victoria: procs.Proc | None = None
    if shutil.which(victoriametrics.BINARY):
        port = procs.free_port()
        victoria = await procs.start_tcp(victoriametrics.process(tmp_path / "victoria", port), port)
        suite["victoria-metrics"] = {"address": f"http://127.0.0.1:{port}", "pid": victoria.pid}
    dead = procs.free_port()
    suite["gateway"] = {"address": f"http://127.0.0.1:{dead}", "pid": os.getpid()}  # nothing listens there
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "suite.json").write_text(json.dumps(suite))
    try:
        # etcd asks for a client certificate: cbctl presents the suite's admin one, as an operator's would.
        status = await cbctl.ok("status", CB_RUN_DIR=str(run_dir), COLUMNS="200", **procs.identity("admin").env())
    finally:
        if victoria is not None:
            victoria.stop()
    rows = {name: line for line in status.out.splitlines() for name in suite if f" {name} " in line}
    health = {name: "NOT SERVING" if "NOT SERVING" in row else "SERVING" if "SERVING" in row else row
              for name, row in rows.items()}
    assert health == {**{name: "SERVING" for name in suite}, "gateway": "NOT SERVING"}
