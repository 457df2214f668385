"""The account JWT that revokes users, and which revoked credentials it lists."""

from __future__ import annotations

import time

from google.protobuf.timestamp_pb2 import Timestamp

from cbapi.dragonfly.v1 import dragonfly_pb2 as pb
from dragonfly.account import EXPIRED_GRACE_S, revocations
from services import natsauth


def at(seconds: float) -> Timestamp:
    return Timestamp(seconds=int(seconds))


def test_the_account_jwt_keeps_its_claims_and_adds_the_revocations() -> None:
    auth = natsauth.Authority.create()
    admin = natsauth.AccountAdmin.load(auth.admin().dump())
    base = natsauth.decode_claims(auth.jwts["account"])
    token = admin.with_revocations({"UB": 20, "UA": 10})
    claims = natsauth.decode_claims(token)
    assert claims["sub"] == auth.account.public_key and claims["name"] == "CB"
    assert claims["iss"] == auth.operator_signing.public_key
    assert claims["iat"] > base["iat"]  # a restarted server keeps it over the preload
    assert claims["nats"]["revocations"] == {"UA": 10, "UB": 20}
    assert claims["nats"]["signing_keys"] == [auth.signing.public_key]
    assert claims["nats"]["limits"] == base["nats"]["limits"]
    assert "revocations" not in natsauth.decode_claims(admin.with_revocations({}))["nats"]
    operator = natsauth.decode_claims(auth.jwts["operator"])
    assert operator["nats"]["signing_keys"] == [auth.operator_signing.public_key]


def test_only_revoked_credentials_that_have_not_expired_are_listed() -> None:
    now = time.time()
    live = pb.IssuedCredential(user="U1", issued_time=at(now - 10), expire_time=at(now + 100))
    revoked = pb.IssuedCredential(user="U2", issued_time=at(now - 10), expire_time=at(now + 100),
                                  revoked_time=at(now - 5))
    # Stamped by a replica whose clock runs behind the issuer's: still covers the JWT.
    skewed = pb.IssuedCredential(user="U3", issued_time=at(now), expire_time=at(now + 100), revoked_time=at(now - 60))
    expired = pb.IssuedCredential(user="U4", issued_time=at(now - 9000), expire_time=at(now - EXPIRED_GRACE_S - 1),
                                  revoked_time=at(now - 8000))
    assert revocations([live, revoked, skewed, expired], now) == {"U2": int(now - 5), "U3": int(now)}
