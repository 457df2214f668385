"""Where spider keeps its records in etcd."""

from __future__ import annotations

ROOT = "/cb/spider"


def credential(name: str = "") -> str:
    return f"{ROOT}/credentials/{name}"


def region(name: str = "") -> str:
    return f"{ROOT}/regions/{name}"


def connection(name: str = "") -> str:
    return f"{ROOT}/connections/{name}"


def resources(conn: str, collection: str = "") -> str:
    """Prefix of one connection's resources (of one collection, when given)."""
    return f"{ROOT}/conn/{conn}/{collection}/" if collection else f"{ROOT}/conn/{conn}/"


def resource(conn: str, collection: str, name: str) -> str:
    return f"{ROOT}/conn/{conn}/{collection}/{name}"


def instance(identity: str = "") -> str:
    return f"{ROOT}/instances/{identity}"
