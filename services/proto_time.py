"""Protobuf timestamps of the present moment (one helper for every service)."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp


def now() -> Timestamp:
    """A `google.protobuf.Timestamp` of now."""
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts
