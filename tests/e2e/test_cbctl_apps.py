"""cbctl and the gateway over ladybug, as a user drives them: real `python -m services.cli`
processes against a real gateway in front of ladybug and the agent-installing tumblebug. An app
applied from YAML onto two twin VMs, its rollout followed with a progress bar, a changed spec
applied as the next revision, `rollout status|undo|promote`, `scale app`, `logs app`."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from tests import servers
from tests.integration.tumblebug.helpers import namespace
from tests.integration.tumblebug.monitored import mcis_with_healthy_agents
from tests.support.cbctl import Cbctl
from tests.support.gateway import KEY, Gateway, start_gateway

APP_FILE = Path(__file__).parents[2] / "bench" / "http_app.py"
WAIT = ("--wait", "--timeout", "90")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ladybug(run_dir: Path, etcd_process: servers.Server,
                  monitored_tumblebug_process: servers.Server) -> AsyncIterator[servers.Server]:
    ep_dir = run_dir / "cbep"
    server = await servers.start_ladybug(run_dir / "ladybug-cbctl", etcd_process, monitored_tumblebug_process,
                                         monitored_tumblebug_process.env["CB_TUMBLEBUG_DRAGONFLY_ADDR"],
                                         CB_LADYBUG_ENDPOINT_RUN_DIR=str(ep_dir))
    yield server
    server.stop()
    from tests.support.ladybug import stop_stray_haproxies
    stop_stray_haproxies(ep_dir)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(tmp_path_factory: pytest.TempPathFactory, monitored_tumblebug_process: servers.Server,
                  ladybug: servers.Server) -> AsyncIterator[Gateway]:
    gw = await start_gateway(tmp_path_factory.mktemp("gateway-apps"),
                             {"tumblebug": monitored_tumblebug_process.address, "ladybug": ladybug.address})
    yield gw
    gw.proc.stop()


@pytest.fixture
def cbctl(gateway: Gateway, tmp_path: Path) -> Cbctl:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CB_", "CBCTL_", "XDG_"))}
    env.update(HOME=str(home), CB_RUN_DIR=str(tmp_path / "run"), CB_GATEWAY_URL=gateway.url, CB_API_KEY=KEY,
               COLUMNS="200")
    return Cbctl(env, home)


def app_doc(ns: str, text: str, update: dict[str, object]) -> str:
    return yaml.safe_dump({"kind": "app", "name": "web", "namespace": ns, "spec": {
        "mcis": "apps",
        "artifact": {"command": 'echo "serving $TEXT on $HOST:$PORT"; exec python3 http_app.py "$HOST" "$PORT" "$TEXT"',
                     "files": {"http_app.py": base64.b64encode(APP_FILE.read_bytes()).decode()}},
        "env": {"TEXT": text}, "ports": [{"name": "http", "port": 8080}], "instances": 2,
        "healthCheck": {"httpPath": "/health", "intervalS": 1},
        "update": update}}, sort_keys=False)


async def test_an_app_through_cbctl(cbctl: Cbctl, monitored_tumblebug_client: tumblebug_pb2_grpc.TumblebugStub,
                                    spider_client: spider_pb2_grpc.SpiderStub, cloudtwin_process: servers.Server,
                                    tmp_path: Path) -> None:
    ns = await namespace(monitored_tumblebug_client)
    await mcis_with_healthy_agents(monitored_tumblebug_client, spider_client, cloudtwin_process, ns, "apps", 2)
    # A generous health deadline: on a loaded machine a new instance may take over 10 s (the default)
    # to pass its first probes, and this test is about cbctl, not about failed rollouts.
    rolling = {"type": "ROLLING", "minHealthyTimeS": 0.5, "healthyDeadlineS": 60}
    doc = tmp_path / "app.yaml"
    doc.write_text(app_doc(ns, "v1", rolling))
    first = await cbctl.ok("apply", "-f", str(doc), *WAIT)
    assert "app/web created" in first.out and "revision 1 available: 2/2 healthy" in first.out
    listed = await cbctl.ok("get", "apps", "-n", ns)
    assert "web" in listed.out and "AVAILABLE" in listed.out
    # A changed spec is the next revision; the bar follows its rollout to the end.
    doc.write_text(app_doc(ns, "v2", rolling))
    second = await cbctl.ok("apply", "-f", str(doc), *WAIT)
    assert "app/web configured" in second.out and "revision 2 available" in second.out
    assert "app/web r2" in second.out  # the bar's line
    status = await cbctl.ok("rollout", "status", "web", "-n", ns)
    assert "revision 2 available: 2/2 healthy" in status.out
    scaled = await cbctl.ok("scale", "app", "web", "--size", "1", "-n", ns, *WAIT)
    assert "1/1 healthy" in scaled.out
    logs = await cbctl.ok("logs", "app", "web", "-n", ns, "--tail", "5")
    assert "[web-r2-0] serving v2 on" in logs.out
    undo = await cbctl.ok("rollout", "undo", "web", "--to-revision", "1", "-n", ns, *WAIT)
    assert "available" in undo.out
    # A canary waits for promotion by hand; promote lets the rest follow.
    doc.write_text(app_doc(ns, "v4", {"type": "CANARY", "canaries": 1, "minHealthyTimeS": 0.5, "healthyDeadlineS": 60}))
    paused = await cbctl.ok("apply", "-f", str(doc), *WAIT)
    assert "paused" in paused.out and "cbctl rollout promote web" in paused.out
    await cbctl.ok("rollout", "promote", "app/web", "-n", ns)
    done = await cbctl.ok("rollout", "status", "web", "-n", ns, "--timeout", "90")
    assert "available" in done.out
    wrong = await cbctl("rollout", "status", "mcis/web", "-n", ns)
    assert wrong.code == 1 and "rollouts are of applications" in wrong.err
    # More instances than the VMs have room for (one per VM): --wait says so when its time is up,
    # though nothing changes meanwhile (no event comes, only keepalives).
    stuck = await cbctl("scale", "app", "web", "--size", "3", "-n", ns, "--wait", "--timeout", "4")
    assert stuck.code == 1 and "did not end within 4s" in stuck.err and "no VM with room" in stuck.err, stuck.err
    await cbctl.ok("delete", "app", "web", "-n", ns)
