"""Spider's settings (`CB_SPIDER_…`)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.settings import ServerSettings


class SpiderSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="CB_SPIDER_", extra="ignore")

    port: int = 2048
    call_log_file: str = ".run/logs/spider-calls.jsonl"
    # Default protection of each cloud connection (a connection may set its own).
    rate_per_second: float = 100.0
    burst: int = 200
    max_concurrency: int = 128
    max_retries: int = 6
    # How often the leader resolves intents left behind by a dead spider.
    recovery_interval_s: float = 3.0
    # A spider instance counts as dead this long after it stops renewing its lease.
    instance_ttl_s: int = 6
    # How long a create's completion is written again while etcd is away (a leader change, a member
    # restarting) before the caller gets Unavailable; the write then goes on in the background until
    # it lands, since the cloud has acted.
    settle_s: float = 30.0
