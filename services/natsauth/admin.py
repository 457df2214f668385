"""Changing an account on a running server (revoking users): its JWT re-signed by an operator
signing key, pushed on `$SYS.REQ.CLAIMS.UPDATE` to the server's full resolver."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

from services.natsauth.creds import Creds
from services.natsauth.jwt import decode_claims, encode_jwt
from services.natsauth.nkey import KeyPair

# Where the server's full resolver takes account JWTs from a system-account user.
CLAIMS_UPDATE = "$SYS.REQ.CLAIMS.UPDATE"


@dataclass
class AccountAdmin:
    """What it takes to change one account on a running server: an operator signing key to
    sign its new JWT, the JWT as first issued (its limits and signing keys stay as they
    were), and a system-account user that may do nothing but push account JWTs."""

    signing: KeyPair
    account_jwt: str
    pusher: Creds

    @property
    def account(self) -> str:
        return str(decode_claims(self.account_jwt)["sub"])

    def with_revocations(self, revoked: Mapping[str, int]) -> str:
        """The account's JWT refusing each user (public key → Unix time) whose JWT was
        issued at or before that time; the server also closes such users' connections."""
        base = decode_claims(self.account_jwt)
        nats = {k: v for k, v in base["nats"].items() if k != "version"}
        if revoked:
            nats["revocations"] = dict(sorted(revoked.items()))
        # Later than the preloaded JWT: a restarting server replaces what it stored with the
        # preload unless the stored one is strictly newer, so an equal second would lose the list.
        issued = max(int(time.time()), int(base["iat"]) + 1)
        return encode_jwt(base["sub"], base["name"], nats, self.signing, issued_at=issued)

    def dump(self) -> str:
        return json.dumps({"signing_seed": self.signing.seed, "account_jwt": self.account_jwt,
                           "pusher": {"jwt": self.pusher.jwt, "seed": self.pusher.seed}})

    @classmethod
    def load(cls, text: str) -> AccountAdmin:
        data = json.loads(text)
        return cls(KeyPair.from_seed(data["signing_seed"]), data["account_jwt"],
                   Creds(data["pusher"]["jwt"], data["pusher"]["seed"]))
