"""Settings from environment variables: shared ones (`CB_…`) and one prefix per service.

Defaults run the whole suite on one machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Settings every service reads (prefix `CB_`)."""

    model_config = SettingsConfigDict(env_prefix="CB_", extra="ignore")

    etcd_endpoints: str = "127.0.0.1:2379"
    nats_url: str = "nats://127.0.0.1:4222"
    # Base64 of 32 bytes; when empty, `secret_key_file` holds (or will hold) the key.
    secret_key: str = ""
    secret_key_file: str = ".run/secret.key"
    log_level: str = "INFO"
    # How long a server waits for in-flight RPCs when asked to stop.
    grace_seconds: float = 5.0

    def etcd_target(self) -> tuple[str, int]:
        """The first etcd endpoint as (host, port)."""
        first = self.etcd_endpoints.split(",")[0].strip()
        first = first.removeprefix("https://").removeprefix("http://")
        host, _, port = first.rpartition(":")
        return host or "127.0.0.1", int(port or 2379)


class ServerSettings(BaseSettings):
    """Where one gRPC server listens; each service subclasses it with its prefix."""

    model_config = SettingsConfigDict(extra="ignore")

    host: str = "127.0.0.1"
    port: int = 0
    # Prometheus /metrics over HTTP; 0 = not served.
    metrics_port: int = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class TlsSettings(BaseSettings):
    """The files of this process's mutual TLS (prefix `CB_TLS_`): the CA it trusts, its own
    certificate and key. Unset, they are the `admin` identity of the local suite's run directory
    (`$CB_RUN_DIR/tls/`, `.run/tls/` by default), which is what cbctl uses beside `make run`."""

    model_config = SettingsConfigDict(env_prefix="CB_TLS_", extra="ignore")

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    def files(self) -> tuple[Path, Path, Path]:
        """(CA bundle, certificate, key), the defaults filled in."""
        base = Path(os.environ.get("CB_RUN_DIR", ".run")) / "tls"
        return (Path(self.ca_file or base / "ca.crt"), Path(self.cert_file or base / "admin.crt"),
                Path(self.key_file or base / "admin.key"))
