"""The HAProxy process of one endpoint: started by us (master-worker), or adopted after a restart
of ladybug from its PID file; stopped by its PID either way."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

from ladybug.endpoint.config import Files
from ladybug.endpoint.runtime import RuntimeApi, RuntimeApiError
from services.processes import Proc


class HaproxyProcess:
    """An HAProxy master; its worker serves traffic and is replaced by a (seamless) reload."""

    def __init__(self, files: Files, pid: int, proc: Proc | None = None) -> None:
        self.files = files
        self.pid = pid
        self.proc = proc  # None when adopted: not our child, so poll and signal by PID only
        self.api = RuntimeApi(files.admin_socket)

    @classmethod
    async def start(cls, files: Files, haproxy: str, timeout: float = 10.0) -> HaproxyProcess:
        binary = shutil.which(haproxy)
        if binary is None:
            raise FileNotFoundError(f"{haproxy} is not installed; run `make setup` (Debian package haproxy)")
        files.admin_socket.unlink(missing_ok=True)
        # -W: master-worker, so a reload keeps the master's PID and passes the listeners on.
        # -C: the endpoint's directory, where the config's relative admin socket is made (a
        # reload re-executes the master with the same arguments, so it stays there).
        proc = Proc("haproxy", [binary, "-W", "-C", str(files.dir), "-f", str(files.config), "-p", str(files.pid)],
                    files.log).start()
        hp = cls(files, proc.pid, proc)
        await hp._wait_serving(timeout, previous_worker=None)
        return hp

    @classmethod
    async def adopt(cls, files: Files) -> HaproxyProcess | None:
        """The HAProxy left running on this config by an earlier ladybug, if it still answers."""
        pid = _running_pid(files)
        if pid is None:
            return None
        hp = cls(files, pid)
        try:
            await hp.api.worker_pid()
        except RuntimeApiError:
            return None
        return hp

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.alive()
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    async def _wait_serving(self, timeout: float, previous_worker: int | None) -> int:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"haproxy exited:\n{self.tail()}")
            try:
                worker = await self.api.worker_pid()
                if worker != previous_worker:
                    return worker
            except RuntimeApiError as e:
                last = str(e)
            await asyncio.sleep(0.02)
        raise TimeoutError(f"haproxy did not serve within {timeout:.0f}s ({last}):\n{self.tail()}")

    async def reload(self, timeout: float = 10.0) -> int:
        """Seamless reload: the master re-reads the config, a new worker takes the listening
        sockets over, the old one finishes its connections. Returns the new worker's PID."""
        before = await self.api.worker_pid()
        # Servers keep their addresses and states across the reload.
        self.files.server_state.write_text(await self.api.call("show servers state"))
        os.kill(self.pid, signal.SIGUSR2)
        return await self._wait_serving(timeout, previous_worker=before)

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the master (it stops its workers), SIGKILL after `timeout`."""
        if self.proc is not None:
            await asyncio.to_thread(self.proc.stop, timeout)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not self.alive():
                    break
                await asyncio.sleep(0.05)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
        for path in (self.files.pid, self.files.admin_socket, self.files.server_state):
            path.unlink(missing_ok=True)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.files.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _running_pid(files: Files) -> int | None:
    """The master PID in the PID file, if that process runs HAProxy on this very config."""
    try:
        pid = int(files.pid.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    # Otherwise the PID was reused by another program.
    return pid if str(files.config).encode() in cmdline else None
