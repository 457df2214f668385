"""Who is at the other end of a gRPC call, as its verified TLS certificate says."""

from __future__ import annotations

import grpc


def peer_identity(context: grpc.aio.ServicerContext) -> str | None:
    """The common name of the peer's verified client certificate; None without mutual TLS."""
    names = (context.auth_context() or {}).get("x509_common_name") or []
    for name in names:
        text = name.decode() if isinstance(name, bytes) else str(name)
        if text:
            return text
    return None
