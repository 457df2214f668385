"""NATS decentralized authentication: nkeys, JWTs, credentials and the server's configuration.

NATS runs in operator mode: the server trusts one operator key and the account
JWTs preloaded in its configuration, nothing else. Every client presents a user
JWT signed by an account's signing key, and proves it holds the user's private
key by signing the server's nonce. The server keeps no list of users, so minting
a credential for a new VM needs no reload and 10,000 agents cost the server
nothing but their connections; what a user may publish and subscribe to travels
inside its signed JWT.

Accounts live in the server's full resolver (a directory of account JWTs), so an
account can change while the server runs: its JWT, re-signed by an operator signing
key, is pushed on `$SYS.REQ.CLAIMS.UPDATE` by a system-account user. That is how
users are revoked (`AccountAdmin`).

One concept per module: `nkey` (keys, from the NATS project's `nkeys` package), `jwt`
(NATS's `ed25519-nkey` JWTs), `permissions`, `creds` (`.creds` text), `signer` (mints users),
`admin` (changes an account on a running server), `authority` (the trust chain),
`settings`, and `suite` (the suite's own users and files). Every public name is importable
from `services.natsauth`.
"""

from services.natsauth.admin import CLAIMS_UPDATE, AccountAdmin
from services.natsauth.authority import Authority
from services.natsauth.creds import Creds, format_creds
from services.natsauth.jwt import decode_claims, encode_jwt
from services.natsauth.nkey import ACCOUNT, OPERATOR, USER, KeyPair
from services.natsauth.permissions import Permissions
from services.natsauth.settings import NatsAuthSettings
from services.natsauth.signer import Signer
from services.natsauth.suite import DRAGONFLY_INBOX, AuthFiles, dragonfly_permissions, write_suite_auth

__all__ = [
    "ACCOUNT", "CLAIMS_UPDATE", "DRAGONFLY_INBOX", "OPERATOR", "USER", "AccountAdmin", "AuthFiles", "Authority", "Creds",
    "KeyPair", "NatsAuthSettings", "Permissions", "Signer", "decode_claims", "dragonfly_permissions", "encode_jwt",
    "format_creds", "write_suite_auth",
]
