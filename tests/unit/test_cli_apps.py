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
