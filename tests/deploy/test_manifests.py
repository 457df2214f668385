"""deploy/: the Kubernetes overlays render and validate against Kubernetes' own schemas, and the
compose file and the manifests agree with the code: every `CB_…` variable is a setting the process
it is given to reads, ports and addresses are the services' own, commands are the image's console
scripts, and every gRPC probe asks the health service of the container's own service."""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from dragonfly.settings import DragonflySettings
from services.gateway.settings import DEFAULT_PORTS, GatewaySettings
from services.natsauth import NatsAuthSettings
from services.processes import free_port
from services.settings import CommonSettings, TlsSettings
from spider.cloudtwin.settings import CloudTwinSettings
from spider.settings import SpiderSettings
from tests import servers
from tumblebug.settings import TumblebugSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "prod")
SUITE_IMAGE = "cb-suite:dev"


def _ladybug_settings() -> type[BaseSettings] | None:
    try:
        return importlib.import_module("ladybug.settings").LadybugSettings  # type: ignore[no-any-return]
    except ImportError:
        return None


def accepted(*classes: type[BaseSettings]) -> set[str]:
    """The environment variables the settings classes read: prefix + field name, upper case."""
    names: set[str] = set()
    for cls in classes:
        prefix = str(cls.model_config.get("env_prefix", ""))
        names |= {(prefix + field).upper() for field in cls.model_fields}
    return names


SHARED = (CommonSettings, TlsSettings)
# Ladybug is written beside this; until it lands, its server's own settings are what
# ServerSettings gives every service plus the two addresses it calls.
LADYBUG = _ladybug_settings()
LADYBUG_NAMES = accepted(LADYBUG) if LADYBUG else {
    "CB_LADYBUG_HOST", "CB_LADYBUG_PORT", "CB_LADYBUG_METRICS_PORT", "CB_LADYBUG_TUMBLEBUG_ADDR",
    "CB_LADYBUG_DRAGONFLY_ADDR"}
# What each program reads: its own class, the shared ones (and NATS's for dragonfly).
READS: dict[str, set[str]] = {
    "spider": accepted(SpiderSettings, *SHARED),
    "tumblebug": accepted(TumblebugSettings, *SHARED),
    "dragonfly": accepted(DragonflySettings, NatsAuthSettings, *SHARED),
    "cloudtwin": accepted(CloudTwinSettings, *SHARED),
    "ladybug": LADYBUG_NAMES | accepted(*SHARED),
    "gateway": accepted(GatewaySettings, *SHARED),
}
PORTS = {"spider": SpiderSettings().port, "tumblebug": TumblebugSettings().port,
         "dragonfly": DragonflySettings().port, "cloudtwin": CloudTwinSettings().port,
         "ladybug": LADYBUG().port if LADYBUG else DEFAULT_PORTS["ladybug"],  # type: ignore[attr-defined]
         "gateway": GatewaySettings().port}
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
# The program each command runs (a console script, or `python -m ladybug.server` until it has one).
PROGRAMS = {"cb-spider": "spider", "cb-tumblebug": "tumblebug", "cb-dragonfly": "dragonfly",
            "cb-cloudtwin": "cloudtwin", "cb-gateway": "gateway", "cb-ladybug": "ladybug",
            "ladybug.server": "ladybug"}


def program_of(command: list[str]) -> str:
    for word in command:
        if word in PROGRAMS:
            return PROGRAMS[word]
    return ""


def allowed_for(program: str, env: dict[str, str]) -> set[str]:
    names = READS[program]
    if program == "gateway":  # CB_<NAME>_ADDR of each backend it is told about
        services = env.get("CB_GATEWAY_SERVICES", GatewaySettings().services)
        names = names | {f"CB_{s.strip().upper()}_ADDR" for s in services.split(",") if s.strip()}
    return names


def default_of(value: str) -> str:
    """`${X:-2048}` → `2048` (what compose substitutes when X is unset)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


@dataclass
class Container:
    where: str
    program: str
    command: list[str]
    env: dict[str, str]
    image: str
    probe: list[str]
    ports: list[int]


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())  # type: ignore[no-any-return]


def compose_containers() -> list[Container]:
    out = []
    for name, svc in compose()["services"].items():
        command = [default_of(str(w)) for w in svc.get("command", [])]
        env = {k: default_of(str(v)) for k, v in (svc.get("environment") or {}).items()}
        probe = [default_of(str(w)) for w in svc.get("healthcheck", {}).get("test", [])]
        out.append(Container(f"compose {name}", program_of(command), command, env, default_of(svc["image"]),
                             probe, []))
    return out


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (it renders kustomize overlays)")
    done = subprocess.run([kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def k8s_containers(docs: list[dict[str, Any]], overlay: str) -> list[Container]:
    out = []
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e.get("value", "") for e in c.get("env", [])}
            probe = (c.get("readinessProbe") or {}).get("exec", {}).get("command", [])
            out.append(Container(f"{overlay} {doc['kind']}/{doc['metadata']['name']}", program_of(c.get("command", [])),
                                 c.get("command", []), env, c["image"], probe,
                                 [p["containerPort"] for p in c.get("ports", [])]))
    return out


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {overlay: render(overlay) for overlay in OVERLAYS}


def newest_schema() -> str:
    utils = pytest.importorskip("kubernetes_validate.utils", reason="kubernetes-validate is a dev extra")
    return str(utils.latest_version())


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", ["1.30.0", "newest"])
def test_overlay_passes_strict_schema_validation(overlay: str, version: str, tmp_path: Path,
                                                 rendered: dict[str, list[dict[str, Any]]]) -> None:
    version = newest_schema() if version == "newest" else version
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(yaml.safe_dump_all(rendered[overlay]))
    done = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version, str(manifest)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_strict_validation_rejects_an_unknown_field(tmp_path: Path, rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The validation above can fail: a misspelled field of a Deployment is an error."""
    bad = [dict(d) for d in rendered["dev"] if d["kind"] == "Deployment"][:1]
    bad[0]["spec"] = {**bad[0]["spec"], "replica": 2}
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(yaml.safe_dump_all(bad))
    done = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "-k", "1.30.0", str(manifest)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode != 0 and "replica" in done.stdout + done.stderr


