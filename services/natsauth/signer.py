"""An account's signing key, which mints user credentials."""

from __future__ import annotations

import json
from dataclasses import dataclass

from services.natsauth.creds import Creds
from services.natsauth.jwt import encode_jwt
from services.natsauth.nkey import USER, KeyPair
from services.natsauth.permissions import Permissions


@dataclass
class Signer:
    """An account's signing key: mints user credentials for that account."""

    account: str
    key: KeyPair

    def issue(self, name: str, permissions: Permissions, expires_at: int = 0) -> Creds:
        """A fresh user key and its JWT: the whole credential of one client (valid until
        `expires_at`, Unix seconds; 0: no expiry)."""
        user = KeyPair.generate(USER)
        nats = {**permissions.claims(), "issuer_account": self.account, "type": "user"}
        return Creds(encode_jwt(user.public_key, name, nats, self.key, expires_at=expires_at), user.seed)

    def dump(self) -> str:
        return json.dumps({"account": self.account, "seed": self.key.seed})

    @classmethod
    def load(cls, text: str) -> Signer:
        data = json.loads(text)
        return cls(data["account"], KeyPair.from_seed(data["seed"]))
