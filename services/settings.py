"""Settings from environment variables: shared ones (`CB_…`) and one prefix per service.

Defaults run the whole suite on one machine.
"""

from __future__ import annotations

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
        first = first.removeprefix("http://")
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
