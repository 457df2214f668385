"""Tumblebug's settings (`CB_TUMBLEBUG_…`)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.settings import ServerSettings


class TumblebugSettings(ServerSettings):
    model_config = SettingsConfigDict(env_prefix="CB_TUMBLEBUG_", extra="ignore")

    port: int = 50252
    # False: an API-only replica. It serves every call (GetMcis from its own watched copy of the MCIS
    # records, other reads from etcd, writes as any replica's) but never runs for leader, so its
    # status reads do not wait behind reconcile work while the leader builds a big MCIS
    # (docs/ARCHITECTURE.md, Tumblebug, "API-only replicas"). Keep at least one replica at the default.
    controller: bool = True
    spider_addr: str = "127.0.0.1:2048"
    # Dragonfly, for agents on new VMs, commands and metrics; empty = no monitoring.
    dragonfly_addr: str = "127.0.0.1:9999"
    # VM operations in flight at once, per spider connection and per cloud region.
    max_per_connection: int = 100
    max_per_region: int = 200
    # How often VMs on their way somewhere are looked at, and every MCIS is looked at anyway.
    poll_interval_s: float = 0.5
    resync_interval_s: float = 15.0
    # Leader lease and the reconciler's workers.
    # Longer than the longest stall a busy leader may have, so it is not deposed while working.
    leader_ttl_s: int = 10
    workers: int = 8
    # How often the spec/image catalog of every connection is read again.
    catalog_refresh_s: float = 60.0
    # Commands over SSH (VMs without a healthy agent): how long a login may take, and how many
    # VMs one command request reaches at once.
    ssh_connect_timeout_s: float = 10.0
    ssh_parallel: int = 64
    # Default quota of a namespace (its own, set through UpdateNamespaceQuota, wins); -1 = unlimited.
    # VMs and vCPUs count what the namespace's MCIS ask for (subgroup sizes), MCIS the records.
    quota_vms: int = 10_000
    quota_vcpus: int = 40_000
    quota_mcis: int = 1_000
