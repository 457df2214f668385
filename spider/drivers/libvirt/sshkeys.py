"""OpenSSH key pairs: generated (ed25519) or imported, with OpenSSH's SHA256 fingerprint."""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services import errors


def generate() -> tuple[str, str]:
    """(public key, private key) of a new ed25519 pair, both in OpenSSH format."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return public.decode(), private


def check(public_key: str) -> str:
    """The key normalised to `type base64`, or InvalidArgument when it is not an OpenSSH public key."""
    try:
        serialization.load_ssh_public_key(public_key.strip().encode())
    except (ValueError, TypeError, binascii.Error) as err:
        raise errors.InvalidArgument.field("key_pair.public_key", f"not an OpenSSH public key: {err}") from err
    kind, blob = public_key.split()[:2]
    return f"{kind} {blob}"


def fingerprint(public_key: str) -> str:
    blob = base64.b64decode(public_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
