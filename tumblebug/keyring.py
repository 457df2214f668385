"""The private keys of SSH key resources, which tumblebug keeps to run commands over SSH.

A key tumblebug generates (ed25519, OpenSSH format) or is given is sealed with
AES-256-GCM (`services.secrets`, the server's secret key, the etcd key of the
secret as associated data) and stored beside its resource record, never inside
it, so no read of a resource can carry it. It leaves tumblebug once, in the
create that generated it, and is otherwise opened only to log in to a VM.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass, field

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from services import errors
from services.secrets import Sealer
from services.store import Store
from tumblebug import keyspace

COLLECTION = "ssh-keys"


@dataclass(frozen=True)
class KeyPair:
    """An OpenSSH public key line and its private key (never shown in a repr)."""

    public_key: str
    private_key: str = field(repr=False)


def generate() -> KeyPair:
    """A new ed25519 pair (every driver imports ed25519 keys)."""
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
    return KeyPair(public, pem)


def public_of(private_key: str, field_path: str) -> str:
    """The OpenSSH public key line of an unencrypted private key (OpenSSH or PEM format)."""
    data = private_key.strip().encode() + b"\n"
    loaders = (serialization.load_ssh_private_key, serialization.load_pem_private_key)
    for load in loaders:
        try:
            key = load(data, None)
        except TypeError as err:  # a passphrase is needed
            raise errors.InvalidArgument.field(field_path, "must not be encrypted with a passphrase") from err
        except (ValueError, UnsupportedAlgorithm, binascii.Error):
            continue
        try:
            return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                 serialization.PublicFormat.OpenSSH).decode()
        except ValueError as err:  # a key type SSH has no format for
            raise errors.InvalidArgument.field(field_path, f"not a key SSH can use: {err}") from err
    raise errors.InvalidArgument.field(field_path, "not a private key in OpenSSH or PEM format")


def same_key(a: str, b: str) -> bool:
    """Whether two OpenSSH public key lines hold the same key (comments aside)."""
    return a.split()[:2] == b.split()[:2]


class Keyring:
    """Sealed private keys of one tumblebug, by namespace and SSH key name."""

    def __init__(self, store: Store, sealer: Sealer) -> None:
        self.store = store
        self.sealer = sealer

    def sealed(self, ns: str, name: str, private_key: str) -> tuple[str, pb.SealedKey]:
        """The record to write (with the resource record, in one transaction)."""
        key = keyspace.secret(ns, COLLECTION, name)
        return key, pb.SealedKey(sealed=self.sealer.seal(private_key.encode(), key))

    async def private_key(self, ns: str, name: str) -> str | None:
        """The private key of SSH key `name`, or None when tumblebug holds none.

        FailedPrecondition when it cannot be opened (the server's secret key changed)."""
        key = keyspace.secret(ns, COLLECTION, name)
        found = await self.store.get(key, pb.SealedKey)
        if found is None:
            return None
        return self.sealer.open(found.value.sealed, key).decode()

    async def forget(self, ns: str, name: str) -> None:
        await self.store.delete(keyspace.secret(ns, COLLECTION, name))
