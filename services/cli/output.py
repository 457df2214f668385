"""Printing resources: a table of a kind's columns, JSON, YAML, and the describe view.

A column is (header, JSON path), the path optionally followed by `|format`: `enum` shows an
enum's value without its type prefix (`ACTION_SUSPEND` → `suspend`), `groups` a list of VM
groups as `name:size`.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable, Sequence
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from services.cli.kinds import RestKind, get_path


def _enum(value: Any) -> Any:
    if not isinstance(value, str) or "_" not in value:
        return value
    word = value.split("_", 1)[1].lower()
    return "" if word in ("none", "unspecified") else word


def _groups(value: Any) -> Any:
    if not isinstance(value, list):
        return value
    return ",".join(f"{g.get('name')}:{g.get('size', 0)}" for g in value if isinstance(g, dict))


# The widest a column may keep in a one-line table before it is cut too.
ONE_LINE_CAP = 16
ONE_LINE_LAST_MIN = 5

def _tally(values: Any) -> str:
    """`done:2,skipped:48`: how many of a list have each value, in first-seen order."""
    counts = collections.Counter(values or [])
    return ",".join(f"{k}:{n}" for k, n in counts.items())


def _number(value: Any) -> Any:
    """Four significant digits (0.003083, 1.419e+06): a table is read, not computed with."""
    return f"{value:.4g}" if isinstance(value, float) else value


FORMATS: dict[str, Callable[[Any], Any]] = {"enum": _enum, "groups": _groups, "tally": _tally, "number": _number}


def column(item: dict[str, Any], spec: str) -> str:
    """One cell: the value at a column's path, formatted."""
    path, _, fmt = spec.partition("|")
    value = get_path(item, path)
    return cell(FORMATS[fmt](value) if fmt else value)


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


def table(console: Console, kind: RestKind, items: list[dict[str, Any]]) -> None:
    rows(console, kind.columns, items, kind.plural)


def rows(console: Console, columns: Sequence[tuple[str, str]], items: list[dict[str, Any]], what: str,
         one_line: bool = False) -> None:
    """A table of `columns` (header, path) with one row per item. `one_line` keeps each row on one
    line of the console, cutting the widest cells with an ellipsis (the full values are in -o yaml)."""
    if not items:
        console.print(f"No {what}.")
        return
    out = Table(box=None, pad_edge=False, header_style="bold")
    cells = [[column(item, spec) for _, spec in columns] for item in items]
    piped_width = 0  # the whole table's width when it goes to a pipe (never wrapped)
    if not one_line:
        # The first column names the row (an ID one copies): never split. Output to a pipe is not
        # wrapped at all, so a script reads one row per line whatever the width of the terminal.
        for i, (header, _) in enumerate(columns):
            out.add_column(header, overflow="fold", no_wrap=i == 0)
        if not console.is_terminal:
            piped_width = sum(max(len(header), *(len(row[i]) for row in cells)) + 2
                              for i, (header, _) in enumerate(columns))
    else:
        # Widths set here, not left to rich (which drops whole columns when the cells are wide): short
        # columns keep their width up to a cap, the last one (an error, say) takes what is left.
        widths = [min(max(len(header), *(len(row[i]) for row in cells)), ONE_LINE_CAP)
                  for i, (header, _) in enumerate(columns[:-1])]
        last = max(console.width - sum(widths) - 2 * (len(columns) - 1), ONE_LINE_LAST_MIN)
        for (header, _), width in zip(columns, [*widths, last], strict=True):
            out.add_column(header, no_wrap=True, overflow="ellipsis", width=width)
    for row in cells:
        out.add_row(*row)
    if piped_width > console.width:
        console = Console(file=console.file, width=piped_width, color_system=None)  # print caps width at its own
    console.print(out)


def dump(console: Console, data: Any, output: str) -> None:
    """JSON or YAML to stdout, unstyled so it can be piped."""
    if output == "json":
        console.print_json(json.dumps(data)) if console.is_terminal else print(json.dumps(data, indent=2))
    else:
        print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())


def describe(console: Console, kind: RestKind, item: dict[str, Any]) -> None:
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
