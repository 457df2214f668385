"""Ladybug's settings (`CB_LADYBUG_…`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.settings import ServerSettings


class LadybugSettings(ServerSettings):
    """Where ladybug listens, whom it calls, and how its controller paces itself."""

    model_config = SettingsConfigDict(env_prefix="CB_LADYBUG_", extra="ignore")

    port: int = 50254
    tumblebug_addr: str = "127.0.0.1:50252"
    dragonfly_addr: str = "127.0.0.1:9999"
    # Deadline of one call to tumblebug or dragonfly.
    call_timeout_s: float = Field(default=15.0, gt=0)
    # Leader lease and the controller's workers.
    leader_ttl_s: int = Field(default=10, ge=1)
    workers: int = Field(default=4, ge=1)
    # Every application is synced at least this often (statuses come from dragonfly, not a watch),
    # and this often while a rollout or a drain is under way.
    resync_s: float = Field(default=5.0, gt=0)
    active_resync_s: float = Field(default=0.5, gt=0)
    # Events kept per application (oldest dropped first) and revisions kept in its history.
    events_max: int = Field(default=200, ge=10)
    revisions_max: int = Field(default=50, ge=2)
    # How long a VM must stay failed (its agent silent, or broken in the cloud) before a
    # replacement is asked of tumblebug: a monitoring blip must not add VMs for good.
    replace_after_s: float = Field(default=30.0, ge=0)
    # How long an instance stays drained at the endpoint before it is stopped.
    drain_s: float = Field(default=2.0, ge=0)
    # Endpoint (HAProxy) ports are handed out from here, one per application.
    endpoint_port_base: int = Field(default=18000, ge=1024, le=65000)
