"""Retrying a read-modify-write that lost a compare-and-swap race (one loop for every writer)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services import errors

T = TypeVar("T")

ATTEMPTS = 20
PAUSE_S = 0.005


async def retry_on_conflict(attempt: Callable[[], Awaitable[T]], what: str, attempts: int = ATTEMPTS) -> T:
    """Run `attempt` (which reads afresh, then writes guarded by revisions) until it does not raise
    ABORTED; after `attempts` lost races, ABORTED naming `what`, for the caller to retry."""
    for _ in range(attempts):
        try:
            return await attempt()
        except errors.Aborted:
            await asyncio.sleep(PAUSE_S)
    raise errors.Aborted(f"{what} is being changed by many writers at once; retry")
