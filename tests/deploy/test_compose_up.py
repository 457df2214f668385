"""deploy/docker-compose.yaml brought up for real: the suite's image built from this checkout, the
compose file as users run it plus a test-only override for host networking (this machine's Docker
has no bridge: containers.md), every server on 127.0.0.1 on a free port of its own. Through the
gateway: a dynamic MCIS on CloudTwin, a command on its VMs, their metrics. Then `down -v`, and no
container, volume or process is left (dockerd is stopped by its PID).

Skipped, saying why, only where it cannot run: not root, or no apt-get to install docker.io,
docker-compose and mmdebstrap. CI is root with apt and runs it."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as tw_grpc
from services.processes import free_port
from tests.deploy import docker, prefetch

# Building the image takes minutes the first time (its dependencies layer is cached after).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

ROOT = docker.ROOT
COMPOSE_FILE = ROOT / "deploy" / "docker-compose.yaml"
IMAGE = docker.IMAGE
VM_IMAGE = "cb-test/victoria-metrics:local"
PORTS = ("ETCD_PORT", "ETCD_PEER_PORT", "NATS_PORT", "NATS_MONITOR_PORT", "VM_PORT", "CLOUDTWIN_PORT",
         "CLOUDTWIN_SSH_PORT", "SPIDER_PORT", "TUMBLEBUG_PORT", "DRAGONFLY_PORT", "LADYBUG_PORT", "GATEWAY_PORT")


@dataclass
class Stack:
    daemon: docker.Daemon
    env: dict[str, str]
    project: str
    files: list[str]
    secrets: Path
    image_bytes: int
    build_s: float
    up_s: float

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.env['GATEWAY_PORT']}"

    def compose(self, *args: str, check: bool = True, timeout: float = 600) -> str:
        files = [a for f in self.files for a in ("-f", f)]
        return self.daemon.compose("-p", self.project, *files, *args, env=self.env, check=check, timeout=timeout).stdout


def without_published_ports(path: Path) -> None:
    """The compose file with one change: no published ports (the gateway's). Docker refuses port
    bindings on the host network, and an override cannot remove a key in compose 1.29."""
    spec = yaml.safe_load(COMPOSE_FILE.read_text())
    published = {name: svc.pop("ports") for name, svc in spec["services"].items() if "ports" in svc}
    assert list(published) == ["gateway"], published
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def host_network_override(path: Path) -> None:
    """Every service on the host's network (no bridge here), reaching the others by name through
    extra_hosts; VictoriaMetrics from a stand-in image (nothing can be pulled here)."""
    spec = yaml.safe_load(COMPOSE_FILE.read_text())
    hosts = [f"{name}:127.0.0.1" for name in spec["services"]]
    services: dict[str, Any] = {name: {"network_mode": "host", "extra_hosts": hosts} for name in spec["services"]}
    services["victoria-metrics"] |= {"entrypoint": ["victoria-metrics"], "healthcheck": {"test": [
        "CMD", "python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:${VM_PORT}/health', timeout=3)"]}}
    path.write_text(yaml.safe_dump({"services": services}))


def victoria_metrics_image(d: docker.Daemon, scratch: Path) -> None:
    binary = shutil.which("victoria-metrics")
    if binary is None:
        pytest.skip("victoria-metrics is not installed (apt-get install victoria-metrics): the stand-in image needs it")
    context = scratch / "vm-image"
    context.mkdir()
    shutil.copy(binary, context / "victoria-metrics")
    (context / "Dockerfile").write_text(f"FROM {docker.BASE_TAG}\nCOPY victoria-metrics /usr/local/bin/victoria-metrics\n")
    d.run("build", "-q", "--network", "none", "-t", VM_IMAGE, str(context))


def healthy(stack: Stack) -> dict[str, str]:
    ids = stack.compose("ps", "-q").split()
    states = json.loads(stack.daemon.run("inspect", *ids).stdout) if ids else []
    return {s["Name"].lstrip("/"): (s["State"].get("Health") or {}).get("Status", s["State"]["Status"]) for s in states}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    prefetch.wait()  # what it built, this test finds in Docker's cache
    reason = docker.why_not()
    if reason:
        pytest.skip(f"docker-compose deployment test: {reason}")
    scratch = Path(tempfile.mkdtemp(prefix="cbd-", dir="/tmp"))  # short: dockerd's socket path has a limit
    try:
        with docker.daemon(scratch / "d") as d:
            s = prepare(d, scratch)
            t0 = time.monotonic()
            try:
                s.compose("up", "-d", timeout=900)
                deadline = time.monotonic() + 600
                while True:
                    states = healthy(s)
                    waiting = {n: st for n, st in states.items() if st != "healthy" and "ladybug" not in n}
                    if not waiting:
                        break
                    if time.monotonic() > deadline:
                        raise AssertionError(f"not healthy: {waiting}\n{s.compose('logs', '--tail=30', check=False)}")
                    time.sleep(1)
                s.up_s = time.monotonic() - t0
                yield s
            finally:
                s.compose("down", "-v", "--remove-orphans", check=False)
                left = d.run("ps", "-aq").stdout.split(), d.run("volume", "ls", "-q").stdout.split()
                assert left == ([], []), f"left after down: containers {left[0]}, volumes {left[1]}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    # dockerd (and the containerd it ran) were stopped by PID: nothing runs from the scratch directory.
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    assert [line for line in ps.splitlines() if str(scratch) in line] == []
    print(json.dumps({"image_mb": round(s.image_bytes / 2**20), "build_s": round(s.build_s, 1),
                      "compose_up_s": round(s.up_s, 1)}))


def prepare(d: docker.Daemon, scratch: Path) -> Stack:
    """The images (base, VictoriaMetrics stand-in, the suite's from this checkout), the secrets, the
    host-network override and a free port for every server."""
    build_s = docker.prepare_images(d, sys.executable)
    victoria_metrics_image(d, scratch)
    size = int(d.run("image", "inspect", "-f", "{{.Size}}", IMAGE).stdout)
    secrets = scratch / "secrets"
    secrets.mkdir()
    d.run("run", "--rm", "--network", "none", "--user", "0", "-v", f"{secrets}:/out", IMAGE,
          "cb-make-secrets", "/out", "--owner", "10001")
    compose_file, override = scratch / "docker-compose.yaml", scratch / "host-network.yaml"
    without_published_ports(compose_file)
    host_network_override(override)
    used: set[int] = set()
    ports: dict[str, str] = {}
    for name in PORTS:
        port = free_port()
        while port in used:
            port = free_port()
        used.add(port)
        ports[name] = str(port)
    env = {**ports, "BIND_HOST": "127.0.0.1", "SECRETS_DIR": str(secrets), "SUITE_IMAGE": IMAGE,
           "VICTORIA_METRICS_IMAGE": VM_IMAGE}
    return Stack(d, env, f"cbt{uuid.uuid4().hex[:6]}", [str(compose_file), str(override)], secrets, size, build_s, 0.0)


async def _twin_region(stack: Stack) -> tuple[str, str]:
    """A (provider, region) CloudTwin plays, asked as admin with the deployment's own CA."""
    tls_dir = stack.secrets / "tls"
    creds = grpc.ssl_channel_credentials((tls_dir / "ca.crt").read_bytes(), (tls_dir / "admin.key").read_bytes(),
                                         (tls_dir / "admin.crt").read_bytes())
    async with grpc.aio.secure_channel(f"127.0.0.1:{stack.env['CLOUDTWIN_PORT']}", creds) as ch:
        reply = await tw_grpc.CloudTwinStub(ch).ListProviders(tw.ListProvidersRequest(), timeout=30)
    provider = reply.providers[0]
    return provider.name, provider.regions[0]


async def test_scenario_through_the_gateway(stack: Stack) -> None:
    states = healthy(stack)
    assert all(st == "healthy" for n, st in states.items() if "ladybug" not in n), states
    if (ROOT / "ladybug" / "server.py").exists():  # once ladybug has landed, it must serve too
        assert next(st for n, st in states.items() if "ladybug" in n) == "healthy", states
    key = (stack.secrets / "admin.key").read_text().strip()
    provider, region = await _twin_region(stack)
    twin = f"cloudtwin:{stack.env['CLOUDTWIN_PORT']}"
    async with httpx.AsyncClient(base_url=stack.gateway, headers={"Authorization": f"Bearer {key}"},
                                 timeout=60) as http:
        async def ok(method: str, path: str, **kw: Any) -> Any:
            response = await http.request(method, path, **kw)
            assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text}"
            return response.json()

        assert (await http.get("/spider/v1/drivers", headers={"Authorization": "Bearer wrong"})).status_code == 401
        await ok("POST", "/spider/v1/credentials", json={
            "name": "twin", "driver": "mock", "values": {"access_key": "acct-compose", "secret_key": "s3cret"}})
        await ok("POST", "/spider/v1/regions", json={"name": "twin-r", "driver": "mock", "region": region,
                                                     "settings": {"endpoint": twin, "provider": provider}})
        await ok("POST", "/spider/v1/connections", json={"name": "twin-c", "driver": "mock", "credential": "twin",
                                                         "region": "twin-r"})
        specs = (await ok("GET", "/spider/v1/connections/twin-c/specs", params={"pageSize": 1000}))["specs"]
        spec = min((s for s in specs if s["architecture"] == "x86_64"), key=lambda s: s.get("pricePerHour", 0))
        images = (await ok("GET", "/spider/v1/connections/twin-c/images", params={"pageSize": 1000}))["images"]
        image = next(i for i in images if i["architecture"] == "x86_64")
        await ok("POST", "/tumblebug/v1/namespaces", json={"name": "compose"})
        await ok("POST", "/tumblebug/v1/namespaces/compose/mcis:dynamic", json={
            "name": "web", "subgroups": [{"name": "g", "specId": f"twin-c+{spec['name']}", "imageId": image["name"],
                                          "size": 2}]})
        deadline = time.monotonic() + 180
        while True:
            vms = (await ok("GET", "/tumblebug/v1/namespaces/compose/mcis/web/vms")).get("vms", [])
            if len(vms) == 2 and all(v.get("agentStatus") == "Healthy" for v in vms):
                break
            assert time.monotonic() < deadline, f"VMs and agents not up: {vms}"
            await asyncio.sleep(1)

        ran = await ok("POST", "/tumblebug/v1/namespaces/compose/mcis/web:command", json={"command": "echo hello"})
        results = ran["results"]
        assert sorted(r["vm"] for r in results) == sorted(v["name"] for v in vms)
        assert all(r["result"]["stdout"] == "hello\n" and not r.get("error") for r in results), results

        deadline = time.monotonic() + 120
        while True:  # the agents report every few seconds, into VictoriaMetrics
            series = (await ok("GET", "/tumblebug/v1/namespaces/compose/mcis/web/metrics/cpu",
                               params={"duration": "10m"})).get("series", [])
            if len(series) >= 2 and all(s.get("points") for s in series):
                break
            assert time.monotonic() < deadline, f"no metrics: {series}"
            await asyncio.sleep(2)
    assert stack.image_bytes > 0
