"""cbctl's `app` kind (ladybug): an app document becomes a CreateApplication body."""

from __future__ import annotations

from typing import Any

from services.cli.client import ApiError


def create_request(name: str, spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """`mcis` and `description` sit beside the spec in an Application; the rest is its spec."""
    body = dict(spec)
    body.pop("name", None)  # cbctl puts the document's name in every spec; an app's is beside it
    mcis = body.pop("mcis", "")
    if not mcis:
        raise ApiError("spec.mcis: name the MCIS the application runs on")
    description = body.pop("description", "")
    return "", {"name": name, "mcis": mcis, "description": description, "spec": body}
