"""Where a process finds its NATS credential."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class NatsAuthSettings(BaseSettings):
    """Where a process finds its NATS credential (`CB_NATS_…`)."""

    model_config = SettingsConfigDict(env_prefix="CB_NATS_", extra="ignore")

    # A .creds file (user JWT + seed); every service connects with one.
    creds_file: str = ""
