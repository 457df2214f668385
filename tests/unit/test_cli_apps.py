"""cbctl's app documents become CreateApplication bodies; the kind is known by name and alias."""

from __future__ import annotations

import pytest

from services.cli import apps
from services.cli.client import ApiError
from services.cli.kinds import KINDS


def test_app_document_to_body() -> None:
    # cbctl's document reader puts the name into every spec: it does not belong in an AppSpec.
    suffix, body = apps.create_request("web", {"name": "web", "mcis": "m", "instances": 4,
                                               "artifact": {"command": "x"}})
    assert suffix == "" and body == {"name": "web", "mcis": "m", "description": "",
                                     "spec": {"instances": 4, "artifact": {"command": "x"}}}
    with pytest.raises(ApiError, match=r"spec\.mcis"):
        apps.create_request("web", {"instances": 1})


def test_app_kind_is_listed() -> None:
    kind = next(k for k in KINDS if k.name == "app")
    assert kind.collection.startswith("/ladybug/v1/") and "application" in kind.aliases


class _Recorder:
    """A client that answers every list with one empty page and remembers the query."""

    def __init__(self) -> None:
        self.params: list[dict[str, object]] = []

    def call(self, method: str, path: str, body: object = None, params: dict[str, object] | None = None) -> dict:
        self.params.append(dict(params or {}))
        return {}


def test_an_apps_instances_are_listed_without_page_parameters() -> None:
    # ListInstances answers in one response and refuses unknown query fields (pageSize was a 400).
    from services.cli.listing import list_all

    kind = next(k for k in KINDS if k.name == "app")
    child = kind.children[0]
    client = _Recorder()
    list_all(client, kind, {"namespace": "demo"}, path="/x/instances", list_field=child.list_field,  # type: ignore[arg-type]
             paged=child.paged)
    assert client.params == [{}]
    list_all(client, kind, {"namespace": "demo"})  # type: ignore[arg-type]
    assert client.params[-1] == {"pageSize": 100}
