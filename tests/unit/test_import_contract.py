"""The import contract (pyproject.toml's [tool.importlinter]) holds on the tree, fails on a tree
with imports that run the wrong way, and places every module of the packages it splits."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("services", "spider", "tumblebug", "dragonfly", "ladybug")
APPS = {"services.gateway", "services.cli", "services.launcher"}

# One import per contract, each running the wrong way, appended to a module the contract names
# (a module it does not name fails test_every_module_is_placed instead).
VIOLATIONS = {
    "services/bus.py": "import spider.servicer\n",  # the shared runtime imports a service
    "tumblebug/catalog.py": "import ladybug.records\n",  # one service imports another
    "ladybug/records.py": "import services.cli.session\n",  # a service imports an app
    "spider/cloudtwin/sshd.py": "import spider.servicer\nimport dragonfly.agent.commands\n",
    "dragonfly/collector.py": "import dragonfly.agent.agent\n",  # the service imports the agent's runtime
    "dragonfly/agent/backlog.py": "import dragonfly.servicer\n",  # the agent imports the service
}
BROKEN = (
    "The shared runtime (services minus its apps) imports no service and no app BROKEN",
    "The services are independent of each other (they talk through cbapi clients) BROKEN",
    "Apps (gateway, cbctl, launcher) are on top: no service imports them BROKEN",
    "CloudTwin is independent of spider's service code BROKEN",
    "Dragonfly's service does not import the agent (they share dragonfly.protocol) BROKEN",
    "dragonfly's service BROKEN",
)


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on `tree` (its pyproject.toml, its packages first on the path)."""
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command())", "--no-cache"],
                          cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=240)


def copy_tree(dest: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "static"))


def test_contract_fails_on_wrong_way_imports_and_holds_on_the_tree(tmp_path: Path) -> None:
    copy_tree(tmp_path)
    for path, text in VIOLATIONS.items():
        with (tmp_path / path).open("a") as module:
            module.write(text)
    broken = lint_imports(tmp_path)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    out = " ".join(broken.stdout.split())
    for line in BROKEN:
        assert line in out, f"{line!r} not reported:\n{broken.stdout}"
    # CloudTwin may use the agent's public names only, not its modules.
    assert "spider.cloudtwin.sshd -> dragonfly.agent.commands" in out

    for path in VIOLATIONS:
        shutil.copy(ROOT / path, tmp_path / path)
    kept = lint_imports(tmp_path)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "0 broken" in kept.stdout


def test_every_module_is_placed_in_the_contract() -> None:
    """A new module of services/, spider/ or dragonfly/ must be named in the contract's lists,
    or the contract would silently not look at it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contracts = {c["id"]: c for c in config["contracts"]}
    placed = {
        "services": set(contracts["runtime"]["source_modules"]) | APPS,
        "spider": set(contracts["cloudtwin"]["forbidden_modules"]) | {"spider.cloudtwin"},
        "dragonfly": set(contracts["agent-library"]["forbidden_modules"]) | {"dragonfly.agent", "dragonfly.protocol"},
    }
    for package, names in placed.items():
        children = {f"{package}.{p.stem if p.suffix else p.name}" for p in (ROOT / package).iterdir()
                    if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
        assert children == names, f"{package}: not placed {sorted(children - names)}, gone {sorted(names - children)}"
