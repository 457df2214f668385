"""The spider scenario on every driver; prints one JSON document.

For each driver: the wall time of the scenario, the time spent inside spider
RPCs, the time the cloud calls took (spider's call log), and so spider's own
share. CloudTwin runs with zero latencies so the cloud's own time is small and
spider's overhead shows; moto answers at once as well.

Usage: python bench/drivers.py
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scenario import Scenario
from bench.stack import Stack

ZERO = {"CB_CLOUDTWIN_PROVIDERS": "1", "CB_CLOUDTWIN_BOOT_LATENCY": "0", "CB_CLOUDTWIN_ACTION_LATENCY": "0"}


async def main() -> None:
    out: dict[str, Any] = {"benchmark": "spider-scenario"}
    with tempfile.TemporaryDirectory(prefix="cb-bench-") as tmp:
        async with Stack(Path(tmp), ZERO, moto=True) as stack:
            name, image, spec = (await stack.connections(1))[0]
            out["mock"] = (await Scenario(stack.stub, name, image, spec).run()).as_dict()
            name, image, spec = await stack.aws_connection()
            out["aws"] = (await Scenario(stack.stub, name, image, spec).run()).as_dict()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
