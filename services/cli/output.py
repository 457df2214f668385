"""Printing resources: a table of a kind's columns, JSON, YAML, and the describe view."""

from __future__ import annotations

import json
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from services.cli.kinds import Kind, get_path


def cell(value: Any) -> str:
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        if value and all(isinstance(v, (str, int, float)) for v in value):
            return ",".join(str(v) for v in value)
        return str(len(value))
    if isinstance(value, dict):
        return str(len(value))
    return str(value)


def table(console: Console, kind: Kind, items: list[dict[str, Any]]) -> None:
    if not items:
        console.print(f"No {kind.plural}.")
        return
    out = Table(box=None, pad_edge=False, header_style="bold")
    for header, _ in kind.columns:
        out.add_column(header, overflow="fold")
    for item in items:
        out.add_row(*(cell(get_path(item, path)) for _, path in kind.columns))
    console.print(out)


def dump(console: Console, data: Any, output: str) -> None:
    """JSON or YAML to stdout, unstyled so it can be piped."""
    if output == "json":
        console.print_json(json.dumps(data)) if console.is_terminal else print(json.dumps(data, indent=2))
    else:
        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())


def describe(console: Console, kind: Kind, item: dict[str, Any]) -> None:
    """A readable view: the kind and name, then every field as YAML."""
    console.print(f"[bold]{kind.name}[/bold] {get_path(item, kind.name_path)}")
    print(yaml.safe_dump(_compact(item), sort_keys=False, allow_unicode=True).rstrip())


def _compact(data: Any) -> Any:
    """Leave out empty values: the describe view shows what is set."""
    if isinstance(data, dict):
        return {k: _compact(v) for k, v in data.items() if v not in ("", [], {}, None, 0, False)}
    if isinstance(data, list):
        return [_compact(v) for v in data]
    return data
