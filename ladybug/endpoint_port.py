"""What the controller needs of an application's load-balanced endpoint (HAProxy, `ladybug.endpoint`).

The endpoint module is its own part; the controller depends only on this shape. Methods may be
plain or async (`call` awaits either), so the endpoint is free to choose.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backend:
    """One instance behind the endpoint."""

    instance_id: str
    ip: str
    port: int
    weight: int = 1
    # No new requests: the instance is about to be stopped.
    drain: bool = False


class EndpointPort(Protocol):
    """One application's endpoint: listen on `port`, balance over backends, count per instance."""

    def ensure(self, app: str, port: int) -> Any: ...

    def set_backends(self, backends: Sequence[tuple[str, str, int, int, bool]]) -> Any: ...

    # instance_id → an object with `requests`, a 5xx count and an average response time in ms
    # (attribute names tolerated: `errors`/`errors_5xx`/`http_5xx`, `avg_ms`/`avg_response_ms`).
    def stats(self) -> Any: ...

    def stop(self) -> Any: ...


EndpointFactory = Callable[[], EndpointPort]


async def call(result: T | Any) -> Any:
    """The value of a plain or async endpoint method's result."""
    if inspect.isawaitable(result):
        return await result
    return result


def counter(entry: object, *names: str) -> float:
    """The first of `names` the stats entry has (attribute or mapping key), else 0."""
    for name in names:
        if isinstance(entry, Mapping) and name in entry:
            return float(entry[name])
        if hasattr(entry, name):
            return float(getattr(entry, name))
    return 0.0


def load_factory() -> EndpointFactory | None:
    """HAProxy endpoints when the endpoint module is installed here, else None (no endpoint)."""
    try:
        module = importlib.import_module("ladybug.endpoint")
    except ImportError:
        return None
    factory: EndpointFactory = module.Endpoint
    return factory
