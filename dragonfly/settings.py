"""Settings of the dragonfly service (environment variables `CB_DRAGONFLY_…`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.settings import ServerSettings


class DragonflySettings(ServerSettings):
    """Where dragonfly listens, how it stores, and how agents are judged."""

    model_config = SettingsConfigDict(env_prefix="CB_DRAGONFLY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 9999
    # `memory` (embedded, bounded, per process) or `victoriametrics` (shared; at vm_url).
    storage: str = "memory"
    vm_url: str = "http://127.0.0.1:8428"
    # The memory backend's whole budget in MiB, shared by every series (VM and group) and in each by
    # its raw points, minute and hour roll-ups in proportion to their cost at full retention (about
    # 1/4, 1/2, 1/4). Limits shrink as series appear, down to floors (3 minutes of 1 s points, an
    # hour of minutes, a day of hours) that win over the budget: ~34 KiB per series, ~200 KiB per
    # VM, so 1 GiB keeps ~5,100 VMs at their floors (full retention, ~4.4 MiB per VM, ~230 VMs);
    # 10,000 VMs need ~2 GiB. Held bytes and limits are on /metrics (cb_dragonfly_memory_*).
    memory_mb: float = Field(default=1024, ge=16)
    # The most raw points the memory backend keeps per series (fewer when the budget is tight);
    # minute and hour roll-ups reach at most a day and a month beyond them.
    raw_points: int = Field(default=3600, ge=10)
    # The account signing key that mints agents' credentials (written by the launcher, mode 0600).
    agent_signer_file: str = ""
    # What revokes them: the operator signing key, the account's JWT and a system user that may
    # only push it (written by the launcher, mode 0600). Required with agent_signer_file.
    account_admin_file: str = ""
    # Agents' credentials expire after this (a year), so a revocation can be forgotten then.
    agent_credential_ttl_s: float = Field(default=365 * 86400, ge=60)
    # The account JWT is pushed again this often, in case the NATS server lost it.
    account_resync_s: float = Field(default=60.0, gt=0)
    # The NATS URL agents are told to use; empty = CB_NATS_URL.
    agent_nats_url: str = ""
    # Interval of an MCIS nobody configured.
    default_interval_s: float = Field(default=5.0, ge=0.1, le=3600)
    # Collectors of every replica share the metric stream in this NATS queue group.
    collector_queue: str = "dragonfly-collectors"
    # A collector writes to storage when this many samples wait, or after flush_s.
    batch_samples: int = Field(default=2000, ge=1)
    flush_s: float = Field(default=0.05, gt=0)
    # The NATS connection's socket is read at most this often while it keeps up (0: on every
    # arrival): thousands of agents' batches then come a tick's worth per read, not one per read.
    read_every_s: float = Field(default=0.01, ge=0, le=0.5)
    # Alerts: how often agent-health rules are judged, how many events a namespace keeps,
    # and how hard a webhook is tried (attempts, first backoff, doubled up to 5 s).
    alert_tick_s: float = Field(default=0.25, gt=0)
    alert_events_max: int = Field(default=1000, ge=1)
    webhook_attempts: int = Field(default=5, ge=1, le=20)
    webhook_backoff_s: float = Field(default=0.2, gt=0)
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    # What one agent may send to a replica (metric batches, heartbeats, registrations together): a
    # token bucket of `agent_burst` refilled at `agent_rate_per_s`; the excess is dropped and counted
    # (cb_dragonfly_agent_messages_dropped). A batch dropped is not acknowledged, so the agent keeps it.
    agent_rate_per_s: float = Field(default=50.0, gt=0)
    agent_burst: float = Field(default=200.0, ge=1)
    # A malformed or refused message is logged at most once per agent this often, with the count since.
    agent_warn_every_s: float = Field(default=60.0, gt=0)
