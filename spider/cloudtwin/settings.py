"""Settings of the CloudTwin process (environment variables `CB_CLOUDTWIN_…`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.settings import ServerSettings


class CloudTwinSettings(ServerSettings):
    """Where CloudTwin listens, what it plays, and the default behaviour knobs.

    The knob values here apply to every provider/region; `knobs_json` overrides
    them per provider/region at start, and the admin RPC SetKnobs at run time.
    """

    model_config = SettingsConfigDict(env_prefix="CB_CLOUDTWIN_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 7000
    # The catalog (providers, regions, specs, prices, true performance) follows from it.
    seed: int = 42
    # How many providers the emulator plays.
    providers: int = Field(default=5, ge=1, le=10_000)
    # Where resources, counters and admin knob changes are kept; "" = nowhere.
    state_file: str = ""

    # Default knobs: medians of lognormal latencies (seconds) and their sigma.
    create_latency: float = Field(default=0.0, ge=0)
    boot_latency: float = Field(default=1.0, ge=0)
    action_latency: float = Field(default=0.5, ge=0)
    latency_sigma: float = Field(default=0.0, ge=0)
    # Share of VM creates that fail with InsufficientInstanceCapacity.
    failure_rate: float = Field(default=0.0, ge=0, le=1)
    # Per account+provider+region; 0 = unlimited.
    quota_vms: int = Field(default=0, ge=0)
    quota_vcpus: int = Field(default=0, ge=0)
    # Requests per second per provider/region on resource RPCs; 0 = unlimited.
    api_rate: float = Field(default=0.0, ge=0)
    api_burst: int = Field(default=0, ge=0)

    # How long a terminated VM stays visible before it is purged.
    terminated_retention_s: float = Field(default=60.0, ge=0)
    # Per provider/region overrides: a JSON list of KnobsEntry objects (protobuf
    # JSON), e.g. [{"provider": "aurora", "region": "kr-seoul",
    #               "knobs": {"create_latency": {"median_s": 2}, "failure_rate": 0.1}}].
    # An empty provider or region means every one.
    knobs_json: str = ""

    # Guests: a running VM whose user-data has a `cb_agent` section runs a cb-agent.
    guests: bool = True
    # Helper processes the agents are spread over.
    guest_shards: int = Field(default=1, ge=1, le=64)
    # Sandbox directories of the VMs (and the helpers' logs); "" = a temporary directory.
    guest_dir: str = ""
    # SSH on twin VMs made with a key pair and without an agent: the port on each VM's own
    # loopback address (22 would need root); 0 = no SSH.
    ssh_port: int = Field(default=2222, ge=0, le=65535)
