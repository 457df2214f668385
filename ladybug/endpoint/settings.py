"""Settings of the application endpoints (prefix `CB_LADYBUG_ENDPOINT_`)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class EndpointSettings(BaseSettings):
    """Where endpoints listen, where their files live, and how fast they notice a failure."""

    model_config = SettingsConfigDict(env_prefix="CB_LADYBUG_ENDPOINT_", extra="ignore")

    # The frontends bind here; loopback unless the operator exposes them.
    host: str = "127.0.0.1"
    # One sub-directory per application: config, admin socket, PID file, state, log.
    run_dir: str = ".run/ladybug/endpoints"
    haproxy: str = "haproxy"
    # Server slots pre-allocated per backend; a change within them needs no reload. When they
    # run out the count doubles, which costs one seamless reload.
    slots: int = 16
    # Health checks: a failed instance is out after `fall` checks `check_interval_ms` apart
    # (~1 s by default), a new one in after `rise`.
    check_interval_ms: int = 500
    check_timeout_ms: int = 400
    fall: int = 2
    rise: int = 2
    connect_timeout_ms: int = 1000
    # Idle limits of a client or server connection (HTTP keep-alive included).
    client_timeout_s: int = 30
    server_timeout_s: int = 30
    # Requests re-sent elsewhere when an instance refuses or drops them.
    retries: int = 3
    # Threads per HAProxy process; one serves tens of thousands of requests a second.
    threads: int = 1
