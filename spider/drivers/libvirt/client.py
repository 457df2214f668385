"""One libvirt connection, used only from its own bounded thread pool.

libvirt-python blocks, so every call runs in the connection's ThreadPoolExecutor
(never on the event loop) and passes spider's gate (rate limit, concurrency,
retries, call log) under libvirt's C API name. A lookup that only resolves a
handle runs inside the call that needs it and is logged with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import libvirt

from spider.drivers.base import Caller
from spider.drivers.libvirt.errors import classify, is_transport

T = TypeVar("T")

# libvirt prints every error to stderr by default; ours are raised and logged instead.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def _open(uri: str, username: str, password: str) -> libvirt.virConnect:
    """Open `uri`, answering libvirt's credential questions (SASL, libssh) from the credential."""

    def answer(creds: list[list[Any]], _data: object) -> int:
        for cred in creds:
            if cred[0] == libvirt.VIR_CRED_AUTHNAME and username:
                cred[4] = username
            elif cred[0] == libvirt.VIR_CRED_PASSPHRASE and password:
                cred[4] = password
            else:
                return -1  # a question we cannot answer: libvirt reports the auth failure
        return 0

    auth = [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE], answer, None]
    return libvirt.openAuth(uri, auth, 0)


class LibvirtClient:
    """A lazily (re)opened virConnect, its thread pool, and the gate every call passes."""

    def __init__(self, uri: str, caller: Caller, threads: int, username: str = "", password: str = "") -> None:
        self.uri = uri
        self.caller = caller
        self._username = username
        self._password = password
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="libvirt")
        self._conn: libvirt.virConnect | None = None
        self._opening = threading.Lock()  # worker threads race to open the first connection

    def _connection(self) -> libvirt.virConnect:
        with self._opening:
            if self._conn is None:
                self._conn = _open(self.uri, self._username, self._password)
            return self._conn

    def _forget(self, conn: libvirt.virConnect) -> None:
        with self._opening:
            if self._conn is conn:
                self._conn = None
        with contextlib.suppress(libvirt.libvirtError):  # broken already; the next call opens a fresh one
            conn.close()

    def _run(self, fn: Callable[[libvirt.virConnect], T]) -> T:
        try:
            conn = self._connection()
        except libvirt.libvirtError as err:
            raise classify(err) from err
        try:
            return fn(conn)
        except libvirt.libvirtError as err:
            if is_transport(err):
                self._forget(conn)
            raise classify(err) from err

    async def call(self, api: str, fn: Callable[[libvirt.virConnect], T], resource_type: str = "",
                   resource_name: str = "") -> T:
        """Run `fn(conn)` in the pool, through the gate, logged as `api`."""

        async def once() -> T:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, fn)

        return await self.caller(api, once, resource_type, resource_name)

    async def open(self) -> None:
        """Connect now, so a wrong URI or credential fails when the connection is made."""
        await self.call("virConnectOpenAuth", lambda conn: None, "connection", self.uri)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._pool, conn.close)
        self._pool.shutdown(wait=False)
