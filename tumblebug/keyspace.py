"""Where tumblebug keeps its records in etcd (DESIGN §3), and the names it gives spider."""

from __future__ import annotations

import hashlib

ROOT = "/cb/tumblebug"
NS_ROOT = f"{ROOT}/ns/"


def namespace(ns: str = "") -> str:
    return f"{ROOT}/namespaces/{ns}"


def resources(ns: str, collection: str = "") -> str:
    return f"{NS_ROOT}{ns}/res/{collection}/" if collection else f"{NS_ROOT}{ns}/res/"


def resource(ns: str, collection: str, name: str) -> str:
    return f"{NS_ROOT}{ns}/res/{collection}/{name}"


def secret(ns: str, collection: str, name: str) -> str:
    """Where the sealed secret of a namespace resource is kept (beside, never inside, its record)."""
    return f"{NS_ROOT}{ns}/secrets/{collection}/{name}"


def mcis_prefix(ns: str) -> str:
    return f"{NS_ROOT}{ns}/mcis/"


def mcis(ns: str, name: str) -> str:
    return f"{NS_ROOT}{ns}/mcis/{name}"


def vms(ns: str, mcis_name: str) -> str:
    return f"{NS_ROOT}{ns}/mcis/{mcis_name}/vm/"


def vm(ns: str, mcis_name: str, name: str) -> str:
    return f"{NS_ROOT}{ns}/mcis/{mcis_name}/vm/{name}"


# Agent credentials still to be revoked: `{ns}/{mcis}/{vm}/{request_id}` (outside NS_ROOT, which
# the reconciler's informer reads as MCIS and VM records).
REVOCATIONS = f"{ROOT}/agent-revocations/"


def revocation(ns: str, mcis_name: str, vm_name: str, request_id: str) -> str:
    return f"{REVOCATIONS}{ns}/{mcis_name}/{vm_name}/{request_id}"


def parse(key: str) -> tuple[str, str, str] | None:
    """(namespace, mcis, vm) of an MCIS or VM key (vm = "" for the MCIS itself); None for others."""
    if not key.startswith(NS_ROOT):
        return None
    parts = key[len(NS_ROOT):].split("/")
    if len(parts) == 3 and parts[1] == "mcis":
        return parts[0], parts[2], ""
    if len(parts) == 5 and parts[1] == "mcis" and parts[3] == "vm":
        return parts[0], parts[2], parts[4]
    return None


def spider_name(*parts: str) -> str:
    """A spider resource name for a tumblebug object: readable when it fits, else shortened by hash."""
    full = "-".join(parts)
    if len(full) <= 63:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:10]
    return f"{full[:52].rstrip('-')}-{digest}"


def quota(ns: str) -> str:
    """A namespace's quota record: its own limits and the serial that admits growth one at a time
    (outside NS_ROOT, which the reconciler's informer reads as MCIS and VM records)."""
    return f"{ROOT}/quotas/{ns}"