def all_containers(rendered: dict[str, list[dict[str, Any]]]) -> list[Container]:
    return compose_containers() + [c for o in OVERLAYS for c in k8s_containers(rendered[o], o)]


def test_every_cb_variable_is_a_setting_its_program_reads(rendered: dict[str, list[dict[str, Any]]]) -> None:
    checked = 0
    for c in all_containers(rendered):
        names = {n for n in c.env if n.startswith("CB_")}
        if not names:
            continue
        assert c.program, f"{c.where}: runs {c.command}, not a program of the suite, yet gets {sorted(names)}"
        dead = names - allowed_for(c.program, c.env)
        assert not dead, f"{c.where} ({c.program}) does not read {sorted(dead)}"
        checked += len(names)
    assert checked > 50


def test_every_service_of_the_suite_is_deployed_everywhere(rendered: dict[str, list[dict[str, Any]]]) -> None:
    want = {"spider", "tumblebug", "dragonfly", "ladybug", "gateway"}
    assert want | {"cloudtwin"} <= {c.program for c in compose_containers()}
    assert want | {"cloudtwin"} <= {c.program for c in k8s_containers(rendered["dev"], "dev")}
    assert want <= {c.program for c in k8s_containers(rendered["prod"], "prod")}
    engines = {d["metadata"]["name"] for d in rendered["prod"] if d["kind"] == "StatefulSet"}
    assert {"etcd", "nats", "victoria-metrics"} <= engines


