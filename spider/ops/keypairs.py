"""Key pairs: imported, or generated with the private key returned once."""

from __future__ import annotations

from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from spider.connections import OpenConnection
from spider.drivers.base import KeyPairHandler
from spider.kinds import KEY_PAIR
from spider.resources import Resources


async def create(res: Resources, conn: OpenConnection, req: pb.CreateKeyPairRequest) -> pb.KeyPair:
    kp = req.key_pair
    if kp.private_key:
        raise errors.InvalidArgument.field("key_pair.private_key",
                                           "never send a private key; send public_key to import")
    if kp.public_key and not kp.public_key.startswith(("ssh-", "ecdsa-")):
        raise errors.InvalidArgument.field("key_pair.public_key", "must be an OpenSSH public key (ssh-ed25519 …)")
    if req.validate_only:
        return kp
    handler = conn.handler(KeyPairHandler)
    record, made = await res.create(conn, KEY_PAIR, kp, req.request_id, handler.create_key_pair)
    out = pb.KeyPair()
    out.CopyFrom(record)
    out.private_key = made.private_key  # returned this once, never stored
    return out
