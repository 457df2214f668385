"""cbctl's API keys: `create apikey NAME --role R [--namespace NS]` prints the new key once.

For an API key `--namespace` is the key's scope, not where the key lives (keys belong to the
gateway), so only the flag counts: the configured default namespace never scopes a key.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

from services.cli.client import ApiError

KIND = "apikey"


def create_request(name: str, spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The body of POST /gateway/v1/apikeys from a document's spec (role, namespace)."""
    unknown = set(spec) - {"name", "role", "namespace"}
    if unknown:
        raise ApiError(f"unknown fields {', '.join(sorted(unknown))} (an API key has role and namespace)")
    if not spec.get("role"):
        raise ApiError("give --role admin|operator|viewer (or role: in the spec)")
    return "", {"name": name, "role": str(spec["role"]), "namespace": str(spec.get("namespace") or "")}


def apply_flags(kind: str, spec: dict[str, Any], role: str, namespace: str) -> None:
    """Put `--role` and `--namespace` into an API key's spec; `--role` belongs to API keys only."""
    if kind != KIND:
        if role:
            raise ApiError("--role is for an apikey")
        return
    if role:
        spec["role"] = role
    if namespace:
        spec["namespace"] = namespace


def show_created(console: Console, item: dict[str, Any]) -> None:
    """The key, this once, and what it may do."""
    key = item.get("apiKey", {})
    scope = f", namespace {key['namespace']}" if key.get("namespace") else ", every namespace"
    console.print(f"apikey/{key.get('name', '')} created (role {key.get('role', '')}{scope})", highlight=False)
    console.print(f"key: {item.get('key', '')}", highlight=False, soft_wrap=True)
    console.print("Store it now: it is not shown again. Use it as CB_API_KEY or `cbctl --api-key`.",
                  highlight=False)
