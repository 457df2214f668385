"""Agents' credentials: one per VM, minted with the account signing key and remembered in
etcd (which NATS user went to which VM, never the seed), so exactly those can be revoked."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from cbapi.dragonfly.v1 import dragonfly_pb2 as pb
from dragonfly import keyspace
from dragonfly.account import AccountSync
from dragonfly.agents import stamp
from dragonfly.protocol.subjects import VmId
from services import errors
from services.natsauth import Creds, Signer, decode_claims
from services.store import Store

log = logging.getLogger("dragonfly.credentials")


class AgentCredentials:
    """Issues agents' credentials and revokes them; the account sync makes a revocation bind."""

    def __init__(self, store: Store, signer: Signer, account: AccountSync, ttl_s: float) -> None:
        self.store = store
        self.signer = signer
        self.account = account
        self.ttl_s = ttl_s

    async def issue(self, vm: VmId, instance: str) -> Creds:
        """A new credential for the VM's agent. The earlier ones of that VM name are revoked first:
        names come back (`g-2` again after a scale-in and out) and must not share one identity.
        Those of the same `instance` stay: they belong to the same VM (a create sent again after a
        crash may be answered with the VM the first one made, booted with the earlier credential)."""
        if await self._mark_revoked(vm, lambda record: not instance or record.instance != instance):
            try:
                await self.account.sync()
            except errors.Unavailable as err:
                # Recorded, so the account sync pushes it when NATS answers again; refusing the new
                # credential would not stop the old one meanwhile, only leave the VM without an agent.
                log.warning("earlier credential revoked, not yet enforced", extra={"vm": vm.key, "error": err.message})
        creds = self.signer.issue(vm.key, vm.permissions(), expires_at=int(time.time() + self.ttl_s))
        claims = decode_claims(creds.jwt)
        record = pb.IssuedCredential(user=claims["sub"], ns=vm.ns, mcis=vm.mcis, vm=vm.vm, instance=instance,
                                     issued_time=stamp(claims["iat"]), expire_time=stamp(claims["exp"]))
        # Recorded before it is handed out: no credential leaves dragonfly that it could not revoke.
        key = keyspace.credential(vm, record.user)
        self.account.wrote(key, record, await self.store.put(key, record))
        return creds

    async def revoke(self, vm: VmId, instance: str) -> list[str]:
        """Revoke the VM's credentials (only those issued with `instance`, when given); return the
        users revoked by this call once the NATS server enforces every revocation of the VM."""
        users = await self._mark_revoked(vm, lambda record: not instance or record.instance == instance)
        await self.account.sync()
        return users

    async def _mark_revoked(self, vm: VmId, chosen: Callable[[pb.IssuedCredential], bool]) -> list[str]:
        now = stamp(time.time())
        users: list[str] = []

        def mark(record: pb.IssuedCredential) -> pb.IssuedCredential | None:
            if record.HasField("revoked_time"):
                return None  # another call revoked it meanwhile; its time stands
            record.revoked_time.CopyFrom(now)
            return record

        for found in await self.store.list_all(keyspace.credentials(vm), pb.IssuedCredential):
            record = found.value
            if record.HasField("revoked_time") or not chosen(record):
                continue
            with contextlib.suppress(errors.NotFound):  # expired and pruned meanwhile
                written = await self.store.modify_versioned(found.key, pb.IssuedCredential, mark,
                                                            f"credential of VM {vm.key}")
                self.account.wrote(found.key, written.value, written.mod_revision)
                if written.value.revoked_time == now:
                    users.append(record.user)
        return users
