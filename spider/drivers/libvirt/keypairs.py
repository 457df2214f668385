"""Key pairs, kept on the host in the metadata of one inert domain: the keyring.

libvirt has no key-pair object and its test driver has no secrets or volume uploads,
but every hypervisor driver keeps domain metadata, and virDomainSetMetadata writes one
namespaced element atomically. So each key pair is one element (its own namespace URI)
in the metadata of an inactive domain named by the region setting `keyring` (default
`cb-spider-keyring`) that is never started. Every spider replica and connection to the
host sees the same key pairs; a VM gets its key through its cloud-init seed. The cloud
ID of a key pair is its cloud-side name.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

import libvirt

from cbapi.common.v1 import common_pb2 as common
from cbapi.spider.v1 import spider_pb2 as pb
from services import errors
from spider.drivers import base
from spider.drivers.libvirt import domains as D
from spider.drivers.libvirt import sshkeys
from spider.drivers.libvirt import xmltools as X
from spider.drivers.libvirt.client import LibvirtClient
from spider.drivers.libvirt.errors import not_found
from spider.drivers.libvirt.host import HostFacts
from spider.drivers.libvirt.settings import LibvirtSettings

KEY_NS = f"{X.NS}:keypair:"
_CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG
_ELEMENT = libvirt.VIR_DOMAIN_METADATA_ELEMENT


@dataclass(frozen=True)
class StoredKey:
    name: str
    public_key: str
    fingerprint: str
    token: str

    def message(self, private_key: str = "") -> pb.KeyPair:
        return pb.KeyPair(iid=common.IID(csp_name=self.name, csp_id=self.name), fingerprint=self.fingerprint,
                          public_key=self.public_key, private_key=private_key)


def _element(key: StoredKey) -> str:
    elem = ET.Element("keypair", name=key.name, fingerprint=key.fingerprint, token=key.token)
    elem.text = key.public_key
    return X.tostring(elem)


def _stored(elem: ET.Element) -> StoredKey:
    return StoredKey(elem.get("name", ""), (elem.text or "").strip(), elem.get("fingerprint", ""), elem.get("token", ""))


def parse_keyring(text: str) -> list[StoredKey]:
    meta = X.parse(text).find("metadata")
    if meta is None:
        return []
    return [_stored(e) for e in meta if e.tag.startswith(f"{{{KEY_NS}")]


class Keyring:
    """The keyring domain of one host; every method runs in a libvirt worker thread."""

    def __init__(self, settings: LibvirtSettings, host: HostFacts) -> None:
        self.name = settings.keyring
        self.host = host

    def find(self, conn: libvirt.virConnect) -> libvirt.virDomain | None:
        try:
            dom = conn.lookupByName(self.name)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise
        if not D.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).keyring:
            raise base.CloudError(errors.FailedPrecondition, f"domain {self.name!r} exists but is not a spider keyring; "
                                  "set the region setting keyring to another name")
        return dom

    def ensure(self, conn: libvirt.virConnect) -> libvirt.virDomain:
        found = self.find(conn)
        if found is not None:
            return found
        try:
            return conn.defineXML(D.keyring_xml(self.name, self.host.domain_type(self.host.arch), self.host.arch))
        except libvirt.libvirtError:
            found = self.find(conn)  # another replica defined it at the same moment
            if found is None:
                raise
            return found

    def get(self, conn: libvirt.virConnect, name: str) -> StoredKey | None:
        dom = self.find(conn)
        if dom is None:
            return None
        try:
            text = dom.metadata(_ELEMENT, KEY_NS + name, _CONFIG)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_METADATA:
                return None
            raise
        return _stored(X.parse(text))

    def must_get(self, conn: libvirt.virConnect, name: str) -> StoredKey:
        found = self.get(conn, name)
        if found is None:
            raise not_found("VIR_ERR_NO_DOMAIN_METADATA", f"key pair {name!r} is not in keyring {self.name!r}")
        return found


class LibvirtKeyPairs(base.KeyPairHandler):
    """Generated (ed25519) or imported key pairs, kept in the host's keyring."""

    def __init__(self, client: LibvirtClient, keyring: Keyring) -> None:
        self.client, self.keyring = client, keyring

    async def create_key_pair(self, kp: pb.KeyPair, token: str) -> pb.KeyPair:
        private = ""
        if kp.public_key:
            public = sshkeys.check(kp.public_key)
        else:
            public, private = sshkeys.generate()
        key = StoredKey(kp.iid.csp_name, public, sshkeys.fingerprint(public), token)

        def store(conn: libvirt.virConnect) -> StoredKey:
            dom = self.keyring.ensure(conn)
            existing = self.keyring.get(conn, key.name)
            if existing is not None:
                if existing.token != token:
                    raise base.CloudError(errors.AlreadyExists, f"key pair {key.name!r} already exists")
                return existing  # the same request again: its first answer stands
            dom.setMetadata(_ELEMENT, _element(key), "kp", KEY_NS + key.name, _CONFIG)
            return key

        stored = await self.client.call("virDomainSetMetadata", store, "keypair", key.name)
        return stored.message(private if stored is key else "")

    async def get_key_pair(self, csp_id: str) -> pb.KeyPair:
        key = await self.client.call("virDomainGetMetadata", lambda c: self.keyring.must_get(c, csp_id), "keypair", csp_id)
        return key.message()

    async def list_key_pairs(self) -> list[pb.KeyPair]:
        def read(conn: libvirt.virConnect) -> list[StoredKey]:
            dom = self.keyring.find(conn)
            return [] if dom is None else parse_keyring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))

        return [k.message() for k in await self.client.call("virDomainGetXMLDesc", read, "keypair", self.keyring.name)]

    async def delete_key_pair(self, csp_id: str) -> None:
        def remove(conn: libvirt.virConnect) -> None:
            self.keyring.must_get(conn, csp_id)
            dom = self.keyring.ensure(conn)
            dom.setMetadata(_ELEMENT, None, None, KEY_NS + csp_id, _CONFIG)

        await self.client.call("virDomainSetMetadata", remove, "keypair", csp_id)

    async def public_key(self, csp_id: str) -> str:
        key = await self.client.call("virDomainGetMetadata", lambda c: self.keyring.must_get(c, csp_id), "keypair", csp_id)
        return key.public_key
