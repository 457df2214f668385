"""Agent credentials tumblebug owes dragonfly a revoke for.

When a VM with an agent goes (deleted, terminated, scaled in, refined, rolled back), a
record of the revoke is written before the VM's own record is deleted; the leader then asks
dragonfly and drops the record once dragonfly has done it. So a revoke dragonfly could not
take (it was away) is retried until it succeeds instead of being forgotten, and it never
holds up the VM's removal. The revoke names the VM record's request ID, so a late retry
never touches a newer VM that reuses the name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from cbapi.dragonfly.v1 import dragonfly_pb2 as dpb
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.store import Store
from tumblebug import keyspace
from tumblebug.monitoring import Monitoring

log = logging.getLogger("tumblebug.revocations")

RETRY_MIN_S, RETRY_MAX_S = 1.0, 60.0
# Revokes in flight at once (dragonfly folds concurrent ones into few account updates).
PARALLEL = 16
# Failures worth retrying; any other answer will not change by asking again.
TRANSIENT = (errors.Unavailable, errors.DeadlineExceeded, errors.Aborted)


def had_credential(vm: pb.McisVm) -> bool:
    """Whether tumblebug may have asked dragonfly for this VM's credential (VMs it created;
    not those brought in by RegisterVms, which have no request ID)."""
    return bool(vm.request_id) and not vm.registered


class Revocations:
    """The owed revokes (etcd) and the leader's loop that settles them."""

    def __init__(self, store: Store, monitoring: Monitoring) -> None:
        self.store = store
        self.monitoring = monitoring
        self._wake = asyncio.Event()

    async def owe(self, vm_key: str, vm: pb.McisVm) -> None:
        """Record that the credential of the VM at `vm_key` must be revoked; `run` does it."""
        parsed = keyspace.parse(vm_key)
        assert parsed is not None, vm_key
        ns, mcis, name = parsed
        request = dpb.RevokeAgentCredentialRequest(ns=ns, mcis=mcis, vm=name, instance=vm.request_id)
        await self.store.put(keyspace.revocation(ns, mcis, name, vm.request_id), request)
        self._wake.set()

    async def run(self) -> None:
        """Settle what is owed, now and whenever more is; retry with backoff while dragonfly fails."""
        delay = RETRY_MIN_S
        while True:
            self._wake.clear()
            try:
                settled = await self._settle()
            except errors.DomainError as err:  # etcd away or slow
                log.warning("owed revokes not settled", extra={"error": err.message})
                settled = False
            delay = RETRY_MIN_S if settled else min(delay * 2, RETRY_MAX_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), None if settled else delay)

    async def _settle(self) -> bool:
        owed = await self.store.list_all(keyspace.REVOCATIONS, dpb.RevokeAgentCredentialRequest)
        gate = asyncio.Semaphore(PARALLEL)

        async def one(key: str, request: dpb.RevokeAgentCredentialRequest) -> bool:
            async with gate:
                try:
                    await self.monitoring.revoke_agent(request)
                except errors.DomainError as err:
                    if isinstance(err, TRANSIENT):
                        log.warning("agent credential not revoked yet; will retry",
                                    extra={"vm": f"{request.ns}/{request.mcis}/{request.vm}", "error": err.message})
                        return False
                    log.error("agent credential cannot be revoked",
                              extra={"vm": f"{request.ns}/{request.mcis}/{request.vm}", "error": err.message})
                await self.store.delete(key)
                return True

        done = await asyncio.gather(*(one(v.key, v.value) for v in owed))
        return all(done)
