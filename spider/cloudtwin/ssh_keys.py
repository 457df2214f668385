"""SSH key pairs: import a public key, or generate an ed25519 pair (OpenSSH format)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from . import faults


@dataclass(frozen=True)
class KeyMaterial:
    """A public key with its fingerprint, and the private key when we made it."""

    public_key: str
    fingerprint: str
    private_key: str = ""


def fingerprint(public_key: str) -> str:
    """OpenSSH's SHA256 fingerprint: `SHA256:` + unpadded base64 of the key blob."""
    blob = base64.b64decode(public_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def import_key(text: str) -> KeyMaterial:
    """Check an OpenSSH public key line; keep its type and blob, drop the comment."""
    try:
        key = serialization.load_ssh_public_key(text.strip().encode())
    except (ValueError, IndexError, TypeError, UnsupportedAlgorithm) as exc:
        raise faults.invalid_parameter("key_pair.public_key", f"not an OpenSSH public key ({exc})") from exc
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return KeyMaterial(public_key=line, fingerprint=fingerprint(line))


def generate_key() -> KeyMaterial:
    """A new ed25519 pair; the private key is handed out once and never kept."""
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
    return KeyMaterial(public_key=public, fingerprint=fingerprint(public), private_key=pem)
