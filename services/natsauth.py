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

Ed25519 comes from `cryptography`; the nkey and JWT encodings are NATS's own
(base32 with a type prefix and a CRC-16, and `ed25519-nkey` JWTs).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic_settings import BaseSettings, SettingsConfigDict

# Type prefixes of nkeys (the first base32 letter of a key names its role).
OPERATOR, ACCOUNT, USER = 14 << 3, 0, 20 << 3
_SEED = 18 << 3
# Where the server's full resolver takes account JWTs from a system-account user.
CLAIMS_UPDATE = "$SYS.REQ.CLAIMS.UPDATE"


class NatsAuthSettings(BaseSettings):
    """Where a process finds its NATS credential (`CB_NATS_…`)."""

    model_config = SettingsConfigDict(env_prefix="CB_NATS_", extra="ignore")

    # A .creds file (user JWT + seed); every service connects with one.
    creds_file: str = ""


def _crc16(data: bytes) -> int:
    """CRC-16/XMODEM, the checksum nkeys append."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=")


def _unb32(text: str) -> bytes:
    return base64.b32decode(text + "=" * (-len(text) % 8))


def _with_crc(raw: bytes) -> bytes:
    return raw + _crc16(raw).to_bytes(2, "little")


def _checked(text: str) -> bytes:
    try:
        raw = _unb32(text)
    except ValueError as err:
        raise ValueError("not an nkey") from err
    if len(raw) < 4 or _crc16(raw[:-2]) != int.from_bytes(raw[-2:], "little"):
        raise ValueError("nkey checksum mismatch")
    return raw[:-2]


class KeyPair:
    """An Ed25519 key of one role (operator, account, user)."""

    def __init__(self, prefix: int, seed: bytes) -> None:
        self.prefix = prefix
        self._seed = seed
        self._key = Ed25519PrivateKey.from_private_bytes(seed)

    @classmethod
    def generate(cls, prefix: int) -> KeyPair:
        return cls(prefix, os.urandom(32))

    @classmethod
    def from_seed(cls, text: str) -> KeyPair:
        """Decode an `S…` seed as nkeys encode it."""
        raw = _checked(text.strip())
        if len(raw) != 34 or raw[0] & 0xF8 != _SEED:
            raise ValueError("not an nkey seed")
        prefix = ((raw[0] & 0x07) << 5) | ((raw[1] & 0xF8) >> 3)
        return cls(prefix, raw[2:])

    @property
    def seed(self) -> str:
        head = bytes([_SEED | (self.prefix >> 5), (self.prefix & 31) << 3])
        return _b32(_with_crc(head + self._seed))

    @property
    def public_key(self) -> str:
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return _b32(_with_crc(bytes([self.prefix]) + raw))

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)


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


@dataclass(frozen=True)
class Permissions:
    """What a user may publish and subscribe to; `respond` lets it answer requests it receives."""

    publish: Sequence[str] = ()
    subscribe: Sequence[str] = ()
    respond: bool = False
    unrestricted: bool = False

    def claims(self) -> dict[str, Any]:
        limits = {"subs": -1, "data": -1, "payload": -1}
        if self.unrestricted:
            return limits
        out: dict[str, Any] = {**limits, "pub": {"allow": list(self.publish)}, "sub": {"allow": list(self.subscribe)}}
        if self.respond:
            # Each received request may be answered once, within a minute.
            out["resp"] = {"max": 1, "ttl": 60_000_000_000}
        return out


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


_SYSTEM_LIMITS = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True,
                  "conn": -1, "leaf": -1}
# The CB account may use JetStream; the system account must not.
_ACCOUNT_LIMITS = {**_SYSTEM_LIMITS, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


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


@dataclass
class Authority:
    """The trust chain of one suite: an operator (and its signing key, which re-signs
    accounts), the system account, and the `CB` account every service and agent lives in,
    with the signing key that mints their users."""

    operator: KeyPair
    operator_signing: KeyPair
    system: KeyPair
    account: KeyPair
    signing: KeyPair
    jwts: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls) -> Authority:
        auth = cls(KeyPair.generate(OPERATOR), KeyPair.generate(OPERATOR), KeyPair.generate(ACCOUNT),
                   KeyPair.generate(ACCOUNT), KeyPair.generate(ACCOUNT))
        op = auth.operator
        # The operator's own key signs once, here; later account changes use the signing key,
        # so the key that whoever revokes users must hold can be replaced without a new operator.
        auth.jwts["operator"] = encode_jwt(op.public_key, "cb", {
            "type": "operator", "system_account": auth.system.public_key,
            "signing_keys": [auth.operator_signing.public_key]}, op)
        auth.jwts["system"] = encode_jwt(auth.system.public_key, "SYS", {"type": "account",
                                                                          "limits": _SYSTEM_LIMITS}, op)
        auth.jwts["account"] = encode_jwt(auth.account.public_key, "CB", {
            "type": "account", "limits": _ACCOUNT_LIMITS, "signing_keys": [auth.signing.public_key]}, op)
        return auth

    @property
    def signer(self) -> Signer:
        return Signer(self.account.public_key, self.signing)

    def admin(self) -> AccountAdmin:
        """The means to change the `CB` account while the server runs (revoke users)."""
        pusher = Signer(self.system.public_key, self.system).issue(
            "cb-account-admin", Permissions(publish=[CLAIMS_UPDATE], subscribe=["_INBOX.>"]))
        return AccountAdmin(self.operator_signing, self.jwts["account"], pusher)

    def server_config(self, jwt_dir: Path) -> str:
        """nats-server configuration: trust this operator; accounts in a full resolver at
        `jwt_dir` (seeded with these two, changed by pushes), never deleted by a push."""
        # max_payload: a workload set carries up to 1 MiB of files per workload (base64 on the wire).
        return (f'operator: "{self.jwts["operator"]}"\n'
                "max_payload: 4MB\n"
                f"system_account: {self.system.public_key}\n"
                f'resolver: {{\n  type: full\n  dir: "{jwt_dir}"\n  allow_delete: false\n}}\n'
                "resolver_preload: {\n"
                f'  {self.system.public_key}: "{self.jwts["system"]}"\n'
                f'  {self.account.public_key}: "{self.jwts["account"]}"\n'
                "}\n")


# Where dragonfly's own requests (to agents) are answered: a root of its own, outside `_INBOX.`,
# where every agent's inbox lives, so no agent's inbox pattern can ever cover it.
DRAGONFLY_INBOX = "_INBOX_dragonfly"


def dragonfly_permissions() -> Permissions:
    """Dragonfly's NATS user: exactly the subjects it speaks on (see dragonfly/subjects.py), no more.

    It hears agents' metric batches (its collectors' queue group), heartbeats, registrations and
    workload statuses,
    and the answers to its own requests; it sends requests to agents (`cb.agent.{vm}.{verb}`),
    each MCIS's interval, alert events, and answers into agents' inboxes. It may not publish as
    an agent (`cb.metrics|heartbeat|register`), so an answer steered there by a forged reply
    subject is refused by the server as well as by dragonfly's own check (dragonfly/guard.py).
    No `resp` permission: that would let any reply subject a sender chooses through.
    Tumblebug reaches agents only through dragonfly's API, so it has no NATS user at all."""
    return Permissions(
        publish=["cb.agent.*.*.*.*", "cb.config.*.*", "cb.alerts.*.*", "_INBOX.*.*.*.>"],
        subscribe=["cb.metrics.*.*.*", "cb.heartbeat.*.*.*", "cb.register.*.*.*", "cb.workloads.*.*.*",
                   f"{DRAGONFLY_INBOX}.>"])


