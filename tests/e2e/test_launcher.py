"""`make run`'s launcher: starts everything healthy, registers demo clouds and the demo namespace,
prints an MCIS example that works as printed, refuses a second copy, and leaves nothing behind
after one Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cbapi.spider.v1 import spider_pb2 as pb
from cbapi.spider.v1 import spider_pb2_grpc
from services import tls
from services.processes import free_port
from services.rpc.client import channel, is_serving

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purpose.
    try:
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except OSError:
        return False


async def test_launcher_runs_the_suite_and_stops_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ports = {name: free_port() for name in ("etcd", "nats", "twin", "spider", "gateway", "dragonfly", "tumblebug",
                                                   "ladybug", "victoria", "ssh")}
    env = {**os.environ, "CB_RUN_DIR": str(tmp_path), "CB_ETCD_ENDPOINTS": f"127.0.0.1:{ports['etcd']}",
           "CB_NATS_URL": f"nats://127.0.0.1:{ports['nats']}", "CB_CLOUDTWIN_PORT": str(ports["twin"]),
           "CB_SPIDER_PORT": str(ports["spider"]), "CB_GATEWAY_PORT": str(ports["gateway"]),
           "CB_DRAGONFLY_PORT": str(ports["dragonfly"]), "CB_TUMBLEBUG_PORT": str(ports["tumblebug"]),
           "CB_LADYBUG_PORT": str(ports["ladybug"]), "CB_VICTORIAMETRICS_PORT": str(ports["victoria"]),
           "CB_CLOUDTWIN_SSH_PORT": str(ports["ssh"]),
           "CB_CLOUDTWIN_BOOT_LATENCY": "0.2"}
    env.pop("CB_ADMIN_API_KEY", None)
    out = (tmp_path / "launcher.out").open("wb")
    launcher = subprocess.Popen([sys.executable, "-m", "services.launcher"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while b"Ready in" not in (tmp_path / "launcher.out").read_bytes():
            assert launcher.poll() is None, (tmp_path / "launcher.out").read_text()
            assert time.monotonic() < deadline, "the suite did not come up"
            await asyncio.sleep(0.2)
        suite = json.loads((tmp_path / "suite.json").read_text())
        # The launcher made its CA and every process's certificate in the run directory, keys 0600;
        # this test calls its servers as the launcher's `admin`, as cbctl beside it does.
        keys = sorted(p.name for p in (tmp_path / "tls").glob("*.key"))
        assert {"ca.key", "admin.key", "etcd.key", "spider.key", "gateway.key"} <= set(keys)
        assert all((tmp_path / "tls" / k).stat().st_mode & 0o777 == 0o600 for k in keys)
        for name, value in tls.Authority.ensure(tmp_path / "tls").identity("admin").env().items():
            monkeypatch.setenv(name, value)
        # VictoriaMetrics runs (as dragonfly's storage) when it is installed.
        optional = {"victoria-metrics"} if shutil.which("victoria-metrics") else set()
        parts = {"etcd", "nats", "cloudtwin", "spider", "dragonfly", "tumblebug", "ladybug", "gateway"}
        assert set(suite) == parts | optional
        assert await is_serving(f"127.0.0.1:{ports['spider']}")
        assert await is_serving(f"127.0.0.1:{ports['twin']}")
        assert await is_serving(f"127.0.0.1:{ports['dragonfly']}")
        assert await is_serving(f"127.0.0.1:{ports['tumblebug']}")
        assert await is_serving(f"127.0.0.1:{ports['ladybug']}")
        async with channel(f"127.0.0.1:{ports['spider']}") as ch:
            conns = (await spider_pb2_grpc.SpiderStub(ch).ListConnections(
                pb.ListConnectionsRequest(page_size=100))).connections
        assert len({c.provider for c in conns}) >= 3 and len(conns) >= 6
        # The gateway: healthy, and the generated admin key (mode 0600) opens the API.
        key_file = tmp_path / "admin.key"
        assert key_file.stat().st_mode & 0o777 == 0o600 and str(key_file) in (tmp_path / "launcher.out").read_text()
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        async with httpx.AsyncClient(base_url=gateway, timeout=10) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/spider/v1/connections")).status_code == 401
            listed = await http.get("/spider/v1/connections", params={"pageSize": 100},
                                    headers={"Authorization": f"Bearer {key_file.read_text().strip()}"})
            assert listed.status_code == 200 and len(listed.json()["connections"]) == len(conns)
            # Tumblebug behind the gateway, with the demo namespace made at launch.
            namespaces = await http.get("/tumblebug/v1/namespaces",
                                        headers={"Authorization": f"Bearer {key_file.read_text().strip()}"})
            assert namespaces.status_code == 200
            assert [n["name"] for n in namespaces.json()["namespaces"]] == ["demo"]
        assert (tmp_path / "namespace").read_text().strip() == "demo"

        # The printed example works as printed (cbctl finds the key and the namespace in the run dir).
        example = next(line.strip() for line in (tmp_path / "launcher.out").read_text().splitlines()
                       if "cbctl create mcis" in line)
        argv = shlex.split(example)
        assert argv[1:4] == ["create", "mcis", "hello"] and "--wait" in argv
        # The cbctl it names is the one installed beside the launcher's Python (not on PATH unless
        # the venv is activated), and it runs from the repository as printed.
        assert Path(argv[0]).name == "cbctl" and (ROOT / argv[0]).exists()
        cbctl_env = {k: v for k, v in env.items() if k not in ("CB_API_KEY", "CB_NAMESPACE", "CBCTL_CONFIG")}
        made = subprocess.run([*argv, "--timeout", "40"], cwd=ROOT,
                              env={**cbctl_env, "CB_GATEWAY_URL": gateway, "HOME": str(tmp_path)},
                              capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
        assert made.stdout.strip() == "mcis/hello created" and "Running:4 (R:4/4)" in made.stderr

        second = subprocess.run([sys.executable, "-m", "services.launcher"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=30)
        assert second.returncode != 0 and "already running" in second.stderr

        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(30) == 0
        text = (tmp_path / "launcher.out").read_text()
        assert "nothing left running" in text
        for info in suite.values():
            assert not _alive(info["pid"]), f"pid {info['pid']} survived"
        assert not (tmp_path / "launcher.pid").exists()
    finally:
        # A failed test still stops what it started: the launcher stops its children on SIGINT;
        # whatever survives that is stopped by its PID.
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGINT)
            try:
                launcher.wait(30)
            except subprocess.TimeoutExpired:
                launcher.kill()
        suite_file = tmp_path / "suite.json"
        if suite_file.exists():
            for info in json.loads(suite_file.read_text()).values():
                if _alive(info["pid"]):
                    os.kill(info["pid"], signal.SIGKILL)
        out.close()
