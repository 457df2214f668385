"""One command on one VM over SSH (asyncssh), answered as the agent answers.

The result is dragonfly's `CommandResult`, so both paths read alike: exit code,
stdout and stderr (each capped at 1 MiB, as the agent caps them, with a
truncation flag), `timed_out`, duration. The answer is due when the command
exits (its exit status arrives); output that follows within a moment still
counts, so a server it started in the background does not hold the answer. A
timeout closes the channel, which ends the command on the VM (OpenSSH's sshd
hangs it up; CloudTwin kills its process group), and is reported in the result.
Not reaching the VM or not being let in raises `SshError`, in words.

Host keys are trusted on first use: tumblebug has no trusted copy of a new VM's
host key (clouds print it only to the VM's console), so the key the first login
sees is pinned on the VM's record (`SshRun.host_key`), and every later login must
be answered with it — a different key is refused, in words, before the command
is sent. A VM made again gets a new record, so its new key is pinned afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass, field

import asyncssh

from cbapi.dragonfly.v1 import dragonfly_pb2 as dpb
from services.capped import Capped

# Per stream, as the agent's default.
OUTPUT_LIMIT_BYTES = 1024 * 1024
# After the exit status, how long the rest of the output may take.
TAIL_S = 0.2


class SshError(Exception):
    """The command could not be run: the VM was not reached or did not let us in."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class SshTarget:
    """Where and as whom to log in; the key is never part of a repr."""

    host: str
    port: int
    user: str
    key: asyncssh.SSHKey = field(repr=False)
    # The pinned host key (OpenSSH public-key line); "" until the first login pins one.
    host_key: str = ""

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


@dataclass(frozen=True)
class SshRun:
    """A command's result, and the host key the VM answered with (to pin on first use)."""

    result: dpb.CommandResult
    host_key: str


def load_key(private_key: str) -> asyncssh.SSHKey:
    try:
        return asyncssh.import_private_key(private_key)
    except (asyncssh.KeyImportError, ValueError) as err:
        raise SshError(f"the stored private key cannot be read: {err}") from err


def access_point(point: str) -> tuple[str, int]:
    """(host, port) of `host:port` or `[v6]:port`; ValueError for anything else."""
    host, sep, port = point.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{point!r} is not host:port")
    return host.strip("[]"), int(port)


class _Session(asyncssh.SSHClientSession[bytes]):
    """Collects one command's output and how it ended."""

    def __init__(self, limit: int) -> None:
        self.stdout = Capped(limit)
        self.stderr = Capped(limit)
        self.exit_code: int | None = None
        self.ended = asyncio.Event()   # exit status, exit signal, or the channel closed
        self.closed = asyncio.Event()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        (self.stderr if datatype == asyncssh.EXTENDED_DATA_STDERR else self.stdout).add(data)

    def exit_status_received(self, status: int) -> None:
        self.exit_code = status
        self.ended.set()

    def exit_signal_received(self, signal_name: str, core_dumped: bool, msg: str, lang: str) -> None:
        # As a local shell reports a killed child: minus the signal's number.
        number = getattr(signal, f"SIG{signal_name}", None)
        self.exit_code = -int(number) if number is not None else -1
        self.ended.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        self.ended.set()


async def connect(target: SshTarget, timeout_s: float) -> asyncssh.SSHClientConnection:
    """A logged-in connection, or SshError saying why not."""
    try:
        pinned: tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]] | None = (
            ([asyncssh.import_public_key(target.host_key)], [], []) if target.host_key else None)
    except (asyncssh.KeyImportError, ValueError) as err:
        raise SshError(f"the pinned host key of {target.host}:{target.port} cannot be read: {err}") from None
    try:
        async with asyncio.timeout(timeout_s):
            # Nothing from this machine's SSH setup: no ~/.ssh/config, no agent, no other keys.
            return await asyncssh.connect(
                target.host, target.port, username=target.user, client_keys=[target.key], known_hosts=pinned,
                agent_path=None, config=[], x509_trusted_certs=None, preferred_auth="publickey",
                keepalive_interval=0)
    except asyncssh.HostKeyNotVerifiable:
        raise SshError(f"{target.host}:{target.port} answered with another SSH host key than the one pinned at "
                       "the first login: refused (a VM rebuilt in place must be registered again)") from None
    except TimeoutError:
        raise SshError(f"no SSH answer from {target.host}:{target.port} within {timeout_s:g}s") from None
    except asyncssh.PermissionDenied:
        raise SshError(f"SSH login refused for {target.where}: the key does not open this VM "
                       "for this user") from None
    except ConnectionRefusedError:
        raise SshError(f"SSH connection refused by {target.host}:{target.port}") from None
    except OSError as err:
        raise SshError(f"cannot reach {target.host}:{target.port}: {err.strerror or err}") from None
    except asyncssh.Error as err:
        raise SshError(f"SSH to {target.host}:{target.port} failed: {err.reason}") from None
    except ValueError as err:  # asyncssh's word for settings it cannot use
        raise SshError(f"SSH to {target.host}:{target.port} cannot start: {err}") from None


def _host_key(conn: asyncssh.SSHClientConnection) -> str:
    key = conn.get_server_host_key()
    return key.export_public_key("openssh").decode().strip() if key is not None else ""


async def run(target: SshTarget, command: str, timeout_s: float, connect_timeout_s: float = 10.0,
              limit_bytes: int = OUTPUT_LIMIT_BYTES) -> SshRun:
    """Run `command` on the VM; its timeout (not counting the login) is reported in the result."""
    conn = await connect(target, connect_timeout_s)
    host_key = target.host_key or _host_key(conn)
    started = time.monotonic()
    try:
        session = _Session(limit_bytes)
        try:
            chan, _ = await conn.create_session(lambda: session, command, encoding=None)
        except (asyncssh.Error, OSError) as err:
            raise SshError(f"{target.host}:{target.port} refused to run a command: {err}") from None
        chan.write_eof()  # nothing comes on stdin, as with the agent
        timed_out = False
        try:
            await asyncio.wait_for(session.ended.wait(), timeout_s)
        except TimeoutError:
            timed_out = True
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.closed.wait(), TAIL_S)
        chan.close()  # after a timeout this is what ends the command on the VM
        code = session.exit_code
        return SshRun(host_key=host_key, result=dpb.CommandResult(
            exit_code=-9 if code is None and timed_out else -1 if code is None else code,
            stdout=session.stdout.text(), stderr=session.stderr.text(), timed_out=timed_out,
            stdout_truncated=session.stdout.truncated, stderr_truncated=session.stderr.truncated,
            duration_s=round(time.monotonic() - started, 3),
            error=f"timed out after {timeout_s:g}s" if timed_out else
            "" if code is not None else "the connection closed before the command's exit status came"))
    finally:
        conn.close()
