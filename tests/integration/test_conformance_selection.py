"""The conformance suite starts only the selected driver's cloud: `-k mock` runs on CloudTwin and
starts neither moto nor libvirtd (a child pytest run, watched with --setup-show)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def test_selecting_mock_starts_neither_moto_nor_libvirtd(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CB_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--setup-show", f"--basetemp={tmp_path}",
        "tests/integration/conformance/test_catalog.py", "-k", "test_unknown_connection_is_not_found and mock",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out = (await asyncio.wait_for(proc.communicate(), 240))[0].decode()
    assert proc.returncode == 0 and "1 passed" in out, out
    # "SETUP    S cloudtwin_process (fixtures used: run_dir)": the fixture's name follows its scope.
    setups = [line.split()[2] for line in out.splitlines() if line.strip().startswith("SETUP")]
    assert "moto_process" not in setups and "libvirtd_process" not in setups, setups
    assert {"cloudtwin_process", "cloud['mock']", "target"} <= set(setups), setups
