"""`cbctl get` and `cbctl describe`: list resources of a kind (filtered, sorted) or show one."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from services.cli import output
from services.cli.client import ApiError
from services.cli.kinds import RestKind, get_path, where
from services.cli.listing import get_one, list_all
from services.cli.options import Connection, Namespace, Output, Verbose
from services.cli.session import console, run, session


def _sorted(kind: RestKind, items: list[dict[str, Any]], sort_by: str) -> list[dict[str, Any]]:
    """Items ordered by a column (its header or the start of it, any case: `price` is PRICE/H) or a
    JSON path; missing values last."""
    word = sort_by.strip().lower()
    exact = [p for h, p in kind.columns if h.lower() == word]
    prefixed = [p for h, p in kind.columns if h.lower().startswith(word)]
    path = (exact or (prefixed if len(prefixed) == 1 else [sort_by]))[0].partition("|")[0]
    if not exact and len(prefixed) != 1 and items and all(get_path(i, path) in (None, "") for i in items):
        # Neither a column nor a field any item has: sorting by it would silently change nothing.
        headers = ", ".join(h.lower() for h, _ in kind.columns)
        raise ApiError(f"--sort-by {sort_by!r}: no {kind.name} column or field of that name "
                       f"(columns: {headers}; or a JSON path such as spec.vcpu)", code="INVALID_ARGUMENT")

    def key(item: dict[str, Any]) -> tuple[int, float, str]:
        value = get_path(item, path)
        if value is None or value == "":
            return (2, 0.0, "")
        try:
            return (0, float(value), "")  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return (1, 0.0, str(value))

    return sorted(items, key=key)


def get(kind: Annotated[str, typer.Argument(help="What to get: mcis, vnet, catalogspecs, vm, connection, …")],
        name: Annotated[str, typer.Argument(help="One resource; all of them when left out.")] = "",
        connection: Connection = "", namespace: Namespace = "", output_format: Output = "",
        where_: Annotated[list[str] | None, typer.Option(
            "--where", help="Filter a list: 'vcpu>=2', 'price<=0.05', 'provider=aws' (repeat or join with ,).")] = None,
        sort_by: Annotated[str, typer.Option("--sort-by", help="Order by a column (PRICE/H) or a JSON path.")] = "",
        limit: Annotated[int, typer.Option("--limit", help="At most this many (after sorting).")] = 0,
        verbose: Verbose = False) -> None:
    """List resources of a kind, or show one."""

    def body() -> None:
        s = session(connection, namespace, output_format)
        k = s.kind(kind)
        query = where(k, where_ or [])
        with s.client:
            if name:
                items = [get_one(s.client, k, s.scope, name)]
            else:
                items = list_all(s.client, k, s.scope, query, 0 if sort_by else limit)
        if k.body_connection and "connection" in s.given:
            items = [i for i in items if i.get("connection") == s.scope["connection"]]
        if sort_by:
            items = _sorted(k, items, sort_by)[:limit or None]
        if s.output == "table":
            output.table(console, k, items)
        else:
            output.dump(console, items[0] if name else items, s.output)

    run(verbose, body)


def describe(kind: Annotated[str, typer.Argument(help="The kind.")], name: Annotated[str, typer.Argument()],
             connection: Connection = "", namespace: Namespace = "", output_format: Output = "",
             verbose: Verbose = False) -> None:
    """Show every field of one resource, and what it holds (an MCIS's VMs)."""

    def body() -> None:
        s = session(connection, namespace, output_format)
        k = s.kind(kind)
        with s.client:
            item = get_one(s.client, k, s.scope, name)
            children = {c.list_field: list_all(s.client, k, s.scope, path=f"{k.item_path(s.scope, name)}/{c.path}",
                                               list_field=c.list_field, paged=c.paged) for c in k.children}
        if s.output == "table":
            output.describe(console, k, item)
            for child in k.children:
                console.print(f"\n[bold]{child.title}[/bold]")
                output.rows(console, child.columns, children[child.list_field], child.title, one_line=True)
        else:
            output.dump(console, {**item, **children}, s.output)

    run(verbose, body)
