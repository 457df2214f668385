"""NATS JWTs (`ed25519-nkey`): claims signed by an nkey, as the Go library writes them."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

from services.natsauth.nkey import KeyPair


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def encode_jwt(subject: str, name: str, nats: dict[str, Any], issuer: KeyPair, issued_at: int = 0,
               expires_at: int = 0) -> str:
    """A NATS JWT (`ed25519-nkey`) about `subject`, signed by `issuer`, issued now (or at
    `issued_at`, Unix seconds) and valid until `expires_at` (0: no expiry)."""
    claims: dict[str, Any] = {"iat": issued_at or int(time.time()), "iss": issuer.public_key, "name": name,
                              "sub": subject, "nats": {**nats, "version": 2}}
    if expires_at:
        claims["exp"] = expires_at
    # The JWT ID is the hash of the claims without it, as the Go library makes it.
    digest = hashlib.new("sha512_256", json.dumps({"jti": "", **claims}, separators=(",", ":")).encode())
    claims = {"jti": _b32(digest.digest()), **claims}
    head = _b64url(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}, separators=(",", ":")).encode())
    body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = _b64url(issuer.sign(f"{head}.{body}".encode()))
    return f"{head}.{body}.{signature}"


def decode_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (the server verifies; this is for reading)."""
    body = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return claims
