"""Instance IDs: made of app, revision and slot, so every controller (and every restart of one)
names the same instance the same way — an instance can be found again, never doubled."""

from __future__ import annotations

import hashlib

MAX_ID = 63


def instance_id(app: str, revision: int, slot: int) -> str:
    """`{app}-r{revision}-{slot}`; a long app name is cut and given a short hash so the ID
    stays within the agent's 63 characters and stays unique."""
    tail = f"-r{revision}-{slot}"
    if len(app) + len(tail) <= MAX_ID:
        return app + tail
    digest = hashlib.sha256(app.encode()).hexdigest()[:6]
    keep = MAX_ID - len(tail) - len(digest) - 1
    return f"{app[:keep].rstrip('-')}-{digest}{tail}"
