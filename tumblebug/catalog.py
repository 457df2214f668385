"""The catalog: specs and images of every spider connection, refreshed in the background.

IDs are `{connection}+{name}`, so one ID says where a VM would go and what it would be. A query
that names a connection the catalog has not seen yet (made since the last refresh) reads that
connection's part at once rather than answering "nothing" until the next refresh.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import Iterable
from typing import Any, TypeVar

from google.protobuf.message import Message

from cbapi.spider.v1 import spider_pb2 as spb
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.paging import page_size
from tumblebug.spider_client import Spider

log = logging.getLogger("tumblebug.catalog")

T = TypeVar("T")


def _token(kind: str, query: Message, offset: int) -> str:
    """A page token: the list it belongs to, a fingerprint of the query's filters, the offset."""
    return base64.urlsafe_b64encode(f"{kind}:{_filters(query)}:{offset}".encode()).decode().rstrip("=")


def _filters(query: Message) -> str:
    # AIP-158: the next page must be asked with the same filters; page size may change.
    rest = type(query)()
    rest.CopyFrom(query)
    rest.ClearField("page_size")
    rest.ClearField("page_token")
    return hashlib.blake2s(rest.SerializeToString(deterministic=True), digest_size=6).hexdigest()


def _offset(kind: str, query: Message, token: str) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        token_kind, filters, offset = text.split(":")
        start = int(offset)
    except ValueError:
        raise errors.InvalidArgument.field("page_token", "is not a token this server issued") from None
    if token_kind != kind or filters != _filters(query) or start < 0:
        raise errors.InvalidArgument.field(
            "page_token", f"belongs to another list or other filters; pass the next_page_token of this "
                          f"{kind} list, asked with the same filters")
    return start


def _page(kind: str, items: list[T], query: Any) -> tuple[list[T], str]:
    size = page_size(query.page_size)
    start = _offset(kind, query, query.page_token)
    end = start + size
    return items[start:end], (_token(kind, query, end) if end < len(items) else "")


class Catalog:
    """All connections' specs and images, at most `refresh_s` old."""

    def __init__(self, spider: Spider, refresh_s: float) -> None:
        self.spider = spider
        self.refresh_s = refresh_s
        self._specs: list[pb.CatalogSpec] = []
        self._images: list[pb.CatalogImage] = []
        self._loaded = 0.0
        self._known: set[str] = set()
        self._lock = asyncio.Lock()
        # Bumped whenever the spec list changes, so placement knows to rebuild its candidate table.
        self.generation = 0

    async def _fresh(self) -> None:
        if time.monotonic() - self._loaded < self.refresh_s:
            return
        async with self._lock:
            if time.monotonic() - self._loaded < self.refresh_s:
                return
            await self.refresh()

    async def refresh(self) -> None:
        """Read every connection's catalog again (connections that fail are skipped and logged)."""
        call, stub = self.spider.call, self.spider.stub
        conns: list[spb.Connection] = []
        token = ""
        while True:
            page = await call(stub.ListConnections, spb.ListConnectionsRequest(page_size=1000, page_token=token))
            conns.extend(page.connections)
            token = page.next_page_token
            if not token:
                break
        results = await asyncio.gather(*(self._one(c) for c in conns), return_exceptions=True)
        specs: list[pb.CatalogSpec] = []
        images: list[pb.CatalogImage] = []
        for conn, result in zip(conns, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("catalog of a connection unavailable", extra={"connection": conn.name,
                                                                          "error": str(result)})
                continue
            specs.extend(result[0])
            images.extend(result[1])
        self._specs, self._images, self._loaded = specs, images, time.monotonic()
        self._known = {c.name for c in conns}
        self.generation += 1

    async def _fresh_for(self, connection: str) -> None:
        """The catalog, with `connection`'s part even if it was made since the last refresh."""
        await self._fresh()
        if not connection or connection in self._known:
            return
        async with self._lock:
            if connection in self._known:
                return
            try:
                conn = await self.spider.call(self.spider.stub.GetConnection,
                                              spb.GetConnectionRequest(name=connection))
            except errors.NotFound:
                return  # no such connection: the query finds nothing, as it should
            specs, images = await self._one(conn)
            self._specs, self._images = self._specs + specs, self._images + images
            self._known = self._known | {connection}
            self.generation += 1

    async def all_specs(self) -> list[pb.CatalogSpec]:
        """Every spec of every connection, at most `refresh_s` old (placement's candidates)."""
        await self._fresh()
        return self._specs

    async def include(self, connections: Iterable[str]) -> None:
        """Read the named connections' part now if the last refresh did not see them."""
        for name in connections:
            await self._fresh_for(name)

    async def all_images(self) -> list[pb.CatalogImage]:
        await self._fresh()
        return self._images

    async def _one(self, conn: spb.Connection) -> tuple[list[pb.CatalogSpec], list[pb.CatalogImage]]:
        call, stub = self.spider.call, self.spider.stub
        specs = (await call(stub.ListSpecs, spb.ListSpecsRequest(connection=conn.name, page_size=1000))).specs
        images = (await call(stub.ListImages, spb.ListImagesRequest(connection=conn.name, page_size=1000))).images
        zones = (await call(stub.ListRegionZones, spb.ListRegionZonesRequest(connection=conn.name))).region_zones
        where = next((z.location for z in zones if z.region == conn.cloud_region), None)
        return ([pb.CatalogSpec(id=f"{conn.name}+{s.name}", connection=conn.name, provider=conn.provider,
                                region=conn.cloud_region, name=s.name, vcpu=s.vcpu, memory_gib=s.memory_gib,
                                price_per_hour=s.price_per_hour, architecture=s.architecture, gpu_count=s.gpu_count,
                                location=where) for s in specs],
                [pb.CatalogImage(id=f"{conn.name}+{i.name}", connection=conn.name, name=i.name, os=i.os,
                                 architecture=i.architecture) for i in images])

    async def specs(self, q: pb.ListCatalogSpecsRequest) -> tuple[list[pb.CatalogSpec], str]:
        await self._fresh_for(q.connection)
        chosen = [s for s in self._specs
                  if (not q.vcpu_min or s.vcpu >= q.vcpu_min) and (not q.vcpu_max or s.vcpu <= q.vcpu_max)
                  and (not q.memory_gib_min or s.memory_gib >= q.memory_gib_min)
                  and (not q.memory_gib_max or s.memory_gib <= q.memory_gib_max)
                  and (not q.price_max or 0 < s.price_per_hour <= q.price_max)
                  and (not q.provider or s.provider == q.provider) and (not q.region or s.region == q.region)
                  and (not q.architecture or s.architecture == q.architecture)
                  and (not q.connection or s.connection == q.connection)]
        return _page("catalog spec", chosen, q)

    async def images(self, q: pb.ListCatalogImagesRequest) -> tuple[list[pb.CatalogImage], str]:
        await self._fresh_for(q.connection)
        chosen = [i for i in self._images
                  if (not q.connection or i.connection == q.connection)
                  and (not q.architecture or i.architecture == q.architecture)
                  and (not q.os or q.os.lower() in i.os.lower())]
        return _page("catalog image", chosen, q)

    async def refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except errors.DomainError as err:
                log.warning("catalog refresh failed", extra={"error": err.message})
            await asyncio.sleep(self.refresh_s)
