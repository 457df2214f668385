"""The kinds cbctl knows: each one's REST collection, scope, name field and table columns.

A kind is data, not code: a service that adds a resource adds a row here (tumblebug's
namespace-scoped kinds use `{namespace}` in their collection, filled from `--namespace`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.cli.client import ApiError


@dataclass(frozen=True)
class Kind:
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
    deletable: bool = True
    # Custom methods (`POST …/{name}:verb`) and the status each one settles in.
    verbs: dict[str, str] = field(default_factory=dict)
    # The status a create settles in, followed by the `:watch` stream (empty: nothing to wait for).
    ready_status: str = ""
    # Statuses that end a wait in failure.
    failed_statuses: tuple[str, ...] = ("FAILED",)

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

KINDS: tuple[Kind, ...] = (
    Kind("driver", "drivers", "/spider/v1/drivers", "drivers", aliases=("drv",), creatable=False, deletable=False,
         paged=False, columns=(("NAME", "name"), ("AVAILABLE", "available"), ("DESCRIPTION", "description"))),
    Kind("credential", "credentials", "/spider/v1/credentials", "credentials", aliases=("cred", "creds"),
         columns=(("NAME", "name"), ("DRIVER", "driver"), ("KEYS", "keys"), ("CREATED", "createTime"))),
    Kind("region", "regions", "/spider/v1/regions", "regions",
         columns=(("NAME", "name"), ("DRIVER", "driver"), ("REGION", "region"), ("ZONE", "zone"))),
    Kind("connection", "connections", "/spider/v1/connections", "connections", aliases=("conn", "conns"),
         columns=(("NAME", "name"), ("DRIVER", "driver"), ("PROVIDER", "provider"), ("REGION", "cloudRegion"),
                  ("CREDENTIAL", "credential"))),
    Kind("image", "images", f"{_CONN}/images", "images", creatable=False, deletable=False,
         columns=(("NAME", "name"), ("DISPLAY-NAME", "displayName"), ("OS", "os"), ("ARCH", "architecture"))),
    Kind("spec", "specs", f"{_CONN}/specs", "specs", creatable=False, deletable=False,
         columns=(("NAME", "name"), ("VCPU", "vcpu"), ("MEMORY-GIB", "memoryGib"), ("PRICE/H", "pricePerHour"))),
    Kind("vpc", "vpcs", f"{_CONN}/vpcs", "vpcs", name_path="iid.name",
         columns=(_IID, ("CIDR", "ipv4Cidr"), ("SUBNETS", "subnets[].iid.name"), _CSP)),
    Kind("securitygroup", "securitygroups", f"{_CONN}/security-groups", "securityGroups", name_path="iid.name",
         aliases=("sg", "sgs", "security-group", "security-groups"),
         columns=(_IID, ("VPC", "vpc"), ("RULES", "rules"), _CSP)),
    Kind("keypair", "keypairs", f"{_CONN}/keypairs", "keyPairs", name_path="iid.name", aliases=("key", "keys", "kp"),
         columns=(_IID, ("FINGERPRINT", "fingerprint"), _CSP)),
    Kind("vm", "vms", f"{_CONN}/vms", "vms", name_path="iid.name", aliases=("vms",),
         columns=(_IID, ("STATUS", "status"), ("SPEC", "spec"), ("PRIVATE-IP", "privateIp"),
                  ("PUBLIC-IP", "publicIp"), _CSP),
         verbs={"suspend": "SUSPENDED", "resume": "RUNNING", "reboot": "RUNNING"}, ready_status="RUNNING"),
    Kind("disk", "disks", f"{_CONN}/disks", "disks", name_path="iid.name",
         columns=(_IID, ("SIZE-GIB", "sizeGib"), ("STATUS", "status"), ("VM", "attachedVm"), _CSP)),
)


def find(word: str) -> Kind:
    """The kind a user means by `word` (singular, plural or alias, any case)."""
    w = word.strip().lower()
    for kind in KINDS:
        if w in (kind.name, kind.plural, *kind.aliases):
            return kind
    names = ", ".join(k.name for k in KINDS)
    raise ApiError(f"unknown kind {word!r}; kinds: {names}")


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
