"""`python -m spider.cloudtwin.sshd`: the SSH servers of CloudTwin VMs that have no agent.

CloudTwin starts one of these (`spider.cloudtwin.ssh_hosts`) and orders it, one JSON
line on stdin at a time, to serve a VM (`{"op": "serve", "id", "ip", "port", "user",
"public_key", "sandbox", "name"}`) or to stop (`{"op": "stop", "id"}`). Each VM gets an
SSH server on its own loopback address that accepts one user (its image's login user)
with one key (its key pair's public key), and runs each `exec` request with `sh -c` in
the VM's sandbox, as the agent runs commands: a new session per command, `CB_VM_IP`,
`CB_VM_ID`, `CB_VM_NAME` and `HOME` set. Interactive shells are not offered.

A command's answer ends when its shell exits (output that follows within a moment is
still sent), so a server it left in the background does not hold the channel. A channel
that closes first (the client gave up: its timeout) kills the command's process group;
a VM that stops kills everything its commands started and drops its connections. When
stdin closes (CloudTwin stopped or died), every server stops and the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass, field

import asyncssh

from dragonfly.agent import Runner
from services import logs
from services.stdin import open_stdin

log = logging.getLogger("cloudtwin.sshd")

# After the shell exits, how long its output may still come (as the agent waits).
TAIL_S = 0.2
# Bytes read from a command's pipe at a time.
CHUNK = 65536


@dataclass(frozen=True)
class VmSsh:
    """What one VM's SSH server needs: where it listens, whom it lets in, where commands run."""

    vm_id: str
    name: str
    ip: str
    port: int
    user: str
    public_key: str
    sandbox: str

    @classmethod
    def from_order(cls, order: dict[str, object]) -> VmSsh:
        vm = cls(vm_id=str(order["id"]), name=str(order.get("name", "")), ip=str(order["ip"]),
                 port=int(str(order["port"])), user=str(order["user"]), public_key=str(order["public_key"]),
                 sandbox=str(order["sandbox"]))
        if not vm.ip.startswith("127."):
            raise ValueError(f"{vm.ip} is not a loopback address; twin VMs serve SSH on loopback only")
        return vm


async def _exit_code(proc: asyncio.subprocess.Process, closed: asyncio.Event) -> int | None:
    """The shell's exit code, or None when the channel closed first.

    Polled: on Python 3.11 `Process.wait()` also waits for the pipes, which a
    background server keeps open."""
    while proc.returncode is None and not closed.is_set():  # noqa: ASYNC110 (no exit event on 3.11)
        await asyncio.sleep(0.02)
    return proc.returncode


