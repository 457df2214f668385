"""cbctl as a user runs it (a real `python -m services.cli` process with a clean home), and the
gateway in front of spider and tumblebug that the cbctl MCIS tests drive (fixtures
`tumblebug_gateway_process` and `cbctl`: a test module imports `tumblebug_gateway` and `tumblebug_cbctl`
to have them)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests import servers
from tests.support.gateway import KEY, Gateway, start_gateway

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Cbctl:
    """Runs cbctl with a clean home (no user config) and the gateway in the environment."""

    env: dict[str, str]
    home: Path

    async def __call__(self, *args: str, stdin: str = "", timeout: float = 120, **env: str) -> Result:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", *args, cwd=ROOT, env={**self.env, **env},
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout)
        return Result(proc.returncode or 0, out.decode(), err.decode())

    async def ok(self, *args: str, **kw: Any) -> Result:
        result = await self(*args, **kw)
        assert result.code == 0, f"cbctl {' '.join(args)} failed:\n{result.out}\n{result.err}"
        return result


@pytest_asyncio.fixture(name="tumblebug_gateway_process", scope="module", loop_scope="session")
async def tumblebug_gateway(tmp_path_factory: pytest.TempPathFactory, spider_process: servers.Server,
                  tumblebug_process: servers.Server) -> AsyncIterator[Gateway]:
    gw = await start_gateway(tmp_path_factory.mktemp("gateway-tumblebug"),
                             {"spider": spider_process.address, "tumblebug": tumblebug_process.address})
    yield gw
    gw.proc.stop()


def cbctl_for(gateway: Gateway, tmp_path: Path) -> Cbctl:
    """cbctl with a clean home under `tmp_path`, pointed at `gateway` with the admin key."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CB_", "CBCTL_", "XDG_"))}
    env.update(HOME=str(home), CB_RUN_DIR=str(tmp_path / "run"), CB_GATEWAY_URL=gateway.url, CB_API_KEY=KEY,
               COLUMNS="200")
    return Cbctl(env, home)


def one_line_error(result: Any, *words: str) -> None:
    """A failed command: exit status 1 and one line on stderr naming `words`."""
    lines = result.err.strip().splitlines()
    assert result.code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.err
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.fixture(name="cbctl")
def tumblebug_cbctl(tumblebug_gateway_process: Gateway, tmp_path: Path) -> Cbctl:
    return cbctl_for(tumblebug_gateway_process, tmp_path)
