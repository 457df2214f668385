"""How long a call may take: the client's `Grpc-Timeout` header, within the gateway's bounds.

The header has gRPC's wire form (grpc-gateway reads the same): digits then a unit, `H` hours,
`M` minutes, `S` seconds, `m` milliseconds, `u` microseconds, `n` nanoseconds (`90S`, `500m`).
A client that knows its call is long (a command with a 10-minute timeout) says so; the rest get
the gateway's default.
"""

from __future__ import annotations

import re

import grpc

from services.gateway.errors import GatewayError

_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_FORM = re.compile(r"^([0-9]{1,8})([HMSmun])$")


def deadline(header: str | None, default: float, longest: float) -> float:
    """Seconds the backend call may take: the header's value capped at `longest`, else `default`."""
    if not header:
        return default
    match = _FORM.match(header.strip())
    if not match:
        raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Grpc-Timeout {header!r} is not a timeout: give digits and a unit, e.g. 90S or 500m")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise GatewayError(grpc.StatusCode.INVALID_ARGUMENT, "Grpc-Timeout must be more than zero")
    return min(seconds, longest)