class _CommandSession(asyncssh.SSHServerSession[bytes]):
    """One `exec` request: the command runs, its output goes to the channel, then its exit status."""

    def __init__(self, server: VmServer) -> None:
        self.server = server
        self.chan: asyncssh.SSHServerChannel[bytes] | None = None
        self.command = ""
        self.closed = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self.chan = chan

    def shell_requested(self) -> bool:
        return False

    def exec_requested(self, command: str) -> bool:
        self.command = command
        return True

    def session_started(self) -> None:
        self.task = asyncio.create_task(self._run())

    def eof_received(self) -> bool:
        return True  # stdin ended (commands read none): the channel stays open for the output

    def pause_writing(self) -> None:
        self.writable.clear()  # the client's window is full: stop reading the pipes for now

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()

    async def _pump(self, stream: asyncio.StreamReader, stderr: bool) -> None:
        while chunk := await stream.read(CHUNK):
            await self.writable.wait()
            if self.closed.is_set() or self.chan is None:
                return
            with contextlib.suppress(OSError):  # the channel closed meanwhile: the rest is not wanted
                if stderr:
                    self.chan.write_stderr(chunk)
                else:
                    self.chan.write(chunk)

    async def _run(self) -> None:
        assert self.chan is not None
        runner = self.server.runner
        try:
            proc = await asyncio.create_subprocess_shell(
                self.command, cwd=runner.cwd, env=runner.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            self.chan.write_stderr(f"cannot start: {exc}\n".encode())
            self.chan.exit(127)
            return
        runner.pgids.add(proc.pid)  # the session leader's PID is the group's ID
        assert proc.stdout is not None and proc.stderr is not None
        pumps = [asyncio.create_task(self._pump(proc.stdout, False)),
                 asyncio.create_task(self._pump(proc.stderr, True))]
        code = await _exit_code(proc, self.closed)
        if code is None:
            runner.kill_group(proc.pid)  # the client left (its timeout): the command goes too
        else:
            await asyncio.wait(pumps, timeout=TAIL_S)
        for task in pumps:
            task.cancel()
        runner.forget_dead()
        if code is not None and not self.closed.is_set():
            # A shell killed by a signal reports 128 + its number, as a login shell would.
            with contextlib.suppress(OSError):
                self.chan.exit(code if code >= 0 else 128 - code)


class _Auth(asyncssh.SSHServer):
    """Authentication of one VM: its login user with its key pair, nothing else."""

    def __init__(self, server: VmServer) -> None:
        self.server = server
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.server.connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.server.connections.discard(self.conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self.server.vm.user and key.public_data == self.server.key.public_data

    def session_requested(self) -> _CommandSession:
        return _CommandSession(self.server)


# Where a VM keeps its SSH host key: on its own disk, as sshd keeps /etc/ssh/ssh_host_*_key.
HOST_KEY_FILE = ".ssh_host_ed25519_key"


def host_key(sandbox: str) -> asyncssh.SSHKey:
    """The VM's host key, made at its first start and the same at every later one (clients pin it)."""
    path = os.path.join(sandbox, HOST_KEY_FILE)
    if os.path.exists(path):
        return asyncssh.read_private_key(path)
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(path)
    os.chmod(path, 0o600)
    return key


@dataclass
class VmServer:
    """One VM's SSH server and what its commands left running."""

    vm: VmSsh
    key: asyncssh.SSHKey
    runner: Runner
    acceptor: asyncssh.SSHAcceptor | None = None
    connections: set[asyncssh.SSHServerConnection] = field(default_factory=set)

    async def start(self, host_key: asyncssh.SSHKey) -> None:
        self.acceptor = await asyncssh.listen(
            self.vm.ip, self.vm.port, server_factory=lambda: _Auth(self), server_host_keys=[host_key],
            encoding=None, reuse_address=True, login_timeout=10, keepalive_interval=0)

    def stop(self) -> None:
        if self.acceptor is not None:
            self.acceptor.close()
        for conn in list(self.connections):
            conn.abort()
        self.runner.stop_all()  # the VM is off: nothing it started keeps running


class Sshd:
    """The SSH servers of the VMs of one CloudTwin."""

    def __init__(self) -> None:
        self.vms: dict[str, VmServer] = {}

    async def serve(self, vm: VmSsh) -> None:
        if vm.vm_id in self.vms:
            return
        os.makedirs(vm.sandbox, exist_ok=True)
        runner = Runner(vm.sandbox, {"CB_VM_IP": vm.ip, "CB_VM_ID": vm.vm_id, "CB_VM_NAME": vm.name,
                                     "HOME": vm.sandbox})
        server = VmServer(vm, asyncssh.import_public_key(vm.public_key), runner)
        try:
            await server.start(host_key(vm.sandbox))
        except OSError as err:
            log.warning("cannot serve SSH", extra={"vm_id": vm.vm_id, "ip": vm.ip, "port": vm.port,
                                                   "error": str(err)})
            return
        self.vms[vm.vm_id] = server
        log.info("serving SSH", extra={"vm_id": vm.vm_id, "ip": vm.ip, "port": vm.port})

    def stop(self, vm_id: str) -> None:
        server = self.vms.pop(vm_id, None)
        if server is not None:
            server.stop()
            log.info("stopped SSH", extra={"vm_id": vm_id})

    def stop_all(self) -> None:
        for vm_id in list(self.vms):
            self.stop(vm_id)

    async def handle(self, line: bytes) -> None:
        try:
            order = json.loads(line)
            op = order["op"]
            if op == "serve":
                await self.serve(VmSsh.from_order(order))
            elif op == "stop":
                self.stop(str(order["id"]))
            else:
                log.warning("unknown order", extra={"op": op})
        except (ValueError, KeyError, TypeError, asyncssh.KeyImportError) as err:
            log.warning("bad order", extra={"error": str(err)})


async def serve(stdin: asyncio.StreamReader) -> None:
    sshd = Sshd()
    try:
        while line := await stdin.readline():
            await sshd.handle(line)
    finally:
        sshd.stop_all()


async def _main() -> None:
    await serve(await open_stdin())


def main() -> None:
    logs.setup(os.environ.get("CB_LOG_LEVEL", "INFO"))
    # asyncssh logs every connection and channel at INFO: thousands of commands would drown ours.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    asyncio.run(_main())


if __name__ == "__main__":
    main()
