"""The emulator's accounts: an access key and the secret that goes with it.

As in a real cloud, an account's secret is checked on every call. There is no
sign-up API: an account comes into being on its first call, which fixes its secret
(trust on first use); from then on only that secret works. The state file keeps
the SHA-256 of each secret (never the secret), so a restart changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping

from . import faults


def _digest(access_key: str, secret: str) -> bytes:
    # The access key salts the hash, so equal secrets of two accounts differ in the file.
    return hashlib.sha256(f"{access_key}\0{secret}".encode()).digest()


class Accounts:
    """Access key → digest of its secret."""

    def __init__(self, on_new: Callable[[], None] = lambda: None) -> None:
        self._digests: dict[str, bytes] = {}
        # Called when an account is added (the state file must be saved).
        self._on_new = on_new

    def check(self, access_key: str, secret: str) -> str:
        """The account of a caller presenting these keys; UNAUTHENTICATED when the secret is wrong."""
        digest = _digest(access_key, secret)
        known = self._digests.get(access_key)
        if known is None:
            self._digests[access_key] = digest
            self._on_new()
            return access_key
        if not hmac.compare_digest(known, digest):
            raise faults.unauthenticated(f"the secret key does not match access key {access_key[:64]!r}")
        return access_key

    def snapshot(self) -> dict[str, bytes]:
        return dict(self._digests)

    def load(self, digests: Mapping[str, bytes]) -> None:
        self._digests = dict(digests)
