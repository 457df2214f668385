"""The API keys made at run time: one etcd record each (`/cb/gateway/apikeys/{name}`, an
`ApiKeyRecord`: name, role, namespace, creation time and the key's bcrypt hash, never the key).

Every gateway replica holds all records in memory (an informer: a list, then a watch), so a key
is checked without asking etcd, and a revocation made through another replica reaches this one
as soon as etcd tells it (well under a second on a healthy cluster). While etcd is away the
last records seen stay in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

from cbapi.gateway.v1 import gateway_pb2 as pb
from services import errors
from services.roles import Role
from services.store.etcd import Store
from services.store.informer import Informer

log = logging.getLogger("gateway")

PREFIX = "/cb/gateway/apikeys/"
# Stored keys read `cb.<name>.<secret>`: the name says which hash to check, so a bearer key costs
# one bcrypt however many keys there are. Names have no dots; URL-safe base64 has none either.
KEY_PREFIX = "cb."


def key_name(key: str) -> str:
    """The name a stored key carries; "" for a key of another form (the bootstrap admin key)."""
    head, sep, rest = key.partition(".")
    if not sep or head != "cb":
        return ""
    name, sep, secret = rest.partition(".")
    return name if sep and name and secret else ""


def _decode(key: str, raw: bytes) -> Message | None:
    try:
        return pb.ApiKeyRecord.FromString(raw)
    except DecodeError:
        log.warning("undecodable API key record", extra={"key": key})
        return None


class ApiKeyRegistry:
    """The stored keys, in memory and in etcd."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.informer = Informer(store, PREFIX, _decode, lambda _key: None)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the keys in the background (etcd may come up after the gateway)."""
        self._task = asyncio.create_task(self.informer.start())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.informer.stop()
        await self.store.close()

    @property
    def synced(self) -> bool:
        return self.informer.synced.is_set()

    def get(self, name: str) -> pb.ApiKeyRecord | None:
        entry = self.informer.cache.get(PREFIX + name)
        return entry.value if entry is not None and isinstance(entry.value, pb.ApiKeyRecord) else None

    def all(self) -> list[pb.ApiKeyRecord]:
        return [e.value for _, e in self.informer.under(PREFIX) if isinstance(e.value, pb.ApiKeyRecord)]

    async def create(self, name: str, role: Role, namespace: str, bcrypt_hash: str) -> pb.ApiKeyRecord:
        """Store a new key record; AlreadyExists when the name is taken."""
        self._require_synced()
        created = Timestamp()
        created.GetCurrentTime()
        record = pb.ApiKeyRecord(key=pb.ApiKey(name=name, role=role.label, namespace=namespace,
                                               create_time=created, source="stored"),
                                 bcrypt_hash=bcrypt_hash)
        try:
            revision = await self.store.create(PREFIX + name, record)
        except errors.AlreadyExists:
            raise errors.AlreadyExists(f"API key {name!r} already exists") from None
        self.informer.wrote(PREFIX + name, record, revision)
        return record

    async def delete(self, name: str) -> bool:
        """Remove a key record; False when there was none. The key stops working here at once."""
        self._require_synced()
        deleted = await self.store.delete(PREFIX + name)
        self.informer.forgot(PREFIX + name)
        return deleted

    def _require_synced(self) -> None:
        if not self.synced:
            raise errors.Unavailable("the API key store (etcd) has not been reached yet; try again shortly")
