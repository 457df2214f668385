"""Who is calling: API keys as `Authorization: Bearer <key>` or HTTP Basic `<client>:<key>`.

Only bcrypt hashes of the keys are kept. Static keys come from a keys file of
`client:hash[:role[:namespace]]` lines (`CB_GATEWAY_KEYS_FILE`) and `CB_ADMIN_API_KEY` (hashed at
start, client `admin`); keys made at run time live in etcd (services/gateway/apikeys.py). Each key
names a Principal: its name, role and namespace scope.
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
from prometheus_client import Counter

from services.gateway.apikeys import KEY_PREFIX, ApiKeyRegistry, key_name
from services.gateway.errors import GatewayError
from services.gateway.ratelimit import RateLimiter, retry_after
from services.roles import Principal, Role

REALM = "cb-gateway"
CHALLENGE = f'Bearer realm="{REALM}", Basic realm="{REALM}", charset="UTF-8"'
ADMIN = "admin"
_CLIENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_NEGATIVE_SECONDS = 30.0
_CACHE_SIZE = 4096
BCRYPT_CHECKS = Counter("cb_gateway_bcrypt_checks_total", "bcrypt comparisons the gateway ran to check API keys")


def generate_key(name: str = "") -> str:
    """A new API key: 256 random bits, URL-safe. A stored key carries its name (`cb.<name>.<secret>`)
    so that checking it costs one bcrypt; the bootstrap admin key is `cb_<secret>`."""
    secret = secrets.token_urlsafe(32)
    return f"{KEY_PREFIX}{name}.{secret}" if name else "cb_" + secret


def hash_key(key: str, rounds: int = 12) -> str:
    return bcrypt.hashpw(key.encode(), bcrypt.gensalt(rounds)).decode()


def write_keys_file(path: Path, hashes: Mapping[str, str]) -> None:
    """Write `client:hash` lines (or `client:hash:role[:namespace]`), readable by the owner only."""
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


@dataclass(frozen=True)
class StaticKey:
    """A key from the keys file or CB_ADMIN_API_KEY: its hash and who it is."""

    bcrypt_hash: str
    principal: Principal


def parse_keys_file(text: str, source: str = "keys file") -> dict[str, StaticKey]:
    """`client:bcrypt-hash[:role[:namespace]]` lines (blank lines and # comments allowed); the role
    is admin when not given."""
    out: dict[str, StaticKey] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        client, _, rest = line.partition(":")
        hashed, _, scope = rest.partition(":")
        role_text, _, namespace = scope.partition(":")
        if not _CLIENT.match(client) or not hashed.startswith("$2"):
            raise ValueError(f"{source} line {number}: expected client:bcrypt-hash[:role[:namespace]]")
        try:
            role = Role.parse(role_text) if role_text else Role.ADMIN
        except ValueError as exc:
            raise ValueError(f"{source} line {number}: {exc}") from None
        out[client] = StaticKey(hashed, Principal(client, role, namespace))
    return out


class KeyStore:
    """The keys a gateway accepts (static ones, and the registry's stored ones), and the cache of
    keys already checked.

    A key that checked out is remembered by its SHA-256 with the hash it matched, for the life of
    the process; each use looks the key's name up again, so a revoked or replaced key fails at
    once. A wrong key is remembered for a short while."""

    def __init__(self, static: Mapping[str, StaticKey], registry: ApiKeyRegistry | None = None) -> None:
        self.static = dict(static)
        self.registry = registry
        self._known: OrderedDict[bytes, tuple[str, str]] = OrderedDict()
        self._rejected: OrderedDict[bytes, float] = OrderedDict()

    @classmethod
    def from_settings(cls, keys_file: str, registry: ApiKeyRegistry | None = None,
                      environ: Mapping[str, str] | None = None) -> KeyStore:
        env = os.environ if environ is None else environ
        static: dict[str, StaticKey] = {}
        if keys_file:
            static.update(parse_keys_file(Path(keys_file).read_text(), keys_file))
        admin = env.get("CB_ADMIN_API_KEY", "").strip()
        if admin:
            static[ADMIN] = StaticKey(hash_key(admin), Principal(ADMIN, Role.ADMIN))
        return cls(static, registry)

    def __len__(self) -> int:
        return len(self.static)

    def lookup(self, name: str) -> tuple[str, Principal] | None:
        """The hash and principal of the key called `name`, static or stored."""
        found = self.static.get(name)
        if found is not None:
            return found.bcrypt_hash, found.principal
        record = self.registry.get(name) if self.registry is not None else None
        if record is None:
            return None
        try:
            role = Role.parse(record.key.role)
        except ValueError:
            return None
        return record.bcrypt_hash, Principal(record.key.name, role, record.key.namespace)

    @staticmethod
    def _digest(creds: Credentials) -> bytes:
        return hashlib.sha256(f"{creds.client}\0{creds.key}".encode()).digest()

    def known(self, creds: Credentials) -> Principal | None:
        """The principal, when these credentials checked out before and the key still stands (no bcrypt)."""
        digest = self._digest(creds)
        held = self._known.get(digest)
        if held is None:
            return None
        name, hashed = held
        current = self.lookup(name)
        if current is None or current[0] != hashed:
            del self._known[digest]  # revoked, or replaced by a new key of the same name
            return None
        self._known.move_to_end(digest)
        return current[1]

    def recently_rejected(self, creds: Credentials) -> bool:
        rejected_at = self._rejected.get(self._digest(creds))
        return rejected_at is not None and time.monotonic() - rejected_at < _NEGATIVE_SECONDS

    def candidates(self, creds: Credentials) -> list[tuple[str, str]]:
        """(name, hash) pairs these credentials could match: one when a name is known (Basic's
        client, or the name inside a stored key), else the static keys (a handful)."""
        name = creds.client or key_name(creds.key)
        if name:
            found = self.lookup(name)
            return [(name, found[0])] if found else []
        return [(n, k.bcrypt_hash) for n, k in self.static.items()]

    def remember(self, creds: Credentials, match: tuple[str, str] | None) -> None:
        digest = self._digest(creds)
        cache: OrderedDict[bytes, tuple[str, str]] | OrderedDict[bytes, float]
        if match is None:
            self._rejected[digest] = time.monotonic()
            cache = self._rejected
        else:
            self._rejected.pop(digest, None)
            self._known[digest] = match
            cache = self._known
        if len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)


def check_candidates(key: str, candidates: list[tuple[str, str]]) -> tuple[str, str] | None:
    """The (name, hash) whose hash `key` matches. Runs bcrypt: call it off the event loop."""
    for name, hashed in candidates:
        BCRYPT_CHECKS.inc()
        try:
            if bcrypt.checkpw(key.encode(), hashed.encode()):
                return name, hashed
        except ValueError:
            continue
    return None


class Authenticator:
    """Turns an Authorization header into a Principal, or a 401 / 429 GatewayError.

    bcrypt is slow on purpose, so it is what an attacker would make the gateway spend. Every
    attempt that needs it takes a token from its address's bucket *before* it runs (a success
    gives the token back), so concurrent wrong keys from one address get 429 past the allowance
    instead of each costing a bcrypt; and at most `concurrency` checks run at once in all."""

    def __init__(self, keys: KeyStore, failures_per_second: float = 5.0, concurrency: int = 2) -> None:
        self.keys = keys
        self.failures = RateLimiter(failures_per_second, max(1, int(failures_per_second * 2)))
        self._bcrypt = asyncio.Semaphore(max(1, concurrency))
        # Concurrent requests with the same credentials share one check.
        self._inflight: dict[bytes, asyncio.Future[tuple[str, str] | None]] = {}

    async def authenticate(self, authorization: str, address: str) -> Principal:
        creds = credentials_of(authorization)
        if creds is None:
            raise unauthenticated("missing credentials: send Authorization: Bearer <API key>"
                                  if not authorization else "unsupported Authorization scheme: use Bearer or Basic")
        known = self.keys.known(creds)
        if known is not None:
            return known
        # Counted before any bcrypt runs: past the allowance an address gets 429 at no cost.
        wait = self.failures.check(address)
        if wait > 0:
            raise GatewayError(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many failed authentications",
                               headers={"Retry-After": retry_after(wait)})
        match = None if self.keys.recently_rejected(creds) else await self._check(creds)
        if match is not None:
            current = self.keys.lookup(match[0])
            if current is not None and current[0] == match[1]:
                self.failures.refund(address)
                return current[1]
        raise unauthenticated("invalid API key")

    async def _check(self, creds: Credentials) -> tuple[str, str] | None:
        digest = KeyStore._digest(creds)
        pending = self._inflight.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[tuple[str, str] | None] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            candidates = self.keys.candidates(creds)
            match = None
            if candidates:
                async with self._bcrypt:
                    # bcrypt takes a quarter second: off the event loop.
                    match = await asyncio.to_thread(check_candidates, creds.key, candidates)
            self.keys.remember(creds, match)
            future.set_result(match)
            return match
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        finally:
            del self._inflight[digest]


def unauthenticated(message: str) -> GatewayError:
    return GatewayError(grpc.StatusCode.UNAUTHENTICATED, message, headers={"WWW-Authenticate": CHALLENGE})
