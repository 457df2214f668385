"""Who a caller is: a principal with a role and an optional namespace scope.

The gateway authenticates an API key into a Principal and passes it to the backends as gRPC
metadata (`x-cb-principal`, `x-cb-role`, `x-cb-namespace`); the backends read it back with
`from_metadata` and enforce the role (services/rpc/authz.py).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

PRINCIPAL_HEADER = "x-cb-principal"
ROLE_HEADER = "x-cb-role"
NAMESPACE_HEADER = "x-cb-namespace"
IDENTITY_HEADERS = (PRINCIPAL_HEADER, ROLE_HEADER, NAMESPACE_HEADER)


class Role(enum.IntEnum):
    """Ordered: a role may do everything the roles below it may."""

    VIEWER = 1  # read only
    OPERATOR = 2  # everything except credentials and key management
    ADMIN = 3  # everything

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        """`admin`, `operator` or `viewer` (any case); ValueError otherwise."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {text[:32]!r}: use admin, operator or viewer") from None


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the API key's name, its role, and its namespace ("" = every one)."""

    name: str
    role: Role
    namespace: str = ""

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((PRINCIPAL_HEADER, self.name), (ROLE_HEADER, self.role.label), (NAMESPACE_HEADER, self.namespace))


def from_metadata(metadata: Iterable[tuple[str, str | bytes]]) -> Principal | None:
    """The principal in gRPC metadata; None when no role is given. ValueError for an unknown role."""
    values: dict[str, str] = {}
    for key, value in metadata:
        if key in IDENTITY_HEADERS and isinstance(value, str):
            values[key] = value
    role = values.get(ROLE_HEADER, "")
    if not role:
        return None
    return Principal(values.get(PRINCIPAL_HEADER, "")[:64], Role.parse(role), values.get(NAMESPACE_HEADER, "")[:64])
