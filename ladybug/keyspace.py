"""Where ladybug keeps its records in etcd (`/cb/ladybug/…`)."""

from __future__ import annotations

ROOT = "/cb/ladybug/"


# Each kind under its own prefix, so the controller's informer follows application records
# without reading revisions (which hold whole specs) or event logs.
APPS = f"{ROOT}apps/"


def apps(ns: str) -> str:
    return f"{APPS}{ns}/"


def app(ns: str, name: str) -> str:
    return f"{apps(ns)}{name}"


def revisions(ns: str, name: str) -> str:
    return f"{ROOT}revisions/{ns}/{name}/"


def revision(ns: str, name: str, number: int) -> str:
    # Zero-padded so key order is revision order.
    return f"{revisions(ns, name)}{number:012d}"


def events(ns: str, name: str) -> str:
    return f"{ROOT}events/{ns}/{name}"


def instances(ns: str, name: str) -> str:
    return f"{ROOT}instances/{ns}/{name}"


def endpoint_ports() -> str:
    return f"{ROOT}endpoint-ports/"


def endpoint_port(port: int) -> str:
    return f"{endpoint_ports()}{port}"


def replaced(ns: str, mcis: str, vm: str) -> str:
    """Marks a failed VM whose replacement was asked of tumblebug (once per VM, whichever app asked)."""
    return f"{ROOT}replaced/{ns}/{mcis}/{vm}"


def app_of(key: str) -> tuple[str, str] | None:
    """(namespace, app) of an application record's key; None for any other key."""
    if not key.startswith(APPS):
        return None
    parts = key[len(APPS):].split("/")
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None
