"""Unregister: forget one resource in spider, leave it in the cloud (the reverse of register).

A delete is refused by the cloud while something uses the resource; an unregister asks
no cloud, so spider refuses it itself while another record names the resource (a VM's
VPC, security groups or key pair, an attached disk's VM): that record would point at a
name spider no longer knows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services import errors
from spider.kinds import DISK, KEY_PAIR, SECURITY_GROUP, VM, VPC, Kind
from spider.resources import Resources

# collection → (kind whose records may name it, the names a record of that kind uses)
USERS: dict[str, tuple[tuple[Kind[Any], Callable[[Any], list[str]]], ...]] = {
    VPC.collection: ((VM, lambda r: [r.vpc]), (SECURITY_GROUP, lambda r: [r.vpc])),
    SECURITY_GROUP.collection: ((VM, lambda r: list(r.security_groups)),),
    KEY_PAIR.collection: ((VM, lambda r: [r.key_pair]),),
    VM.collection: ((DISK, lambda r: [r.attached_vm]),),
}


async def unregister(res: Resources, conn: str, kind: Kind[Any], name: str) -> Any:
    await res.get(conn, kind, name)  # NOT_FOUND first, naming the resource
    for user_kind, names in USERS.get(kind.collection, ()):
        for rec in await res.records(conn, user_kind):
            if name in names(rec):
                raise errors.FailedPrecondition(
                    f"{kind.noun} {name!r} is used by {user_kind.noun} {rec.iid.name!r}; "
                    f"unregister or delete that first")
    return await res.unregister(conn, kind, name)
