"""A gateway started for tests (a child process on loopback, over mutual TLS to its backends)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services import processes as procs
from services.gateway import auth, launch

KEY = "test-admin-key"


FLOOD_KEY = "test-flood-key"


@dataclass
class Gateway:
    url: str
    proc: procs.Proc
    log: Path


async def start_gateway(run_dir: Path, backends: dict[str, str], **env: str) -> Gateway:
    """A gateway process on a free port with keys `admin` (KEY) and `flood` (FLOOD_KEY)."""
    keys = run_dir / "gateway-keys"
    auth.write_keys_file(keys, {"admin": auth.hash_key(KEY, rounds=4), "flood": auth.hash_key(FLOOD_KEY, rounds=4)})
    port = procs.free_port()
    full = {"CB_GATEWAY_PORT": str(port), "CB_GATEWAY_KEYS_FILE": str(keys), "CB_GATEWAY_SERVICES": ",".join(backends),
            "CB_GATEWAY_REFRESH_SECONDS": "1", "CB_GRACE_SECONDS": "1",
            **{f"CB_{name.upper()}_ADDR": address for name, address in backends.items()}, **env}
    proc = launch.process(run_dir, full, name=f"gateway-{port}")
    await launch.start(proc, port)
    return Gateway(f"http://127.0.0.1:{port}", proc, proc.log_path)
