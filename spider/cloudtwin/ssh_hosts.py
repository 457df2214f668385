"""SSH into twin VMs: which VMs serve it, and the helper process that does.

A VM made with a key pair and without an agent gets an SSH server on its own
loopback address while it is `running` (`VmProps.ssh_port`, decided when it is
made; `CB_CLOUDTWIN_SSH_PORT`, default 2222, since port 22 needs root). The
servers live in one helper process (`python -m spider.cloudtwin.sshd`, started
with the first such VM), so the handshakes' cryptography stays off the
emulator's event loop; it is ordered over stdin, as the guest helpers are, and
started again with its VMs if it dies. VMs with an agent have no SSH server:
at 10,000 agents a listener each would cost the helper for nothing they need.

The server accepts the key pair's public key for the image's login user
(`LOGIN_USERS`, as a real image has its default user), and runs commands in the
VM's sandbox directory, the same one its agent would use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from pathlib import Path

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as pb

from . import lifecycle
from .catalog import Catalog
from .guests import wants_agent
from .helper_process import HelperProcess
from .store import Record, Store

log = logging.getLogger("cloudtwin.ssh")

# The login user of each image OS (a real image's default user); others get DEFAULT_USER.
LOGIN_USERS = {"ubuntu": "ubuntu", "debian": "admin", "rocky": "rocky", "centos": "centos", "fedora": "fedora"}
DEFAULT_USER = "cb-user"


def serves_ssh(vm: pb.VmProps) -> bool:
    """Whether a new VM gets an SSH server: it has a key pair to let in and no agent."""
    return bool(vm.key_pair_id) and not wants_agent(vm.user_data)


class SshHelper(HelperProcess):
    """The helper process and the VMs it serves."""

    def __init__(self, log_path: Path) -> None:
        super().__init__("spider.cloudtwin.sshd", log_path)
        self.serving: set[str] = set()

    async def start(self) -> None:
        await super().start()
        self.serving.clear()


class SshHosts:
    """Keeps the set of SSH servers equal to the set of running VMs that have one."""

    def __init__(self, store: Store, catalog: Catalog, directory: str, interval_s: float = 0.5) -> None:
        self.store = store
        self.catalog = catalog
        self._own_dir = not directory
        self.root = Path(directory or tempfile.mkdtemp(prefix="cloudtwin-ssh-"))
        self.helper = SshHelper(self.root / "logs" / "sshd.log")
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cloudtwin-ssh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.helper.stop()
        if self._own_dir:
            shutil.rmtree(self.root, ignore_errors=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.sync()
            except Exception:  # keep the loop alive; the next round retries
                log.exception("ssh sync failed")
            await asyncio.sleep(self.interval_s)

    def _wanted(self) -> dict[str, Record]:
        now = self.store.clock()
        out = {}
        for rec in self.store.all_records():
            # The port first: VMs without SSH (every agent VM) cost one field read.
            if rec.kind != pb.VM or not rec.res.vm.ssh_port or not self.store.advance(rec, now):
                continue
            if rec.state == lifecycle.RUNNING:
                out[rec.id] = rec
        return out

    async def sync(self) -> None:
        """Serve newly running VMs, stop serving VMs no longer running."""
        helper = self.helper
        if helper.proc is not None and not helper.alive():
            log.warning("ssh helper exited; starting it again")
            await helper.start()  # forgets what it served: served again below
        wanted = self._wanted()
        for vm_id in list(helper.serving - wanted.keys()):
            helper.order({"op": "stop", "id": vm_id})
            helper.serving.discard(vm_id)
        for vm_id in wanted.keys() - helper.serving:
            order = self._serve_order(wanted[vm_id])
            if order is None:
                continue
            if helper.proc is None:
                await helper.start()  # started with the first VM that needs it
            helper.order(order)
            helper.serving.add(vm_id)
        await helper.flush()

    def _serve_order(self, rec: Record) -> dict[str, object] | None:
        vm = rec.res.vm
        key = self.store.lookup(vm.key_pair_id)
        if key is None or key.kind != pb.KEY_PAIR:
            return None  # its key pair was deleted: nobody could log in
        return {"op": "serve", "id": rec.id, "name": rec.res.name, "ip": vm.private_ip, "port": vm.ssh_port,
                "user": self._login_user(rec), "public_key": key.res.key_pair.public_key,
                "sandbox": str(self.root / "vms" / rec.id)}

    def _login_user(self, rec: Record) -> str:
        try:
            image = self.catalog.region(rec.res.provider, rec.res.region).images[rec.res.vm.image_id]
        except (KeyError, LookupError):
            return DEFAULT_USER
        return LOGIN_USERS.get(image.os, DEFAULT_USER)
