"""The CB account as the NATS server holds it, kept in line with the revoked agent credentials.

Every replica follows the credential records in etcd and, when the set of revoked users
changes, pushes the account's JWT carrying that set to the server's full resolver
(`$SYS.REQ.CLAIMS.UPDATE`, as a system-account user allowed nothing else). The server then
refuses those users and closes their connections. The set is rebuilt from etcd whenever a
replica starts, so it outlives dragonfly; a record whose JWT has expired is dropped (the server
refuses an expired JWT by itself), which keeps the set, and the JWT, bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from google.protobuf.message import Message

from cbapi.dragonfly.v1 import dragonfly_pb2 as pb
from dragonfly import keyspace
from services import errors
from services.bus import Bus
from services.natsauth import CLAIMS_UPDATE, AccountAdmin
from services.store import Informer, Store

log = logging.getLogger("dragonfly.account")

PUSH_TIMEOUT_S = 5.0
RETRY_MIN_S, RETRY_MAX_S = 0.5, 30.0
# A record is dropped this long after its JWT expired, not at once: the server judges expiry
# by its own clock, which may run behind ours.
EXPIRED_GRACE_S = 3600


def _decode(key: str, raw: bytes) -> Message | None:
    return pb.IssuedCredential.FromString(raw)


def revocations(records: list[pb.IssuedCredential], now: float) -> dict[str, int]:
    """User → revocation time, for every revoked credential still worth refusing."""
    out: dict[str, int] = {}
    for rec in records:
        if rec.HasField("revoked_time") and rec.expire_time.seconds + EXPIRED_GRACE_S > now:
            # NATS refuses JWTs issued at or before the time: never earlier than the JWT itself,
            # whichever replica's clock stamped the revocation.
            out[rec.user] = max(rec.revoked_time.seconds, rec.issued_time.seconds)
    return out


def _check_answer(data: bytes) -> None:
    """The resolver's answer: `data` (code 200) when it stored the JWT, else `error`."""
    try:
        answer = json.loads(data)
    except ValueError as err:
        raise errors.Unavailable(f"the NATS server's answer to an account update is not JSON: {data[:200]!r}") from err
    failure = answer.get("error")
    if failure or int(answer.get("data", {}).get("code", 0)) != 200:
        raise errors.Unavailable(f"the NATS server did not take the account update: {failure or answer}")


class AccountSync:
    """One replica's pushes of the account JWT: on every change of the revocations, again every
    `resync_s` (in case the server lost what it had), and on demand through `sync`."""

    def __init__(self, store: Store, bus: Bus, admin: AccountAdmin, resync_s: float) -> None:
        self.store = store
        self.bus = bus
        self.admin = admin
        self.resync_s = resync_s
        self.records = Informer(store, keyspace.CREDENTIALS, _decode, self._changed)
        self._lock = asyncio.Lock()
        self._asked = 0  # sync calls so far
        self._covered = 0  # calls the server's current JWT answers
        self._pushed: dict[str, int] | None = None  # what the server confirmed last
        self._token = ""  # and the JWT that carried it
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.bus.connect()
        await self.records.start()
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.records.stop()
        await self.bus.close()

    def wrote(self, key: str, record: pb.IssuedCredential, revision: int) -> None:
        """This replica wrote a record: the next push counts it without waiting for the watch."""
        self.records.wrote(key, record, revision)

    def _changed(self, key: str) -> None:
        entry = self.records.cache.get(key)
        # A credential just issued changes nothing the server must refuse; only revocations and
        # removals do. (Waking for each issue made every new VM cost a pass over all records.)
        if entry is not None and isinstance(entry.value, pb.IssuedCredential) \
                and not entry.value.HasField("revoked_time"):
            return
        self._wake.set()

    def current(self) -> dict[str, int]:
        records = [v for _, e in self.records.under(keyspace.CREDENTIALS) if isinstance(v := e.value, pb.IssuedCredential)]
        return revocations(records, time.time())

    async def sync(self, force: bool = False) -> None:
        """Return once the server holds every revocation recorded before this call; Unavailable
        when it could not be told. Concurrent calls share pushes (a burst makes at most two)."""
        self._asked += 1
        ticket = self._asked
        async with self._lock:
            if self._covered >= ticket and not force:
                return  # a push that began after this call covered it
            covering = self._asked
            await self._push(self.current(), force)
            self._covered = covering

    async def _push(self, revoked: dict[str, int], force: bool) -> None:
        if revoked == self._pushed and not force:
            return
        # The same list goes out as the same JWT, which the server takes as no change at all.
        token = self._token if revoked == self._pushed else self.admin.with_revocations(revoked)
        _check_answer(await self.bus.request(CLAIMS_UPDATE, token.encode(), timeout=PUSH_TIMEOUT_S))
        if revoked != self._pushed:
            log.info("account updated", extra={"account": self.admin.account, "revoked_users": len(revoked)})
        self._pushed, self._token = dict(revoked), token

    async def _follow(self) -> None:
        force, delay = True, RETRY_MIN_S
        while True:
            self._wake.clear()
            try:
                await self.sync(force)
                await self._prune()
                wait, delay = self.resync_s, RETRY_MIN_S
            except errors.DomainError as err:
                log.warning("account update not taken; will retry", extra={"error": err.message, "in_s": delay})
                wait, delay = delay, min(delay * 2, RETRY_MAX_S)
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
                force = False
            except TimeoutError:
                force = True

    async def _prune(self) -> None:
        """Drop records of expired JWTs (every replica tries; the first delete wins)."""
        cutoff = time.time() - EXPIRED_GRACE_S
        for key, entry in list(self.records.under(keyspace.CREDENTIALS)):
            record = entry.value
            assert isinstance(record, pb.IssuedCredential)
            if record.expire_time.seconds <= cutoff:
                with contextlib.suppress(errors.Aborted):
                    await self.store.delete(key, entry.mod_revision)
                self.records.forgot(key)