@dataclass(frozen=True)
class AuthFiles:
    """What `write_suite_auth` leaves in a directory (each secret file mode 0600)."""

    server_config: Path
    dragonfly_creds: Path
    signer: Path
    account_admin: Path


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def write_suite_auth(directory: Path) -> AuthFiles:
    """A fresh authority for one suite run: the server's config and its resolver directory,
    dragonfly's credential (least privilege, in the CB account; the only service on NATS), the
    account signing key that mints agents' credentials, and the account admin that revokes them."""
    auth = Authority.create()
    files = AuthFiles(directory / "nats-auth.conf", directory / "dragonfly.creds", directory / "agent-signer.json",
                      directory / "account-admin.json")
    # A service credential of an earlier layout (unrestricted) must not stay usable beside it.
    (directory / "service.creds").unlink(missing_ok=True)
    jwt_dir = directory / "nats-accounts"
    # Accounts of an earlier authority mean nothing to this one.
    shutil.rmtree(jwt_dir, ignore_errors=True)
    jwt_dir.mkdir(mode=0o700, parents=True)
    _write_secret(files.server_config, auth.server_config(jwt_dir.resolve()))
    dragonfly = auth.signer.issue("cb-dragonfly", dragonfly_permissions())
    _write_secret(files.dragonfly_creds, format_creds(dragonfly.jwt, dragonfly.seed))
    _write_secret(files.signer, auth.signer.dump())
    _write_secret(files.account_admin, auth.admin().dump())
    return files
