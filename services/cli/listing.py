"""Reading resources through the gateway: every page of a collection, and one item."""

from __future__ import annotations

from typing import Any

from services.cli.client import ApiError, Client
from services.cli.kinds import RestKind, get_path

PAGE_SIZE = 100


def list_all(client: Client, kind: RestKind, scope: dict[str, str], query: dict[str, str] | None = None,
             limit: int = 0, path: str = "", list_field: str = "", paged: bool | None = None) -> list[dict[str, Any]]:
    """Every item of a collection (at most `limit` when set), following page tokens (`paged`:
    whether that List takes them; default the kind's own)."""
    items: list[dict[str, Any]] = []
    token = ""
    paged = kind.paged if paged is None else paged
    for _ in range(10_000):
        params: dict[str, Any] = {**(query or {}), **({"pageSize": PAGE_SIZE} if paged else {})}
        if token:
            params["pageToken"] = token
        page = client.call("GET", path or kind.collection_path(scope), params=params)
        items += page.get(list_field or kind.list_field, [])
        token = page.get("nextPageToken", "")
        if not token or (limit and len(items) >= limit):
            break
    return items[:limit] if limit else items


def get_one(client: Client, kind: RestKind, scope: dict[str, str], name: str) -> dict[str, Any]:
    if kind.listed_only:
        # A catalog entry's ID names its connection: list only that connection's part.
        query = {"connection": name.partition("+")[0]} if "connection" in kind.filters and "+" in name else None
        for item in list_all(client, kind, scope, query):
            if get_path(item, kind.name_path) == name:
                return item
        raise ApiError(f"{kind.name} {name!r} not found", 404, "NOT_FOUND")
    result: dict[str, Any] = client.call("GET", kind.item_path(scope, name))
    return result
