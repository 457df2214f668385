"""The cloud-init NoCloud seed of a VM: its key and user data on a small ISO.

The public key goes in meta-data (`public-keys`, which NoCloud installs for the
default user), so the user's own user-data is passed on untouched, whatever its kind
(#cloud-config, a script, a MIME archive).
"""

from __future__ import annotations

import yaml

from spider.drivers.libvirt.iso9660 import make_iso

LABEL = "cidata"


def meta_data(instance_id: str, hostname: str, public_key: str) -> bytes:
    data: dict[str, object] = {"instance-id": instance_id, "local-hostname": hostname}
    if public_key:
        data["public-keys"] = [public_key]
    return yaml.safe_dump(data, sort_keys=True).encode()


def seed_iso(instance_id: str, hostname: str, public_key: str, user_data: str) -> bytes:
    return make_iso(LABEL, {"meta-data": meta_data(instance_id, hostname, public_key),
                            "user-data": user_data.encode()})
