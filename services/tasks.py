"""Background tasks' end: cancelled, then awaited, one rule for every service and component."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any


async def cancel_tasks(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel background tasks and wait for each to end (what they raise on the way is theirs to
    log): the first step of every app's `stop`, and of a component's `close`."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
