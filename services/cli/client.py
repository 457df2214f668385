"""cbctl's HTTP client for the gateway: JSON calls, errors as ApiError, and Server-Sent Events.

cbctl speaks only HTTP/JSON to the gateway, as any user of the REST API does: one port to
reach, one API key, and the same errors, limits and audit trail as every other client.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.cli.config import Config

# gRPC code numbers as the gateway's error body carries them.
CODE_NAMES = {
    0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
    6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 10: "ABORTED",
    11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}


@dataclass
class ApiError(Exception):
    """An error answered by the gateway (or the failure to reach it)."""

    message: str
    status: int = 0
    code: str = ""
    details: list[dict[str, Any]] = field(default_factory=list)
    request_id: str = ""
    request: str = ""

    def __str__(self) -> str:
        return self.one_line()

    def one_line(self) -> str:
        where = f" ({self.code}, HTTP {self.status})" if self.status else ""
        return f"{self.message}{where}"

    def explain(self) -> list[str]:
        """The details behind the one line, for -v."""
        lines = [f"request: {self.request}"] if self.request else []
        if self.request_id:
            lines.append(f"request id: {self.request_id}")
        for detail in self.details:
            for v in detail.get("fieldViolations", []):
                lines.append(f"field {v.get('field') or '(body)'}: {v.get('description', '')}")
            if not detail.get("fieldViolations"):
                lines.append(f"detail: {json.dumps(detail)}")
        return lines


class Client:
    """Calls to the gateway with the configured key."""

    def __init__(self, config: Config) -> None:
        self.config = config
        headers = {"Accept": "application/json", "User-Agent": "cbctl"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self.http = httpx.Client(base_url=config.gateway, headers=headers, timeout=config.timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None,
             timeout: float = 0.0) -> Any:
        """One JSON call; raises ApiError. A `timeout` longer than the configured one (a long command)
        is asked of the gateway too, as `Grpc-Timeout`."""
        request = f"{method} {self.config.gateway}{path}"
        extra: dict[str, Any] = {}
        if timeout > self.config.timeout:
            extra = {"timeout": timeout + 5.0, "headers": {"Grpc-Timeout": f"{int(timeout + 0.999)}S"}}
        try:
            response = self.http.request(method, path, json=body, params=params, **extra)
        except httpx.HTTPError as exc:
            raise unreachable(self.config.gateway, exc, request) from None
        if response.status_code >= 400:
            raise error_of(response, request)
        return response.json() if response.content else {}

    def events(self, path: str, params: dict[str, Any] | None = None,
               until: float | None = None) -> Iterator[tuple[str, Any]]:
        """(event, data) of a Server-Sent Events stream until it ends; `error` events raise ApiError.
        With `until` (a `time.monotonic()` deadline) a stream on which nothing comes until then
        raises StreamIdle: a watch of something that no longer changes must not wait forever."""
        request = f"GET {self.config.gateway}{path}"
        read = None if until is None else max(0.05, until - time.monotonic())
        try:
            with self.http.stream("GET", path, params=params, timeout=httpx.Timeout(self.config.timeout,
                                                                                    read=read)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_of(response, request)
                name = "message"
                for line in response.iter_lines():
                    if until is not None and time.monotonic() > until:
                        raise StreamIdle(path)  # only keepalives came (the gateway sends one every 15 s)
                    if line.startswith("event: "):
                        name = line[7:].strip()
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                        if name == "error":
                            raise ApiError(data.get("message", "stream failed"), 200,
                                           CODE_NAMES.get(data.get("code", 2), "UNKNOWN"), data.get("details", []),
                                           response.headers.get("x-request-id", ""), request)
                        if name == "end":
                            return
                        yield name, data
                        name = "message"
        except httpx.ReadTimeout:  # set only with `until`: nothing came before the deadline
            raise StreamIdle(path) from None
        except httpx.HTTPError as exc:
            raise unreachable(self.config.gateway, exc, request) from None


class StreamIdle(Exception):
    """Nothing came on an event stream before the caller's deadline."""


def error_of(response: httpx.Response, request: str) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = body.get("code")
    return ApiError(str(body.get("message") or response.reason_phrase), response.status_code,
                    CODE_NAMES.get(code, str(code)) if isinstance(code, int) else "", list(body.get("details") or []),
                    response.headers.get("x-request-id", ""), request)


def unreachable(gateway: str, exc: httpx.HTTPError, request: str) -> ApiError:
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return ApiError(f"cannot reach the gateway at {gateway}: {reason}. Is the suite running? (cbctl up)",
                        request=request)
    return ApiError(f"the gateway at {gateway} did not answer: {reason}", request=request)
