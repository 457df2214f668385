"""User-given names, and the names handed to clouds."""

from __future__ import annotations

import re
import secrets

from services import errors

NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


def check_name(value: str, field: str) -> str:
    """Raise INVALID_ARGUMENT naming `field` unless `value` is a valid resource name."""
    if not value:
        raise errors.InvalidArgument.field(field, "is required")
    if not NAME_RE.match(value):
        raise errors.InvalidArgument.field(
            field, f"{value!r} is not a valid name: use 1-63 lowercase letters, digits and '-', "
                   "starting with a letter and not ending with '-'")
    return value


def require(value: str, field: str) -> str:
    if not value:
        raise errors.InvalidArgument.field(field, "is required")
    return value


def suffix(length: int = 6) -> str:
    """A short random suffix that makes a cloud-side name unique."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))
