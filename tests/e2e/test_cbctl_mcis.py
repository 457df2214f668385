"""cbctl and the gateway over tumblebug, as a user drives them: real `python -m services.cli`
processes against a real gateway in front of the session's tumblebug and spider (CloudTwin boots a
VM in 0.3 s). Only the spider connections are prepared over gRPC; everything else goes through
HTTP. Covers namespaces, namespace resources, the catalog, a dynamic MCIS over two clouds with a
progress bar per VM group, every verb, scaling, deletion, and errors as one line."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as tw_grpc
from cbapi.spider.v1 import spider_pb2_grpc
from services.cli import mcis as cli_mcis
from services.cli.client import ApiError
from services.cli.kinds import find, prefer, where
from services.rpc.client import channel
from tests import servers
from tests.integration.tumblebug.helpers import cheapest_spec_and_image, connections, twin_vm_names
from tests.support.cbctl import Cbctl, one_line_error, tumblebug_cbctl, tumblebug_gateway  # noqa: F401 - fixtures
from tests.support.gateway import KEY, Gateway

# Waits end with cbctl's own one-line report well before the harness's 120 s per command.
WAIT = ("--wait", "--timeout", "40")


def mcis_doc(name: str, ns: str, groups: list[tuple[str, str, int]]) -> str:
    return yaml.safe_dump({"kind": "mcis", "name": name, "namespace": ns, "spec": {
        "description": "two clouds", "policy": "continue",
        "subgroups": [{"spec_id": spec, "image_id": image, "size": size} for spec, image, size in groups]}},
        sort_keys=False)


# ---------------------------------------------------------------- the MCIS scenario


async def test_dynamic_mcis_through_cbctl(cbctl: Cbctl, spider_client: spider_pb2_grpc.SpiderStub,
                                          cloudtwin_process: servers.Server, tmp_path: Path) -> None:
    conns = await connections(spider_client, cloudtwin_process, 2)
    picks = [await cheapest_spec_and_image(spider_client, c.name) for c in conns]
    ns = f"ns-{uuid.uuid4().hex[:6]}"
    assert (await cbctl.ok("create", "namespace", ns)).out.strip() == f"namespace/{ns} created"
    assert ns in [n["name"] for n in json.loads((await cbctl.ok("get", "ns", "-o", "json")).out)]

    path = tmp_path / "mcis.yaml"
    path.write_text(mcis_doc("web", ns, [(f"{conns[0].name}+{picks[0][0]}", picks[0][1], 2),
                                         (f"{conns[1].name}+{picks[1][0]}", picks[1][1], 1)]))
    applied = await cbctl.ok("apply", "-f", str(path), *WAIT)
    assert applied.out.strip() == "mcis/web created"
    # The bars (stderr): the MCIS, then one per VM group with its connection and count.
    assert "Running:3 (R:3/3)" in applied.err
    assert f"g1 ({conns[0].name})" in applied.err and "2/2  2 Running" in applied.err
    assert f"g2 ({conns[1].name})" in applied.err and "1/1  1 Running" in applied.err
    assert (await cbctl.ok("apply", "-f", str(path))).out.strip() == "mcis/web unchanged"

    header, row = (await cbctl.ok("get", "mcis", "-n", ns)).out.strip().splitlines()
    assert header.split() == ["NAME", "STATUS", "TARGET", "GROUPS", "VMS"]
    assert row.split() == ["web", "Running:3", "(R:3/3)", "-", "g1:2,g2:1", "3"]
    as_json = json.loads((await cbctl.ok("get", "mcis", "web", "-n", ns, "-o", "json")).out)
    assert as_json["statusCount"]["running"] == 3 and as_json["targetAction"] == "ACTION_NONE"
    as_yaml = yaml.safe_load((await cbctl.ok("get", "mcis", "web", "-n", ns, "-o", "yaml")).out)
    assert [g["connection"] for g in as_yaml["subgroups"]] == [c.name for c in conns]
    described = await cbctl.ok("describe", "mcis", "web", "-n", ns)
    assert described.out.startswith("mcis web") and "\nVMs\n" in described.out
    assert all(vm in described.out for vm in ("g1-1", "g1-2", "g2-1"))
    full = json.loads((await cbctl.ok("describe", "mcis", "web", "-n", ns, "-o", "json")).out)
    assert {v["provider"] for v in full["vms"]} == {c.provider for c in conns}
    assert all(v["status"] == "RUNNING" for v in full["vms"])

    suspended = await cbctl.ok("suspend", "mcis", "web", "-n", ns, *WAIT)
    assert suspended.out.strip().splitlines() == ["mcis/web suspend accepted", "mcis/web Suspended:3 (R:0/3)"]
    assert "2/2  2 Suspended" in suspended.err
    one_line_error(await cbctl("suspend", "mcis", "web", "-n", ns), "is Suspended", "FAILED_PRECONDITION, HTTP 409")
    resumed = await cbctl.ok("resume", "mcis", "web", "-n", ns, *WAIT)
    assert resumed.out.strip().endswith("mcis/web Running:3 (R:3/3)")
    rebooted = await cbctl.ok("reboot", "mcis", "web", "-n", ns, "--subgroup", "g2", *WAIT)
    assert rebooted.out.strip().endswith("mcis/web Running:3 (R:3/3)")

    grown = await cbctl.ok("scale", "mcis", "web", "-n", ns, "-g", "g1", "--size", "4", *WAIT)
    assert grown.out.strip().splitlines() == ["mcis/web g1 scaling to 4", "mcis/web Running:5 (R:5/5)"]
    assert "4/4  4 Running" in grown.err
    shrunk = await cbctl.ok("scale", "mcis", "web", "-n", ns, "-g", "g1", "--size", "2", *WAIT)
    assert shrunk.out.strip().endswith("mcis/web Running:3 (R:3/3)")
    left = yaml.safe_load((await cbctl.ok("describe", "mcis", "web", "-n", ns, "-o", "yaml")).out)["vms"]
    assert {v["name"] for v in left} == {"g1-1", "g1-2", "g2-1"}
    # Applied again with a group more and another size, the file adds and scales.
    path.write_text(mcis_doc("web", ns, [(f"{conns[0].name}+{picks[0][0]}", picks[0][1], 2),
                                         (f"{conns[1].name}+{picks[1][0]}", picks[1][1], 2),
                                         (f"{conns[0].name}+{picks[0][0]}", picks[0][1], 1)]))
    reapplied = await cbctl.ok("apply", "-f", str(path), *WAIT)
    assert reapplied.out.strip() == "mcis/web configured" and "Running:5 (R:5/5)" in reapplied.err
    assert f"g3 ({conns[0].name})" in reapplied.err

    one_line_error(await cbctl("delete", "mcis", "web", "-n", ns), "not terminated", "FAILED_PRECONDITION")
    terminated = await cbctl.ok("terminate", "mcis", "web", "-n", ns, *WAIT)
    assert terminated.out.strip().endswith("mcis/web Terminated:5 (R:0/5)")
    assert (await cbctl.ok("delete", "mcis", "web", "-n", ns, *WAIT)).out.strip() == "mcis/web deleted"
    one_line_error(await cbctl("get", "mcis", "web", "-n", ns), "NOT_FOUND, HTTP 404")
    assert (await cbctl.ok("get", "mcis", "-n", ns)).out.strip() == "No mcis."

    # The defaults the dynamic create made, one set per connection; the namespace holds them.
    vnets = json.loads((await cbctl.ok("get", "vnets", "-n", ns, "-o", "json")).out)
    assert sorted(v["connection"] for v in vnets) == sorted(c.name for c in conns)
    one_line_error(await cbctl("delete", "namespace", ns), "still holds", "FAILED_PRECONDITION")
    for kind in ("sshkeys", "securitygroups", "vnets"):
        for item in json.loads((await cbctl.ok("get", kind, "-n", ns, "-o", "json")).out):
            await cbctl.ok("delete", kind, item["name"], "-n", ns)
    assert (await cbctl.ok("delete", "namespace", ns)).out.strip() == f"namespace/{ns} deleted"
    for c in conns:
        assert await twin_vm_names(cloudtwin_process, c) == set()


async def test_explicit_mcis_from_namespace_resources(cbctl: Cbctl, spider_client: spider_pb2_grpc.SpiderStub,
                                                      cloudtwin_process: servers.Server, tmp_path: Path) -> None:
    (conn,) = await connections(spider_client, cloudtwin_process, 1)
    spec, image = await cheapest_spec_and_image(spider_client, conn.name)
    ns = f"ns-{uuid.uuid4().hex[:6]}"
    docs = [
        {"kind": "namespace", "name": ns, "spec": {"description": "explicit"}},
        {"kind": "vnet", "name": "net", "namespace": ns, "connection": conn.name, "spec": {
            "vnet": {"ipv4Cidr": "10.5.0.0/16", "subnets": [{"name": "sub", "ipv4Cidr": "10.5.1.0/24"}]}}},
        {"kind": "securitygroup", "name": "web", "namespace": ns, "connection": conn.name, "spec": {
            "securityGroup": {"vnet": "net", "rules": [
                {"direction": "inbound", "protocol": "tcp", "fromPort": 22, "toPort": 22, "cidr": "0.0.0.0/0"}]}}},
        {"kind": "sshkey", "name": "key", "namespace": ns, "connection": conn.name, "spec": {"sshKey": {}}},
        {"kind": "spec", "name": "small", "namespace": ns, "connection": conn.name,
         "spec": {"specRef": {"cspSpec": spec}}},
        {"kind": "image", "name": "os", "namespace": ns, "connection": conn.name,
         "spec": {"imageRef": {"cspImage": image}}},
        {"kind": "mcis", "name": "db", "namespace": ns, "spec": {"subgroups": [{
            "name": "db", "connection": conn.name, "spec": "small", "image": "os", "vnet": "net", "subnet": "sub",
            "securityGroups": ["web"], "sshKey": "key", "size": 2}]}},
    ]
    path = tmp_path / "explicit.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    applied = await cbctl.ok("apply", "-f", str(path), *WAIT)
    assert applied.out.strip().splitlines() == [f"namespace/{ns} created", "vnet/net created",
                                                "securitygroup/web created", "sshkey/key created", "spec/small created",
                                                "image/os created", "mcis/db created"]
    assert "2/2  2 Running" in applied.err

    # `securitygroup` is tumblebug's with a namespace, spider's with a connection alone.
    sgs = await cbctl.ok("get", "sg", "-n", ns)
    assert sgs.out.split()[:4] == ["NAME", "CONNECTION", "STATUS", "VNET"] and "web" in sgs.out
    assert "CONNECTION" not in (await cbctl.ok("get", "sg", "-c", conn.name)).out.splitlines()[0]
    specs = json.loads((await cbctl.ok("get", "specs", "-n", ns, "-c", conn.name, "-o", "json")).out)
    assert [(s["name"], s["specRef"]["cspSpec"]) for s in specs] == [("small", spec)]
    assert json.loads((await cbctl.ok("get", "vnets", "-n", ns, "-c", "elsewhere", "-o", "json")).out) == []
    one_line_error(await cbctl("delete", "vnet", "net", "-n", ns), "used by", "FAILED_PRECONDITION")

    deleted = await cbctl.ok("delete", "mcis", "db", "-n", ns, "--terminate", *WAIT)
    assert deleted.out.strip() == "mcis/db deleted" and "deleted" in deleted.err
    cleaned = await cbctl.ok("delete", "-f", str(path))
    assert cleaned.out.strip().splitlines()[0] == "mcis/db already gone"
    assert cleaned.out.strip().splitlines()[-1] == f"namespace/{ns} deleted"
    assert await twin_vm_names(cloudtwin_process, conn) == set()


async def test_catalog_through_cbctl(cbctl: Cbctl, spider_client: spider_pb2_grpc.SpiderStub,
                                     cloudtwin_process: servers.Server) -> None:
    await connections(spider_client, cloudtwin_process, 2)
    cheap = json.loads((await cbctl.ok("get", "catalogspecs", "--where", "vcpu>=2,price<=0.2", "--where",
                                       "arch=x86_64", "--sort-by", "price", "--limit", "5", "-o", "json")).out)
    assert 0 < len(cheap) <= 5
    assert all(s["vcpu"] >= 2 and 0 < s["pricePerHour"] <= 0.2 and s["architecture"] == "x86_64" for s in cheap)
    assert [s["pricePerHour"] for s in cheap] == sorted(s["pricePerHour"] for s in cheap)
    assert all("+" in s["id"] for s in cheap)
    unknown = await cbctl("get", "catalogspecs", "--sort-by", "cost")
    assert unknown.code == 1 and "--sort-by 'cost'" in unknown.err and "price" in unknown.err
    table = await cbctl.ok("get", "cspecs", "--where", "vcpu=2", "--limit", "3")
    assert table.out.split()[:3] == ["ID", "PROVIDER", "REGION"] and len(table.out.strip().splitlines()) == 4
    one = json.loads((await cbctl.ok("get", "catalogspec", cheap[0]["id"], "-o", "json")).out)
    assert one == cheap[0]
    images = json.loads((await cbctl.ok("get", "catalogimages", "--where", f"connection={cheap[0]['connection']}",
                                        "-o", "json")).out)
    assert images and all(i["connection"] == cheap[0]["connection"] for i in images)
    # A connection made after the catalog was read is in it at once when a query names it.
    late = (await connections(spider_client, cloudtwin_process, 1))[0]
    fresh = json.loads((await cbctl.ok("get", "catalogspecs", "--where", f"connection={late.name}", "-o",
                                       "json")).out)
    assert fresh and all(s["connection"] == late.name for s in fresh)
    one_line_error(await cbctl("get", "catalogspecs", "--where", "colour=red"), "no filter 'colour'", "vcpu")
    one_line_error(await cbctl("get", "catalogspecs", "--where", "price>=1"), "price takes <=")
    # A benchmark campaign over that connection, listed and cancelled as its users do it. Agents are
    # not installed here, so its one VM waits for one until the cancel deletes it.
    made = await cbctl.ok("create", "campaign", "cc1", "--set", "maxVms=1", "--set",
                          f"requirements.connections=[{late.name}]")
    assert made.out.strip() == "campaign/cc1 created"
    listed = await cbctl.ok("get", "campaigns")
    row = next(line.split() for line in listed.out.splitlines() if line.startswith("cc1"))
    assert row[1] == "running" and ("creating:1" in row[2] or "benchmarking:1" in row[2]), listed.out
    cancelled = await cbctl.ok("cancel", "campaign", "cc1")
    assert cancelled.out.strip() == "campaign/cc1 cancelling: the vms it made are being deleted"


async def test_failed_vms_end_the_wait_with_the_clouds_words(cbctl: Cbctl, spider_client: spider_pb2_grpc.SpiderStub,
                                                             cloudtwin_process: servers.Server) -> None:
    provider, region = (await servers.twin_regions(cloudtwin_process))[-1]
    conn = await servers.make_connection(spider_client, cloudtwin_process, provider, region)
    spec, image = await cheapest_spec_and_image(spider_client, conn.name)
    ns = f"ns-{uuid.uuid4().hex[:6]}"
    await cbctl.ok("create", "namespace", ns)
    async with channel(cloudtwin_process.address) as ch:
        twin = tw_grpc.CloudTwinStub(ch)
        await twin.SetKnobs(tw.SetKnobsRequest(provider=provider, region=region, knobs=tw.Knobs(failure_rate=1.0)))
        try:
            made = await cbctl("create", "mcis", "bad", "-n", ns, "--set",
                               f"subgroups=[{{spec_id: {conn.name}+{spec}, image_id: {image}, size: 2}}]", *WAIT)
        finally:
            await twin.SetKnobs(tw.SetKnobsRequest(provider=provider, region=region, knobs=tw.Knobs(failure_rate=0)))
    assert made.code == 1 and made.out.strip() == "mcis/bad created"
    last = made.err.strip().splitlines()[-1]
    assert last.startswith("Error: mcis/bad: bad settled as Failed:2 (R:0/2): g1-1: ") and "g1-2: " in last
    assert "2/2  2 Failed" in made.err
    refined = await cbctl.ok("refine", "mcis", "bad", "-n", ns, *WAIT)
    assert refined.out.strip().splitlines()[-1] == "mcis/bad Empty:0 (R:0/0)"
    await cbctl.ok("delete", "mcis", "bad", "-n", ns, *WAIT)
    await cbctl.ok("delete", "namespace", ns, "--force")
    assert await twin_vm_names(cloudtwin_process, conn) == set()


async def test_mcis_errors_are_one_line(cbctl: Cbctl, spider_client: spider_pb2_grpc.SpiderStub,
                                        cloudtwin_process: servers.Server) -> None:
    ns = f"ns-{uuid.uuid4().hex[:6]}"
    await cbctl.ok("create", "namespace", ns)
    one_line_error(await cbctl("create", "namespace", ns), "already exists", "ALREADY_EXISTS")
    one_line_error(await cbctl("apply", "-f", "-", "-n", ns, stdin="kind: mcis\nname: x\nspec: {}\n"),
                   "spec.subgroups")
    one_line_error(await cbctl("create", "mcis", "x", "-n", ns, "--set",
                               "subgroups=[{spec_id: nowhere+small, image_id: img}]"), "spec_id", "NOT_FOUND")
    one_line_error(await cbctl("create", "mcis", "x", "-n", ns, "--set", "subgroups=[{spec_id: a}]", "--set",
                               "policy=sometimes"), "continue, rollback, refine")
    # A misspelled connection in spec_id is named as such, with the name it resembles.
    conn = (await connections(spider_client, cloudtwin_process, 1))[0].name
    spec, image = await cheapest_spec_and_image(spider_client, conn)
    typo = conn[:-1] + ("x" if conn[-1] != "x" else "y")
    one_line_error(await cbctl("create", "mcis", "x", "-n", ns, "--set",
                               f"subgroups=[{{spec_id: {typo}+{spec}, image_id: {conn}+{image}}}]"),
                   f"connection '{typo}' not found (did you mean '{conn}'", "NOT_FOUND")
    one_line_error(await cbctl("suspend", "mcis", "nothing", "-n", ns), "NOT_FOUND, HTTP 404")
    one_line_error(await cbctl("get", "mcis", "-n", "no-such-ns"), "namespace", "NOT_FOUND")
    one_line_error(await cbctl("scale", "vm", "x", "-g", "g", "--size", "2"), "cannot be scaled")
    one_line_error(await cbctl("suspend", "vm", "x", "-c", "c", "--subgroup", "g"), "are for an MCIS")
    one_line_error(await cbctl("delete", "vnet", "x", "-n", ns, "--terminate"), "--terminate is for an MCIS")
    one_line_error(await cbctl("refine", "vnet", "x", "-n", ns), "vnets cannot refine")
    one_line_error(await cbctl("get", "sg.nowhere"), "unknown service")
    verbose = await cbctl("create", "mcis", "x", "-n", ns, "--set", "subgroups=[{spec_id: bad, image_id: i}]", "-v")
    assert verbose.code == 1 and any(line.strip().startswith("field subgroups[0].spec_id")
                                     for line in verbose.err.splitlines())
    await cbctl.ok("delete", "namespace", ns)


# ---------------------------------------------------------------- the gateway


async def test_gateway_routes_and_documents_tumblebug(tumblebug_gateway_process: Gateway) -> None:
    async with httpx.AsyncClient(base_url=tumblebug_gateway_process.url, timeout=10) as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
        for path in ("/tumblebug/v1/namespaces", "/tumblebug/v1/namespaces/{namespace}/mcis:dynamic",
                     "/tumblebug/v1/namespaces/{namespace}/mcis/{name}:watch", "/tumblebug/v1/catalog/specs",
                     "/tumblebug/v1/namespaces/{namespace}/mcis/{mcis}/subgroups/{subgroup}:scale"):
            assert path in paths, path
        listed = await http.get("/tumblebug/v1/namespaces", headers={"Authorization": f"Bearer {KEY}"})
        assert listed.status_code == 200 and "namespaces" in listed.json()
        missing = await http.get("/tumblebug/v1/namespaces/nowhere/mcis/x:watch",
                                 headers={"Authorization": f"Bearer {KEY}"})
        assert missing.status_code == 404 and missing.json()["code"] == 5


# ---------------------------------------------------------------- parts


def test_mcis_documents_become_dynamic_or_explicit_requests() -> None:
    suffix, body = cli_mcis.create_request("web", {"policy": "refine", "subgroups": [
        {"spec_id": "c+s", "image_id": "i"}, {"name": "db", "specId": "c+s", "imageId": "i", "size": 3}]})
    assert suffix == ":dynamic" and body["name"] == "web" and body["policy"] == "POLICY_REFINE"
    assert [(g["name"], g["size"]) for g in body["subgroups"]] == [("g1", 1), ("db", 3)]
    suffix, body = cli_mcis.create_request("db", {"subgroups": [{"connection": "c", "spec": "s", "image": "i"}]})
    assert suffix == "" and body["mcis"]["name"] == "db"
    existing = {"subgroups": [{"name": "g1", "size": 2}, {"name": "db", "size": 3}]}
    assert cli_mcis.changes(existing, *cli_mcis.create_request("web", {"subgroups": [
        {"spec_id": "c+s", "image_id": "i", "size": 2}, {"spec_id": "c+s", "image_id": "i", "size": 4},
        {"name": "db", "spec_id": "c+s", "image_id": "i", "size": 3}]})) == [
        ("/subgroups", {"dynamic": {"spec_id": "c+s", "image_id": "i", "size": 4, "name": "g2"}})]
    assert cli_mcis.changes(existing, "", {"mcis": {"subgroups": [{"name": "g1", "size": 5}]}}) == [
        ("/subgroups/g1:scale", {"size": 5})]
    for bad in ({}, {"subgroups": "x"}, {"subgroups": [{"spec_id": "c+s", "connection": "c"}]}):
        with pytest.raises(ApiError):
            cli_mcis.create_request("x", bad)


def test_group_progress_counts_what_each_group_has_reached() -> None:
    record: dict[str, Any] = {"subgroups": [{"name": "a", "connection": "c1", "size": 2}, {"name": "b", "connection": "c2",
                                                                             "size": 1}]}
    vms: list[dict[str, Any]] = [{"name": "a-1", "subgroup": "a", "status": "RUNNING"},
                                 {"name": "a-2", "subgroup": "a", "status": "CREATING"},
           {"name": "a-3", "subgroup": "a", "status": "TERMINATING", "removing": True},
           {"name": "b-1", "subgroup": "b", "status": "FAILED"}]
    a, b = cli_mcis.groups(record, vms, "RUNNING")
    assert (a.done, a.total, a.words()) == (1, 3, "1 Running, 1 Creating, 1 leaving")
    assert (b.done, b.total) == (1, 1)  # failed is settled; the error is reported at the end
    a, b = cli_mcis.groups(record, vms, "SUSPENDED", only="b")
    assert (a.done, a.total) == (1, 2)
    gone = cli_mcis.groups(record, vms[:1], "TERMINATED", initial={"a": 3, "b": 1})
    assert [(g.done, g.total) for g in gone] == [(2, 3), (1, 1)]
    assert cli_mcis.failures([{**vms[3], "error": "InsufficientInstanceCapacity: none left"}]) == \
        "b-1: InsufficientInstanceCapacity: none left"
    assert cli_mcis.settled({"generation": "3", "observedGeneration": "3", "targetAction": "ACTION_NONE"}, 3)
    assert not cli_mcis.settled({"observedGeneration": "2", "targetAction": "ACTION_NONE"}, 3)


def test_kinds_resolve_by_scope_and_filters() -> None:
    assert find("sg", prefer(False, True)).service == "spider"
    assert find("sg", prefer(True, True)).service == "tumblebug"
    assert find("securitygroups", prefer(False, False)).service == "tumblebug"
    assert find("spec.spider").collection.startswith("/spider/")
    assert find("vm", "tumblebug").service == "spider"  # only spider has it
    spec = find("catalogspecs")
    assert where(spec, ["vcpu>=2,memory<=8", "provider=aws"]) == {"vcpuMin": "2", "memoryGibMax": "8",
                                                                   "provider": "aws"}
    assert where(spec, ["vcpu=4"]) == {"vcpuMin": "4", "vcpuMax": "4"}
    for bad in ("price=1", "vcpu", "size>=2"):
        with pytest.raises(ApiError):
            where(spec, [bad])
