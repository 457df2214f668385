"""Credentials, regions and connections, and opening a connection's driver.

A connection = driver + credential + region. Opening one decrypts the
credential, asks the driver to connect, and puts a Gate (rate limit,
concurrency, retries, call log) in front of every call the driver makes.
"""

from __future__ import annotations

import asyncio
import difflib
import time
from dataclasses import dataclass
from typing import TypeVar

from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from services.names import check_name
from services.paging import page_size as page_size_of
from services.proto_time import now
from services.secrets import Sealer
from services.store import Store
from spider import keyspace
from spider.calllog import CallLog
from spider.calls import CallSite, Gate, Limits
from spider.drivers import registry as drivers
from spider.drivers.base import CloudConnection, ConnectionInfo, Driver, capability_mismatches, slot_of
from spider.settings import SpiderSettings

# An open connection is re-read from the store after this long, so a change
# made through another spider replica is seen.
OPEN_TTL_S = 10.0

H = TypeVar("H")


@dataclass
class OpenConnection:
    record: pb.Connection
    driver: Driver
    cloud: CloudConnection
    gate: Gate
    opened: float

    def handler(self, kind: type[H]) -> H:
        """The connection's handler of that type, e.g. `handler(ImageHandler)`."""
        found = self.cloud.get(kind)
        if found is None:
            raise errors.FailedPrecondition(
                f"driver {self.record.driver!r} does not support {slot_of(kind).noun} (see its capabilities)")
        return found


