"""The page size of a List request, one rule for every service (AIP-158)."""

from __future__ import annotations

from services import errors

DEFAULT_PAGE = 100
MAX_PAGE = 1000


def page_size(requested: int, default: int = DEFAULT_PAGE, most: int = MAX_PAGE) -> int:
    """0 means the default; more than `most` is cut to `most`; negative is refused."""
    if requested < 0:
        raise errors.InvalidArgument.field("page_size", "must not be negative")
    return min(requested or default, most)
