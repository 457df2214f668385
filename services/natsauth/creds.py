"""A user's credential: its JWT and nkey seed, as `.creds` text and as nats-py options."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from services.natsauth.nkey import KeyPair


def format_creds(user_jwt: str, seed: str) -> str:
    """The `.creds` text NATS clients read."""
    return (f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n"
            "NKEYs are sensitive and should be treated as secrets.\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n")


_BLOCK = re.compile(r"-{3,}BEGIN [A-Z ]+-{3,}\s*\n\s*(\S+)\s*\n\s*-{3,}END")


@dataclass(frozen=True)
class Creds:
    """A user's JWT and seed, as read from `.creds` text."""

    jwt: str
    seed: str

    @classmethod
    def parse(cls, text: str) -> Creds:
        blocks = _BLOCK.findall(text)
        if len(blocks) != 2:
            raise ValueError("not a NATS credential: expected a user JWT and an nkey seed")
        KeyPair.from_seed(blocks[1])  # fails early on a damaged seed
        return cls(blocks[0], blocks[1])

    def client_options(self) -> dict[str, Any]:
        """nats-py `connect` options that present this credential."""
        key = KeyPair.from_seed(self.seed)

        def user_jwt() -> bytearray:
            return bytearray(self.jwt.encode())

        def signature(nonce: str) -> bytes:
            return base64.b64encode(key.sign(nonce.encode()))

        return {"user_jwt_cb": user_jwt, "signature_cb": signature}
