"""Drivers are found by entry point (`cb.spider.drivers`), so one can ship as its own package."""

from __future__ import annotations

import logging
from functools import cache
from importlib.metadata import entry_points

from services import errors
from spider.drivers.base import Driver

log = logging.getLogger("spider.drivers")

GROUP = "cb.spider.drivers"


@cache
def drivers() -> dict[str, Driver]:
    """Every installed driver by name; one that fails to import is logged and left out."""
    found: dict[str, Driver] = {}
    for ep in entry_points(group=GROUP):
        try:
            cls = ep.load()
        except Exception as err:  # a broken plug-in must not take spider down
            log.warning("driver failed to load", extra={"driver": ep.name, "error": str(err)})
            continue
        driver = cls()
        found[driver.name or ep.name] = driver
    return found


def get(name: str) -> Driver:
    """The driver called `name`, usable here, or a clear error."""
    found = drivers().get(name)
    if found is None:
        known = ", ".join(sorted(drivers())) or "none"
        raise errors.InvalidArgument.field("driver", f"unknown driver {name!r}; installed: {known}")
    reason = found.unavailable_reason()
    if reason:
        raise errors.FailedPrecondition(f"driver {name!r} is unavailable here: {reason}")
    return found
