"""cbctl's tables: one row per line when piped, and the first column never split."""

from __future__ import annotations

import io

from rich.console import Console

from services.cli import output

COLUMNS = (("ID", "id"), ("PROVIDER", "provider"), ("NOTE", "note"))
ITEMS = [{"id": f"cirrus-us-ohio+c7.large-{i}", "provider": "cirrus", "note": "x" * 60} for i in range(3)]


def printed(console: Console) -> list[str]:
    output.rows(console, COLUMNS, ITEMS, "specs")
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue().rstrip("\n").splitlines()


def test_piped_tables_are_not_wrapped_however_narrow_the_console() -> None:
    lines = printed(Console(file=io.StringIO(), width=40, force_terminal=False))
    assert len(lines) == 1 + len(ITEMS)
    assert all(item["id"] in line and item["note"] in line for item, line in zip(ITEMS, lines[1:], strict=True))


def test_a_terminal_folds_the_other_columns_but_keeps_each_id_whole() -> None:
    lines = printed(Console(file=io.StringIO(), width=60, force_terminal=True, color_system=None))
    assert len(lines) > 1 + len(ITEMS)  # the notes fold
    assert all(any(item["id"] in line for line in lines) for item in ITEMS)
