"""gRPC credentials of mutual TLS, and the verified identity of a call's peer.

Servers require a client certificate signed by the CA they trust; clients verify the
server's certificate against the same CA (its SANs hold 127.0.0.1, localhost and the
service's DNS name) and present their own. There is no insecure mode.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import grpc

from services import tls
from services.settings import TlsSettings


class TlsConfigError(RuntimeError):
    """This process has no usable certificate, CA or key."""


@functools.lru_cache(maxsize=8)
def _pem(ca: Path, cert: Path, key: Path) -> tuple[bytes, bytes, bytes]:
    try:
        return ca.read_bytes(), cert.read_bytes(), key.read_bytes()
    except OSError as err:
        raise TlsConfigError(
            f"mutual TLS needs this process's CA, certificate and key: {err.strerror}: {err.filename} "
            "(set CB_TLS_CA_FILE, CB_TLS_CERT_FILE and CB_TLS_KEY_FILE, or start the suite with `make run`, "
            "which creates them in .run/tls/)") from None


def own_pem() -> tuple[bytes, bytes, bytes]:
    """(CA bundle, certificate chain, key) of this process, as its settings name them."""
    return _pem(*TlsSettings().files())


def server_credentials() -> grpc.ServerCredentials:
    """Serve with this process's certificate; admit only clients with a certificate of our CA."""
    ca, cert, key = own_pem()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def channel_credentials() -> grpc.ChannelCredentials:
    """Call with this process's certificate; trust only servers with a certificate of our CA."""
    ca, cert, key = own_pem()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def _first(auth: dict[str, list[bytes]], key: str) -> list[str]:
    return [v.decode(errors="replace") for v in auth.get(key, ())]


def peer_identity(context: Any) -> str | None:
    """The verified identity of the caller of this RPC: the name in its `spiffe://cb/<name>` SAN,
    else its certificate's CN; None when the call did not come over mutual TLS.

    Only a certificate that chains to our CA gets this far (the server requires and verifies
    client certificates), so the name can be trusted.
    """
    auth = context.auth_context() or {}
    if b"ssl" not in auth.get("transport_security_type", ()):
        return None
    for key in ("peer_spiffe_id", "x509_subject_alternative_name"):
        for value in _first(auth, key):
            if value.startswith(tls.SPIFFE_PREFIX):
                return value.removeprefix(tls.SPIFFE_PREFIX) or None
    names = _first(auth, "x509_common_name")
    return names[0] if names and names[0] else None
