"""Who is calling: API keys as `Authorization: Bearer <key>` or HTTP Basic `<client>:<key>`.

Only bcrypt hashes of the keys are kept: read from a keys file of `client:hash` lines
(`CB_GATEWAY_KEYS_FILE`), and `CB_ADMIN_API_KEY` hashed at start for client `admin`. bcrypt is
slow on purpose, so a key that checked out is remembered by its SHA-256 for the life of the
process, a wrong one for a short while, and each address may fail only a few times a second.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import grpc

from services.gateway.errors import GatewayError
from services.gateway.ratelimit import RateLimiter, retry_after

REALM = "cb-gateway"
CHALLENGE = f'Bearer realm="{REALM}", Basic realm="{REALM}", charset="UTF-8"'
ADMIN = "admin"
_CLIENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_NEGATIVE_SECONDS = 30.0
_CACHE_SIZE = 4096


def generate_key() -> str:
    """A new API key: 256 random bits, URL-safe."""
    return "cb_" + secrets.token_urlsafe(32)


def hash_key(key: str, rounds: int = 12) -> str:
    return bcrypt.hashpw(key.encode(), bcrypt.gensalt(rounds)).decode()


def parse_keys_file(text: str, source: str = "keys file") -> dict[str, str]:
    """`client:bcrypt-hash` lines (blank lines and # comments allowed) → client → hash."""
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        client, sep, hashed = line.partition(":")
        if not sep or not _CLIENT.match(client) or not hashed.startswith("$2"):
            raise ValueError(f"{source} line {number}: expected client:bcrypt-hash")
        out[client] = hashed
    return out


def write_keys_file(path: Path, hashes: Mapping[str, str]) -> None:
    """Write `client:hash` lines, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("".join(f"{client}:{hashed}\n" for client, hashed in hashes.items()))
    os.chmod(path, 0o600)


def admin_key(run_dir: Path, environ: Mapping[str, str] | None = None) -> tuple[str, Path | None]:
    """The admin key of a local suite: CB_ADMIN_API_KEY, else the one in run_dir/admin.key,
    else a new one written there (mode 0600). Returns the key and the file it is in (None
    when it came from the environment)."""
    env = os.environ if environ is None else environ
    given = env.get("CB_ADMIN_API_KEY", "").strip()
    if given:
        return given, None
    path = run_dir / "admin.key"
    if path.exists():
        existing = path.read_text().strip()
        if existing:
            return existing, path
    key = generate_key()
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    os.chmod(path, 0o600)
    return key, path


@dataclass(frozen=True)
class Credentials:
    """What the request presented: a bare key, or a client and a key."""

    key: str
    client: str = ""


def credentials_of(authorization: str) -> Credentials | None:
    """Parse an Authorization header; None when absent or not Bearer/Basic."""
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return Credentials(value)
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        client, sep, key = decoded.partition(":")
        if sep and client and key:
            return Credentials(key, client)
    return None


class KeyStore:
    """bcrypt hashes by client, and the cache of keys already checked."""

    def __init__(self, hashes: Mapping[str, str]) -> None:
        self.hashes = dict(hashes)
        self._known: OrderedDict[bytes, str] = OrderedDict()
        self._rejected: OrderedDict[bytes, float] = OrderedDict()

    @classmethod
    def from_settings(cls, keys_file: str, environ: Mapping[str, str] | None = None) -> KeyStore:
        env = os.environ if environ is None else environ
        hashes: dict[str, str] = {}
        if keys_file:
            hashes.update(parse_keys_file(Path(keys_file).read_text(), keys_file))
        admin = env.get("CB_ADMIN_API_KEY", "").strip()
        if admin:
            hashes[ADMIN] = hash_key(admin)
        return cls(hashes)

    def __len__(self) -> int:
        return len(self.hashes)

    @staticmethod
    def _digest(creds: Credentials) -> bytes:
        return hashlib.sha256(f"{creds.client}\0{creds.key}".encode()).digest()

    def known(self, creds: Credentials) -> str | None:
        """The client, when these credentials checked out before (no bcrypt)."""
        digest = self._digest(creds)
        client = self._known.get(digest)
        if client is not None:
            self._known.move_to_end(digest)
        return client

    async def verify(self, creds: Credentials) -> str | None:
        """The client the credentials belong to, or None."""
        known = self.known(creds)
        if known is not None:
            return known
        digest = self._digest(creds)
        rejected_at = self._rejected.get(digest)
        if rejected_at is not None and time.monotonic() - rejected_at < _NEGATIVE_SECONDS:
            return None
        # bcrypt takes a quarter second: off the event loop.
        client = await asyncio.to_thread(self._check, creds)
        cache: OrderedDict[bytes, str] | OrderedDict[bytes, float]
        if client is None:
            self._rejected[digest] = time.monotonic()
            cache = self._rejected
        else:
            self._known[digest] = client
            cache = self._known
        if len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
        return client

    def _check(self, creds: Credentials) -> str | None:
        if creds.client:
            hashed = self.hashes.get(creds.client)
            candidates = [(creds.client, hashed)] if hashed else []
        else:
            # A bare key names no client: try each (a gateway has a handful of keys).
            candidates = list(self.hashes.items())
        for client, hashed in candidates:
            try:
                if bcrypt.checkpw(creds.key.encode(), hashed.encode()):
                    return client
            except ValueError:
                continue
        return None


class Authenticator:
    """Turns an Authorization header into a client name, or a 401 / 429 GatewayError."""

    def __init__(self, keys: KeyStore, failures_per_second: float = 5.0) -> None:
        self.keys = keys
        self.failures = RateLimiter(failures_per_second, max(1, int(failures_per_second * 2)))

    async def authenticate(self, authorization: str, address: str) -> str:
        creds = credentials_of(authorization)
        if creds is None:
            raise unauthenticated("missing credentials: send Authorization: Bearer <API key>"
                                  if not authorization else "unsupported Authorization scheme: use Bearer or Basic")
        known = self.keys.known(creds)
        if known is not None:
            return known
        # An address that keeps failing is stopped before bcrypt runs again for it.
        wait = self.failures.peek(address)
        if wait > 0:
            raise GatewayError(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many failed authentications",
                               headers={"Retry-After": retry_after(wait)})
        client = await self.keys.verify(creds)
        if client is not None:
            return client
        self.failures.check(address)
        raise unauthenticated("invalid API key")


def unauthenticated(message: str) -> GatewayError:
    return GatewayError(grpc.StatusCode.UNAUTHENTICATED, message, headers={"WWW-Authenticate": CHALLENGE})