class Connections:
    """Credentials, regions, connections; and the cache of open connections."""

    def __init__(self, store: Store, sealer: Sealer, settings: SpiderSettings, call_log: CallLog) -> None:
        self.store = store
        self.sealer = sealer
        self.settings = settings
        self.call_log = call_log
        self._open: dict[str, OpenConnection] = {}
        self._opening: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------ credentials

    async def create_credential(self, cred: pb.Credential) -> pb.Credential:
        check_name(cred.name, "credential.name")
        driver = drivers.get(cred.driver) if cred.driver else None
        if driver is None:
            raise errors.InvalidArgument.field("credential.driver", "is required")
        missing = [k for k in driver.credential_keys if not cred.values.get(k)]
        if missing:
            raise errors.InvalidArgument(
                f"credential.values: the {cred.driver} driver needs {', '.join(missing)}",
                [errors.FieldViolation(f"credential.values.{k}", "is required") for k in missing])
        public = pb.Credential(name=cred.name, driver=cred.driver, keys=sorted(cred.values), create_time=now())
        secret = pb.Credential(values=dict(cred.values)).SerializeToString()
        record = pb.CredentialRecord(credential=public,
                                     sealed_values=self.sealer.seal(secret, keyspace.credential(cred.name)))
        await self.store.create(keyspace.credential(cred.name), record)
        return public

    async def get_credential(self, name: str) -> pb.Credential:
        found = await self.store.must_get(keyspace.credential(name), pb.CredentialRecord, f"credential {name!r}")
        return found.value.credential

    async def list_credentials(self, page_size: int, token: str) -> tuple[list[pb.Credential], str]:
        page = await self.store.page(keyspace.credential(), pb.CredentialRecord, page_size_of(page_size), token)
        return [i.value.credential for i in page.items], page.next_key

    async def delete_credential(self, name: str) -> None:
        await self._refuse_if_used("credential", name)
        if not await self.store.delete(keyspace.credential(name)):
            raise errors.NotFound(f"credential {name!r} not found")

    async def _secret_values(self, name: str) -> dict[str, str]:
        found = await self.store.must_get(keyspace.credential(name), pb.CredentialRecord, f"credential {name!r}")
        plain = self.sealer.open(found.value.sealed_values, keyspace.credential(name))
        return dict(pb.Credential.FromString(plain).values)

    # ---------------------------------------------------------------- regions

    async def create_region(self, region: pb.Region) -> pb.Region:
        check_name(region.name, "region.name")
        if not region.driver:
            raise errors.InvalidArgument.field("region.driver", "is required")
        drivers.get(region.driver)
        if not region.region:
            raise errors.InvalidArgument.field("region.region", "the cloud's region name is required")
        stored = pb.Region()
        stored.CopyFrom(region)
        stored.create_time.CopyFrom(now())
        await self.store.create(keyspace.region(region.name), stored)
        return stored

    async def get_region(self, name: str) -> pb.Region:
        return (await self.store.must_get(keyspace.region(name), pb.Region, f"region {name!r}")).value

    async def list_regions(self, page_size: int, token: str) -> tuple[list[pb.Region], str]:
        page = await self.store.page(keyspace.region(), pb.Region, page_size_of(page_size), token)
        return [i.value for i in page.items], page.next_key

    async def delete_region(self, name: str) -> None:
        await self._refuse_if_used("region", name)
        if not await self.store.delete(keyspace.region(name)):
            raise errors.NotFound(f"region {name!r} not found")

    async def _refuse_if_used(self, field: str, name: str) -> None:
        for conn in await self.store.list_all(keyspace.connection(), pb.Connection):
            if getattr(conn.value, field) == name:
                raise errors.FailedPrecondition(
                    f"{field} {name!r} is used by connection {conn.value.name!r}; delete the connection first")

    # ------------------------------------------------------------ connections

    async def create_connection(self, conn: pb.Connection) -> pb.Connection:
        check_name(conn.name, "connection.name")
        for field in ("driver", "credential", "region"):
            if not getattr(conn, field):
                raise errors.InvalidArgument.field(f"connection.{field}", "is required")
        driver = drivers.get(conn.driver)
        cred = await self.get_credential(conn.credential)
        region = await self.get_region(conn.region)
        for what, other in (("credential", cred.driver), ("region", region.driver)):
            if other != conn.driver:
                used = getattr(conn, what)
                raise errors.InvalidArgument.field(
                    f"connection.{what}", f"{what} {used!r} is for driver {other!r}, not {conn.driver!r}")
        stored = pb.Connection()
        stored.CopyFrom(conn)
        stored.create_time.CopyFrom(now())
        stored.cloud_region = region.region
        # Reaching the cloud now gives a clear error at creation instead of at first use.
        opened = await self._connect(stored, driver, region)
        stored.provider = opened.cloud.provider
        await self.store.create(keyspace.connection(conn.name), stored)
        opened.record = stored
        self._open[conn.name] = opened
        return stored

    async def get_connection(self, name: str) -> pb.Connection:
        found = await self.store.get(keyspace.connection(name), pb.Connection)
        if found is None:
            raise errors.NotFound(f"connection {name!r} not found{await self._close_names(name)}")
        return found.value

    async def _close_names(self, name: str) -> str:
        """' (did you mean …?)' for a misspelled connection name, else a pointer to the list."""
        page = await self.store.page(keyspace.connection(), pb.Connection, 1000)
        close = difflib.get_close_matches(name, [c.value.name for c in page.items], n=3)
        return f" (did you mean {' or '.join(map(repr, close))}?)" if close else " (see ListConnections)"

    async def list_connections(self, page_size: int, token: str) -> tuple[list[pb.Connection], str]:
        page = await self.store.page(keyspace.connection(), pb.Connection, page_size_of(page_size), token)
        return [i.value for i in page.items], page.next_key

    async def delete_connection(self, name: str, force: bool) -> None:
        await self.get_connection(name)
        held = await self.store.count(keyspace.resources(name))
        if held and not force:
            raise errors.FailedPrecondition(
                f"connection {name!r} still has {held} resources; delete them first or pass force")
        if force:
            await self.store.delete_prefix(keyspace.resources(name))
        await self.store.delete(keyspace.connection(name))
        closed = self._open.pop(name, None)
        if closed is not None and closed.cloud.close is not None:
            await closed.cloud.close()

    async def open(self, name: str) -> OpenConnection:
        """The open connection called `name` (cached; re-read after OPEN_TTL_S)."""
        cached = self._open.get(name)
        if cached is not None and time.monotonic() - cached.opened < OPEN_TTL_S:
            return cached
        lock = self._opening.setdefault(name, asyncio.Lock())
        async with lock:
            cached = self._open.get(name)
            if cached is not None and time.monotonic() - cached.opened < OPEN_TTL_S:
                return cached
            record = await self.get_connection(name)
            if cached is not None and cached.record == record:
                cached.opened = time.monotonic()
                return cached
            opened = await self._connect(record, drivers.get(record.driver), await self.get_region(record.region))
            self._open[name] = opened
            if cached is not None and cached.cloud.close is not None:
                await cached.cloud.close()  # the replaced one's threads and sockets go with it
            return opened

    async def _connect(self, conn: pb.Connection, driver: Driver, region: pb.Region) -> OpenConnection:
        s = self.settings
        limits = Limits(rate_per_second=conn.limits.rate_per_second or s.rate_per_second,
                        burst=conn.limits.burst or s.burst,
                        max_concurrency=conn.limits.max_concurrency or s.max_concurrency,
                        max_retries=conn.limits.max_retries or s.max_retries)
        site = CallSite(conn.name, conn.driver, region.settings.get("provider", conn.driver), region.region)
        gate = Gate(site, limits, self.call_log)
        info = ConnectionInfo(connection=conn.name, driver=conn.driver, region=region.region, zone=region.zone,
                              settings=dict(region.settings), credential=await self._secret_values(conn.credential))
        cloud = await driver.connect(info, gate)
        wrong = capability_mismatches(driver.capabilities(), cloud)
        if wrong:
            # A driver bug: refusing the connection keeps it from failing later at some odd call.
            if cloud.close is not None:
                await cloud.close()
            raise errors.FailedPrecondition(f"driver {driver.name!r} does not match its declared capabilities: "
                                            f"{'; '.join(wrong)}")
        return OpenConnection(conn, driver, cloud, gate, time.monotonic())