def test_ports_addresses_images_commands_and_probes_agree_with_the_code(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    for c in all_containers(rendered):
        if not c.program:
            continue
        prefix = f"CB_{c.program.upper()}_"
        # It listens on its own default port, everywhere, and says so to Kubernetes.
        assert c.env.get(prefix + "PORT") == str(PORTS[c.program]), c.where
        if c.ports:
            assert c.ports == [PORTS[c.program]], c.where
        # Whoever it calls, it calls on that service's port.
        for key, value in c.env.items():
            m = re.fullmatch(r"CB_(?:[A-Z]+_)?([A-Z]+)_ADDR", key)
            if m and value:
                callee = m.group(1).lower()
                assert value == f"{callee}:{PORTS[callee]}", f"{c.where}: {key}={value}"
        # The suite's own image, running one of its console scripts.
        assert c.image == SUITE_IMAGE, c.where
        if c.command[0] != "python":
            assert c.command[0] in SCRIPTS, f"{c.where}: {c.command[0]} is not a console script"
        # Its probe asks its own health (the gateway's is HTTP /healthz, a native probe in k8s).
        if c.probe:
            assert c.probe == ["CMD", "cb-healthcheck", c.program] or c.probe == ["cb-healthcheck", c.program], c.where
        elif c.program != "gateway":
            pytest.fail(f"{c.where} has no health probe")
    for doc in rendered["prod"]:
        if doc["kind"] == "Service" and doc["metadata"]["name"] in PORTS:
            assert [p["port"] for p in doc["spec"]["ports"]] == [PORTS[doc["metadata"]["name"]]]


def test_healthcheck_script_knows_the_services_ports() -> None:
    sys.path.insert(0, str(DEPLOY))
    try:
        healthcheck = importlib.import_module("healthcheck")
    finally:
        sys.path.remove(str(DEPLOY))
    assert healthcheck.DEFAULT_PORTS == PORTS


def test_prod_runs_clustered_engines_and_spares_every_service(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["prod"]
    replicas = {d["metadata"]["name"]: d["spec"]["replicas"] for d in docs if d["kind"] in ("Deployment", "StatefulSet")}
    assert replicas["etcd"] == 3 and replicas["nats"] == 3
    assert all(replicas[s] >= 2 for s in ("spider", "tumblebug", "dragonfly", "ladybug", "gateway"))
    etcd = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "etcd")
    env = {e["name"]: e.get("value") for e in etcd["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ETCD_MEMBERS"] == "3"
    nats_conf = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("nats-config"))
    assert "cluster" in nats_conf["data"]["nats.conf"] and "nats-2.nats:6222" in nats_conf["data"]["nats.conf"]
    budgets = {d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for d in docs
               if d["kind"] == "PodDisruptionBudget"}
    assert set(replicas) - {"victoria-metrics"} <= budgets
    assert any(d["kind"] == "Ingress" for d in docs)
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            for c in d["spec"]["template"]["spec"]["containers"]:
                assert c["resources"]["requests"] and c["resources"]["limits"], d["metadata"]["name"]
                assert c["readinessProbe"] and c["livenessProbe"], d["metadata"]["name"]


def test_network_policies_admit_only_the_suites_flows(rendered: dict[str, list[dict[str, Any]]]) -> None:
    policies = {d["metadata"]["name"]: d for d in rendered["prod"] if d["kind"] == "NetworkPolicy"}
    assert policies["default-deny-ingress"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}

    def callers(target: str) -> set[str]:
        found: set[str] = set()
        for rule in policies[target]["spec"]["ingress"]:
            for peer in rule.get("from", []):
                sel = peer["podSelector"]
                found |= set(sel.get("matchLabels", {}).values())
                for expr in sel.get("matchExpressions", []):
                    found |= set(expr["values"])
        return found

    assert callers("spider") == {"tumblebug", "gateway"}
    assert callers("tumblebug") == {"ladybug", "gateway"}
    assert callers("dragonfly") == {"tumblebug", "ladybug", "gateway"}
    assert callers("ladybug") == {"gateway"}
    assert callers("victoria-metrics") == {"dragonfly"}
    assert callers("etcd") == {"spider", "tumblebug", "dragonfly", "ladybug", "etcd"}


def test_compose_keeps_secrets_out_of_the_file() -> None:
    text = (DEPLOY / "docker-compose.yaml").read_text()
    assert "BEGIN" not in text and "$2b$" not in text
    spec = compose()
    for name, svc in spec["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if key.endswith(("_FILE",)) and "secret" in str(value).lower():
                secret = str(value).rsplit("/", 1)[-1]
                assert secret in svc["secrets"], f"{name}: {key} names a secret it is not given"
        assert "CB_ADMIN_API_KEY" not in (svc.get("environment") or {}), name
    assert all("file" in s for s in spec["secrets"].values())


def test_make_secrets_makes_every_secret_the_manifests_and_compose_mount(
        tmp_path: Path, rendered: dict[str, list[dict[str, Any]]]) -> None:
    done = subprocess.run([sys.executable, str(DEPLOY / "make_secrets.py"), str(tmp_path / "s"), "--kubernetes",
                           "cb-suite", "--domain", "cb-suite.svc"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    made = {d["metadata"]["name"]: set(d["data"]) for d in
            yaml.safe_load_all((tmp_path / "s" / "kubernetes-secrets.yaml").read_text())}
    for overlay in OVERLAYS:
        for doc in rendered[overlay]:
            if doc["kind"] not in ("Deployment", "StatefulSet"):
                continue
            for volume in doc["spec"]["template"]["spec"].get("volumes", []):
                if "secret" in volume:
                    assert volume["secret"]["secretName"] in made or volume["secret"]["secretName"].endswith(
                        "ingress-tls"), f"{overlay} {doc['metadata']['name']}: {volume}"
    assert made["cb-spider-tls"] == {"ca.crt", "tls.crt", "tls.key"}
    # Compose reads the same directory: every secret file it names is there.
    for name, secret in compose()["secrets"].items():
        path = default_of(secret["file"]).replace("./secrets", str(tmp_path / "s"))
        assert Path(path).is_file(), f"compose secret {name}: {path} was not made"
    # Again: nothing changes (the CA and keys are kept).
    before = (tmp_path / "s" / "tls" / "ca.crt").read_bytes(), (tmp_path / "s" / "admin.key").read_bytes()
    subprocess.run([sys.executable, str(DEPLOY / "make_secrets.py"), str(tmp_path / "s")], check=True, timeout=120,
                   capture_output=True)
    assert before == ((tmp_path / "s" / "tls" / "ca.crt").read_bytes(), (tmp_path / "s" / "admin.key").read_bytes())


async def test_healthcheck_script_asks_a_real_service_over_mutual_tls(spider_process: servers.Server,
                                                                      tmp_path: Path) -> None:
    """The image's health check against the session's spider (mutual TLS with the session CA):
    SERVING is exit 0; a port nobody serves is exit 1."""
    _, port = spider_process.address.rsplit(":", 1)

    async def check(p: str) -> int:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(DEPLOY / "healthcheck.py"), "spider",
            env={**os.environ, "CB_SPIDER_HOST": "0.0.0.0", "CB_SPIDER_PORT": p, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        await proc.communicate()
        return await proc.wait()

    assert await check(port) == 0
    assert await check(str(free_port())) == 1
