"""NATS nkeys: Ed25519 keys with a role, encoded as NATS encodes them (base32, a type prefix,
a CRC-16), through the NATS project's own `nkeys` package.

`nkeys` 0.2.1 decodes a seed without checking its CRC-16 (a seed with a damaged checksum is
taken as a different key), so `from_seed` checks it first, with the package's own CRC.
"""

from __future__ import annotations

import base64
import binascii
import os

import nkeys

# Type prefixes of nkeys (the first base32 letter of a key names its role).
OPERATOR, ACCOUNT, USER = nkeys.PREFIX_BYTE_OPERATOR, nkeys.PREFIX_BYTE_ACCOUNT, nkeys.PREFIX_BYTE_USER


def _check_crc(seed: bytes) -> None:
    try:
        raw = base64.b32decode(seed + b"=" * (-len(seed) % 8))
    except (binascii.Error, ValueError) as err:
        raise ValueError("not an nkey") from err
    if len(raw) < 4 or nkeys.crc16_checksum(raw[:-2]) != raw[-2:]:
        raise ValueError("nkey checksum mismatch")


class KeyPair:
    """An Ed25519 key of one role (operator, account, user)."""

    def __init__(self, prefix: int, key: nkeys.KeyPair) -> None:
        self.prefix = prefix
        self._key = key

    @classmethod
    def generate(cls, prefix: int) -> KeyPair:
        return cls.from_seed(nkeys.encode_seed(os.urandom(32), prefix).decode())

    @classmethod
    def from_seed(cls, text: str) -> KeyPair:
        """Decode an `S…` seed as nkeys encode it; ValueError if it is not one."""
        seed = text.strip().encode()
        _check_crc(seed)
        try:
            prefix, raw = nkeys.decode_seed(bytearray(seed))
            if len(raw) != 32:
                raise ValueError("not an nkey seed")
            return cls(prefix, nkeys.from_seed(bytearray(seed)))
        except nkeys.NkeysError as err:
            raise ValueError(f"not an nkey seed: {type(err).__name__}") from err

    @property
    def seed(self) -> str:
        return bytes(self._key.seed).decode()

    @property
    def public_key(self) -> str:
        return bytes(self._key.public_key).decode()

    def sign(self, data: bytes) -> bytes:
        return bytes(self._key.sign(data))
