"""Namespaces: the scope of every tumblebug resource and MCIS."""

from __future__ import annotations

from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.names import check_name
from services.paging import page_size
from services.proto_time import now
from services.store import Store
from tumblebug import keyspace


class Namespaces:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(self, ns: pb.Namespace) -> pb.Namespace:
        check_name(ns.name, "namespace.name")
        stored = pb.Namespace(name=ns.name, description=ns.description, create_time=now())
        await self.store.create(keyspace.namespace(ns.name), stored)
        return stored

    async def get(self, name: str) -> pb.Namespace:
        return (await self.store.must_get(keyspace.namespace(name), pb.Namespace, f"namespace {name!r}")).value

    async def list(self, size: int, token: str) -> tuple[list[pb.Namespace], str]:
        page = await self.store.page(keyspace.namespace(), pb.Namespace, page_size(size), token)
        return [i.value for i in page.items], page.next_key

    async def delete(self, name: str, force: bool) -> None:
        """Refused while the namespace holds anything, unless forced (then its records go too;
        what they stand for in the clouds is not touched: delete MCIS first for that)."""
        await self.get(name)
        held = await self.store.count(keyspace.NS_ROOT + name + "/")
        if held and not force:
            raise errors.FailedPrecondition(
                f"namespace {name!r} still holds {held} resources or MCIS records; delete them first or pass force")
        await self.store.delete_prefix(keyspace.NS_ROOT + name + "/")
        await self.store.delete(keyspace.quota(name))  # a namespace made again under this name starts afresh
        await self.store.delete(keyspace.namespace(name))
