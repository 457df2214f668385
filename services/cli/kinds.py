"""The kinds cbctl knows: each one's REST collection, scope, name field and table columns.

A kind is data, not code: a service that adds a resource adds a row here (tumblebug's
namespace-scoped kinds use `{namespace}` in their collection, filled from `--namespace`).

Spider and tumblebug both have a `securitygroup`, an `image` and a `spec`. The scope says which
one is meant: `--namespace/-n` (or `namespace:` in a file) means tumblebug's, `--connection/-c`
alone (or `connection:` alone) spider's, and with neither the namespace-scoped kind wins, since
a namespace always has a default. `securitygroup.spider` / `sg.tumblebug` say it outright.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.cli import apikeys, apps, mcis
from services.cli.client import ApiError

SERVICES = ("spider", "tumblebug")


@dataclass(frozen=True)
class Child:
    """A collection under each resource (an MCIS's VMs), listed by `describe`."""

    path: str
    list_field: str
    title: str
    columns: tuple[tuple[str, str], ...]
    # Whether its List takes page tokens (an app's instances come in one answer).
    paged: bool = True


@dataclass(frozen=True)
class Filter:
    """A `--where` filter of a list: the query parameters for `>=`, `<=` and `=` ("": not offered)."""

    at_least: str = ""
    at_most: str = ""
    equals: str = ""


@dataclass(frozen=True)
class RestKind:
    """One kind of resource as the REST API shows it."""

    name: str
    plural: str
    # The collection path; `{connection}` / `{namespace}` are filled from the scope flags.
    collection: str
    # The JSON key of the list in a List response.
    list_field: str
    # Dotted path of the resource's name inside the resource.
    name_path: str = "name"
    columns: tuple[tuple[str, str], ...] = ()
    aliases: tuple[str, ...] = ()
    creatable: bool = True
    # Whether List takes page_size/page_token.
    paged: bool = True
    # Only listed by the API (no Get): one is found in the list.
    listed_only: bool = False
    deletable: bool = True
    # Custom methods (`POST …/{name}:verb`) and the status each one settles in.
    verbs: dict[str, str] = field(default_factory=dict)
    # The status a create settles in, followed by the `:watch` stream (empty: nothing to wait for).
    ready_status: str = ""
    # Statuses that end a wait in failure.
    failed_statuses: tuple[str, ...] = ("FAILED",)
    # Query parameters of the `:watch` stream.
    watch_params: dict[str, str] = field(default_factory=dict)
    # The connection travels in the body (tumblebug's resources), not in the path.
    body_connection: bool = False
    # Turns a document's (name, spec) into (path suffix, request body); None: POST the spec as is.
    create_request: Callable[[str, dict[str, Any]], tuple[str, dict[str, Any]]] | None = None
    # With --wait, retry a delete refused with FAILED_PRECONDITION (a dependency still letting go).
    delete_retry: bool = True
    filters: dict[str, Filter] = field(default_factory=dict)
    children: tuple[Child, ...] = ()
    # Followed by per-VM-group progress (an MCIS) rather than by its status alone.
    grouped: bool = False
    # Spider's: `cbctl register` adopts a cloud resource as one, `cbctl unregister` forgets one.
    registrable: bool = False

    @property
    def service(self) -> str:
        return self.collection.split("/")[1]

    @property
    def scopes(self) -> list[str]:
        return [s for s in ("connection", "namespace") if "{" + s + "}" in self.collection]

    def collection_path(self, scope: dict[str, str]) -> str:
        path = self.collection
        for key in self.scopes:
            value = scope.get(key, "")
            if not value:
                flag = "--connection/-c" if key == "connection" else "--namespace/-n"
                raise ApiError(f"{self.plural} belong to a {key}: give {flag}, or set {key} in the config")
            path = path.replace("{" + key + "}", value)
        return path

    def item_path(self, scope: dict[str, str], name: str) -> str:
        return f"{self.collection_path(scope)}/{name}"


_IID = ("NAME", "iid.name")
_CSP = ("CSP-ID", "iid.cspId")
_CONN = "/spider/v1/connections/{connection}"
_NS = "/tumblebug/v1/namespaces/{namespace}"
_RES = (("NAME", "name"), ("CONNECTION", "connection"), ("STATUS", "status"))
_SPEC_FILTERS = {
    "vcpu": Filter("vcpuMin", "vcpuMax"), "memory": Filter("memoryGibMin", "memoryGibMax"),
    "price": Filter(at_most="priceMax"), "provider": Filter(equals="provider"), "region": Filter(equals="region"),
    "arch": Filter(equals="architecture"), "connection": Filter(equals="connection"),
}
_IMAGE_FILTERS = {"connection": Filter(equals="connection"), "arch": Filter(equals="architecture"),
                  "os": Filter(equals="os")}

KINDS: tuple[RestKind, ...] = (
    RestKind("driver", "drivers", "/spider/v1/drivers", "drivers", aliases=("drv",), creatable=False, deletable=False,
         listed_only=True,
         paged=False, columns=(("NAME", "name"), ("AVAILABLE", "available"), ("DESCRIPTION", "description"))),
    RestKind("credential", "credentials", "/spider/v1/credentials", "credentials", aliases=("cred", "creds"),
         columns=(("NAME", "name"), ("DRIVER", "driver"), ("KEYS", "keys"), ("CREATED", "createTime"))),
    RestKind("region", "regions", "/spider/v1/regions", "regions",
         columns=(("NAME", "name"), ("DRIVER", "driver"), ("REGION", "region"), ("ZONE", "zone"))),
    RestKind("connection", "connections", "/spider/v1/connections", "connections", aliases=("conn", "conns"),
         columns=(("NAME", "name"), ("DRIVER", "driver"), ("PROVIDER", "provider"), ("REGION", "cloudRegion"),
                  ("CREDENTIAL", "credential"))),
    RestKind("image", "images", f"{_CONN}/images", "images", creatable=False, deletable=False,
         columns=(("NAME", "name"), ("DISPLAY-NAME", "displayName"), ("OS", "os"), ("ARCH", "architecture"))),
    RestKind("spec", "specs", f"{_CONN}/specs", "specs", creatable=False, deletable=False,
         columns=(("NAME", "name"), ("VCPU", "vcpu"), ("MEMORY-GIB", "memoryGib"), ("PRICE/H", "pricePerHour"))),
    RestKind("vpc", "vpcs", f"{_CONN}/vpcs", "vpcs", name_path="iid.name", registrable=True,
         columns=(_IID, ("CIDR", "ipv4Cidr"), ("SUBNETS", "subnets[].iid.name"), _CSP)),
    RestKind("securitygroup", "securitygroups", f"{_CONN}/security-groups", "securityGroups", name_path="iid.name",
         registrable=True,
         aliases=("sg", "sgs", "security-group", "security-groups"),
         columns=(_IID, ("VPC", "vpc"), ("RULES", "rules"), _CSP)),
    RestKind("keypair", "keypairs", f"{_CONN}/keypairs", "keyPairs", name_path="iid.name", aliases=("key", "keys", "kp"),
         registrable=True,
         columns=(_IID, ("FINGERPRINT", "fingerprint"), _CSP)),
    RestKind("vm", "vms", f"{_CONN}/vms", "vms", name_path="iid.name", aliases=("vms",), registrable=True,
         columns=(_IID, ("STATUS", "status"), ("SPEC", "spec"), ("PRIVATE-IP", "privateIp"),
                  ("PUBLIC-IP", "publicIp"), _CSP),
         verbs={"suspend": "SUSPENDED", "resume": "RUNNING", "reboot": "RUNNING"}, ready_status="RUNNING",
         watch_params={"intervalSeconds": "0.5"}),
    RestKind("disk", "disks", f"{_CONN}/disks", "disks", name_path="iid.name", registrable=True,
         columns=(_IID, ("SIZE-GIB", "sizeGib"), ("STATUS", "status"), ("VM", "attachedVm"), _CSP)),
    # ---- tumblebug
    RestKind("namespace", "namespaces", "/tumblebug/v1/namespaces", "namespaces", aliases=("ns",),
         columns=(("NAME", "name"), ("DESCRIPTION", "description"), ("CREATED", "createTime"))),
    RestKind("vnet", "vnets", f"{_NS}/vnets", "resources", body_connection=True,
         columns=(*_RES, ("CIDR", "vnet.ipv4Cidr"), ("SUBNETS", "vnet.subnets[].name"), _CSP)),
    RestKind("securitygroup", "securitygroups", f"{_NS}/security-groups", "resources", body_connection=True,
         aliases=("sg", "sgs", "security-group", "security-groups"),
         columns=(*_RES, ("VNET", "securityGroup.vnet"), ("RULES", "securityGroup.rules"), _CSP)),
    RestKind("sshkey", "sshkeys", f"{_NS}/ssh-keys", "resources", body_connection=True,
         aliases=("ssh-key", "ssh-keys"), columns=(*_RES, ("FINGERPRINT", "sshKey.fingerprint"), _CSP)),
    RestKind("spec", "specs", f"{_NS}/specs", "resources", body_connection=True,
         columns=(*_RES, ("CSP-SPEC", "specRef.cspSpec"), ("VCPU", "specRef.vcpu"),
                  ("MEMORY-GIB", "specRef.memoryGib"), ("PRICE/H", "specRef.pricePerHour"))),
    RestKind("image", "images", f"{_NS}/images", "resources", body_connection=True,
         columns=(*_RES, ("CSP-IMAGE", "imageRef.cspImage"), ("OS", "imageRef.os"),
                  ("ARCH", "imageRef.architecture"))),
    RestKind("datadisk", "datadisks", f"{_NS}/data-disks", "resources", body_connection=True,
         aliases=("data-disk", "data-disks"),
         columns=(*_RES, ("SIZE-GIB", "dataDisk.sizeGib"), ("TYPE", "dataDisk.diskType"), _CSP)),
    RestKind("mcis", "mcis", f"{_NS}/mcis", "mcis", aliases=("mci",), create_request=mcis.create_request,
         delete_retry=False, grouped=True,
         columns=(("NAME", "name"), ("STATUS", "status"), ("TARGET", "targetAction|enum"),
                  ("GROUPS", "subgroups|groups"), ("VMS", "statusCount.total")),
         verbs={"suspend": "SUSPENDED", "resume": "RUNNING", "reboot": "RUNNING", "terminate": "TERMINATED",
                "refine": ""},
         ready_status="RUNNING",
         # One line per VM in 80 columns: the group and its connection are in the subgroups above the
         # table (a VM's name starts with its group's), the rest in `-o yaml`; long errors are cut.
         children=(Child("vms", "vms", "VMs", (
             ("NAME", "name"), ("STATUS", "status"), ("TARGET", "targetAction|enum"), ("IP", "privateIp"),
             ("AGENT", "agentStatus"), ("ERROR", "error"))),)),
    RestKind("app", "apps", "/ladybug/v1/namespaces/{namespace}/apps", "applications", aliases=("application",),
         create_request=apps.create_request, delete_retry=False,
         columns=(("NAME", "name"), ("MCIS", "mcis"), ("REVISION", "revision"), ("PHASE", "status.phase|enum"),
                  ("HEALTHY", "status.counts.healthy"), ("DESIRED", "status.counts.desired"),
                  ("ENDPOINT", "status.endpoint"), ("MESSAGE", "status.message")),
         verbs={"promote": "", "abort": ""},
         children=(Child("instances", "instances", "Instances", (
             ("ID", "id"), ("VM", "vm"), ("IP", "ip"), ("PORT", "port"), ("STATE", "state|enum"),
             ("HEALTHY", "healthy"), ("RESTARTS", "restarts")), paged=False),)),
    RestKind("catalogspec", "catalogspecs", "/tumblebug/v1/catalog/specs", "specs", aliases=("cspec", "cspecs"),
         name_path="id", creatable=False, deletable=False, listed_only=True, filters=_SPEC_FILTERS,
         columns=(("ID", "id"), ("PROVIDER", "provider"), ("REGION", "region"), ("VCPU", "vcpu"),
                  ("MEMORY-GIB", "memoryGib"), ("PRICE/H", "pricePerHour"), ("ARCH", "architecture"),
                  ("GPUS", "gpuCount"))),
    # Benchmark campaigns: `cbctl create campaign c1 --set maxVms=10 --set requirements.vcpuMax=4`, then get,
    # describe (every step) and `cbctl cancel campaign c1`.
    RestKind("campaign", "campaigns", "/tumblebug/v1/benchmark-campaigns", "campaigns",
         aliases=("benchmarkcampaign", "benchmarkcampaigns"), deletable=False, verbs={"cancel": ""},
         columns=(("NAME", "name"), ("STATE", "state"), ("STEPS", "steps[].state|tally"), ("VMS", "vmsMade"),
                  ("MAX VMS", "maxVms"), ("COST", "costReserved|number"), ("MESSAGE", "message"))),
    # Stored benchmark results per spec and metric (placement: `cbctl get benchmarks --where metric=cpu_multi`).
    RestKind("benchmark", "benchmarks", "/tumblebug/v1/benchmarks", "results", aliases=("bench",), name_path="specId",
         creatable=False, deletable=False, listed_only=True,
         filters={"spec": Filter(equals="specId"), "connection": Filter(equals="connection"),
                  "provider": Filter(equals="provider"), "region": Filter(equals="region"),
                  "metric": Filter(equals="metric")},
         columns=(("SPEC", "specId"), ("METRIC", "metric"), ("MEAN", "mean|number"), ("SAMPLES", "samples"),
                  ("SPREAD", "spread"), ("WHEN", "measuredAt"))),
    RestKind("catalogimage", "catalogimages", "/tumblebug/v1/catalog/images", "images", aliases=("cimage", "cimages"),
         name_path="id", creatable=False, deletable=False, listed_only=True, filters=_IMAGE_FILTERS,
         columns=(("ID", "id"), ("CONNECTION", "connection"), ("OS", "os"), ("ARCH", "architecture"))),
    # ---- the gateway's own
    RestKind(apikeys.KIND, "apikeys", "/gateway/v1/apikeys", "apiKeys", aliases=("api-key", "api-keys"),
         create_request=apikeys.create_request,
         columns=(("NAME", "name"), ("ROLE", "role"), ("NAMESPACE", "namespace"), ("SOURCE", "source"),
                  ("CREATED", "createTime"))),
)


def find(word: str, prefer: str = "tumblebug") -> RestKind:
    """The kind a user means by `word` (singular, plural or alias, any case; `kind.service` to
    name the service). When two services have the kind, `prefer` picks one."""
    w = word.strip().lower()
    w, _, service = w.partition(".")
    if service and service not in SERVICES:
        raise ApiError(f"unknown service {service!r} in {word!r}; services: {', '.join(SERVICES)}")
    matches = [k for k in KINDS if w in (k.name, k.plural, *k.aliases) and (not service or k.service == service)]
    if not matches:
        names = ", ".join(dict.fromkeys(k.name for k in KINDS))
        raise ApiError(f"unknown kind {word!r}; kinds: {names}")
    return next((k for k in matches if k.service == prefer), matches[0])


def prefer(namespace_given: bool, connection_given: bool) -> str:
    """Which service's kind a scope points at (see the module's docstring)."""
    return "spider" if connection_given and not namespace_given else "tumblebug"


def _comparison(expression: str) -> tuple[str, str, str]:
    """(name, Filter attribute, value) of `name>=value`, `name<=value` or `name=value`."""
    for op, attr in ((">=", "at_least"), ("<=", "at_most"), ("==", "equals"), ("=", "equals")):
        key, sep, value = expression.partition(op)
        if sep:
            return key.strip().lower(), attr, value.strip()
    raise ApiError(f"--where {expression!r}: expected name>=value, name<=value or name=value")


def where(kind: RestKind, expressions: list[str]) -> dict[str, str]:
    """Query parameters from `--where` expressions: `vcpu>=2`, `price<=0.1`, `provider=aws`, or
    several joined by commas."""
    params: dict[str, str] = {}
    for expression in (e.strip() for text in expressions for e in text.split(",")):
        if not expression:
            continue
        key, attr, value = _comparison(expression)
        found = kind.filters.get(key)
        if found is None:
            offered = ", ".join(kind.filters) or "none"
            raise ApiError(f"--where {expression!r}: {kind.plural} have no filter {key!r} (filters: {offered})")
        names = [getattr(found, attr)] if attr != "equals" or found.equals else [found.at_least, found.at_most]
        if not all(names):
            ops = [o for o, a in ((">=", found.at_least), ("<=", found.at_most), ("=", found.equals)) if a]
            raise ApiError(f"--where {expression!r}: {key} takes {' or '.join(ops)}")
        params.update(dict.fromkeys(names, value))
    return params


def get_path(data: object, path: str) -> object:
    """A value at a dotted path; `a[].b` collects `b` from each element of list `a`."""
    current: object = data
    parts = path.split(".")
    for i, part in enumerate(parts):
        if part.endswith("[]"):
            items = current.get(part[:-2], []) if isinstance(current, dict) else []
            rest = ".".join(parts[i + 1:])
            return [get_path(item, rest) if rest else item for item in items] if isinstance(items, list) else []
        current = current.get(part) if isinstance(current, dict) else None
    return current


def set_path(data: dict[str, object], path: str, value: object) -> None:
    """Set a value at a dotted path, making the dicts on the way."""
    parts = path.split(".")
    current = data
    for part in parts[:-1]:
        nxt = current.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ApiError(f"{path}: {part} is not an object")
        current = nxt
    current[parts[-1]] = value
