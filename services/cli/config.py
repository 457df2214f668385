"""cbctl's configuration: flags, then `CB_*` environment variables, then the config file.

The file is `$CBCTL_CONFIG`, else `$XDG_CONFIG_HOME/cbctl/config.yaml`, else
`~/.config/cbctl/config.yaml`:

    gateway: http://127.0.0.1:8000
    api_key: cb…               # the key itself, as `cbctl create apikey` printed it
    connection: aws-seoul      # default for connection-scoped kinds
    namespace: demo            # default for namespace-scoped kinds (tumblebug's)
    output: table
    timeout: 30

With no key anywhere, the admin key of a local suite (`<CB_RUN_DIR or .run>/admin.key`) is used,
so `cbctl up` in one terminal and `cbctl get …` in another just work. Likewise the namespace:
the local suite's (`<run dir>/namespace`, its demo namespace), else `default`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

DEFAULT_GATEWAY = "http://127.0.0.1:8000"
DEFAULT_NAMESPACE = "default"
OUTPUTS = ("table", "json", "yaml")


class ConfigError(Exception):
    """The configuration file or a setting cannot be used."""


@dataclass(frozen=True)
class Config:
    """Where the gateway is, how to authenticate, and the defaults for commands."""

    gateway: str = DEFAULT_GATEWAY
    api_key: str = ""
    connection: str = ""
    namespace: str = ""
    output: str = "table"
    timeout: float = 30.0
    source: str = "defaults"

    def with_flags(self, **flags: Any) -> Config:
        """Flags given on the command line win; None means not given."""
        given = {k: v for k, v in flags.items() if v not in (None, "")}
        return replace(self, **given) if given else self


def config_path(environ: Mapping[str, str]) -> Path:
    if environ.get("CBCTL_CONFIG"):
        return Path(environ["CBCTL_CONFIG"]).expanduser()
    base = Path(environ["XDG_CONFIG_HOME"]) if environ.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "cbctl" / "config.yaml"


def _file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    unknown = set(data) - {"gateway", "api_key", "connection", "namespace", "output", "timeout"}
    if unknown:
        raise ConfigError(f"{path}: unknown settings {', '.join(sorted(unknown))}")
    return data


def load(environ: Mapping[str, str] | None = None) -> Config:
    """The configuration from the file and the environment (flags are applied by the caller)."""
    env = os.environ if environ is None else environ
    path = config_path(env)
    data = _file(path)
    values: dict[str, Any] = {k: v for k, v in data.items() if v is not None}
    for key, var in (("gateway", "CB_GATEWAY_URL"), ("api_key", "CB_API_KEY"), ("connection", "CB_CONNECTION"),
                     ("namespace", "CB_NAMESPACE"), ("output", "CB_OUTPUT"), ("timeout", "CB_TIMEOUT")):
        if env.get(var):
            values[key] = env[var]
    if not values.get("api_key") and env.get("CB_ADMIN_API_KEY"):
        values["api_key"] = env["CB_ADMIN_API_KEY"]
    run_dir = Path(env.get("CB_RUN_DIR", ".run"))
    for key, local in (("api_key", run_dir / "admin.key"), ("namespace", run_dir / "namespace")):
        if not values.get(key) and local.is_file():
            values[key] = local.read_text().strip()
    values["namespace"] = values.get("namespace") or DEFAULT_NAMESPACE
    try:
        values["timeout"] = float(values.get("timeout", 30.0))
    except (TypeError, ValueError):
        raise ConfigError(f"timeout must be a number of seconds, not {values['timeout']!r}") from None
    values = {k: (str(v) if k != "timeout" else v) for k, v in values.items()}
    values["gateway"] = values.get("gateway", DEFAULT_GATEWAY).rstrip("/")
    source = str(path) if data else "environment and defaults"
    return Config(**values, source=source)


def check_output(output: str) -> str:
    if output not in OUTPUTS:
        raise ConfigError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    return output
