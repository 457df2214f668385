"""Resources described in YAML documents (`-f FILE`, `-` for stdin) or on the command line
(`--set`): read and checked before anything is sent."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.cli.client import ApiError
from services.cli.kinds import RestKind, find, get_path, prefer, set_path


@dataclass
class Document:
    """One resource from a file: its kind, scope, name and body."""

    kind: RestKind
    scope: dict[str, str]
    name: str
    spec: dict[str, Any]
    where: str


def read_documents(files: list[Path], default_scope: dict[str, str],
                   given: frozenset[str] = frozenset()) -> list[Document]:
    """Every document of every file, checked before anything is sent."""
    docs: list[Document] = []
    for path in files:
        text = sys.stdin.read() if str(path) == "-" else _read(path)
        try:
            loaded = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as exc:
            raise ApiError(f"{path}: not valid YAML: {exc}") from None
        source = "stdin" if str(path) == "-" else str(path)
        for i, raw in enumerate(loaded, 1):
            docs.append(document(raw, f"{source} document {i}", default_scope, given))
    if not docs:
        raise ApiError("no resources in the given file(s)")
    return docs


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ApiError(f"cannot read {path}: {exc.strerror}") from None


def document(raw: Any, where: str, default_scope: dict[str, str], given: frozenset[str]) -> Document:
    """One document (`kind`, `name`, `connection`, `namespace`, `spec`) checked and scoped; `where`
    names it in errors."""
    if not isinstance(raw, dict) or "kind" not in raw:
        raise ApiError(f"{where}: expected a mapping with kind: and spec:")
    unknown = set(raw) - {"kind", "name", "spec", "connection", "namespace"}
    if unknown:
        raise ApiError(f"{where}: unknown keys {', '.join(sorted(unknown))} (kind, name, connection, namespace, spec)")
    try:
        kind = find(str(raw["kind"]), prefer(bool(raw.get("namespace")) or "namespace" in given,
                                             bool(raw.get("connection")) or "connection" in given))
    except ApiError as err:
        raise ApiError(f"{where}: {err.message}") from None
    spec = raw.get("spec") or {}
    if not isinstance(spec, dict):
        raise ApiError(f"{where}: spec must be a mapping")
    name = str(raw.get("name") or get_path(spec, kind.name_path) or "")
    if not name:
        raise ApiError(f"{where}: no name (name: or spec.{kind.name_path})")
    set_path(spec, kind.name_path, name)
    scope = {"connection": str(raw.get("connection") or default_scope.get("connection", "")),
             "namespace": str(raw.get("namespace") or default_scope.get("namespace", ""))}
    if kind.body_connection and scope["connection"] and not spec.get("connection"):
        spec["connection"] = scope["connection"]  # tumblebug's resources name their connection in the body
    return Document(kind, scope, name, spec, where)


def parse_sets(values: list[str] | None) -> Iterator[tuple[str, Any]]:
    """`--set path=value` flags as (path, YAML value) pairs."""
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ApiError(f"--set {item!r}: expected path=value")
        try:
            yield key, yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            yield key, value
