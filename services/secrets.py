"""Encryption at rest of secret values (AES-256-GCM).

The key comes from `CB_SECRET_KEY` (base64 of 32 bytes) or from a key file,
which is created with mode 0600 the first time it is needed.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services import errors

NONCE_BYTES = 12


def load_key(secret_key: str, key_file: str) -> bytes:
    """The 32-byte key from the setting, else from (a newly created) key file."""
    if secret_key:
        key = base64.b64decode(secret_key)
    else:
        path = Path(key_file)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(base64.b64encode(AESGCM.generate_key(bit_length=256)))
        key = base64.b64decode(path.read_bytes().strip())
    if len(key) != 32:
        raise ValueError("the secret key must be 32 bytes (base64-encoded)")
    return key


class Sealer:
    """Seals and opens small secrets; `context` binds a ciphertext to its owner record."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, context: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, sealed: bytes, context: str) -> bytes:
        try:
            return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context.encode())
        except Exception as err:
            raise errors.FailedPrecondition(
                f"the stored secret of {context} cannot be decrypted with this server's key") from err
