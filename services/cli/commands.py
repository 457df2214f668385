"""cbctl's resource commands: get, describe, create, delete, apply, and custom verbs."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from services.cli import output
from services.cli.client import ApiError, Client
from services.cli.config import Config, ConfigError, check_output, load
from services.cli.kinds import Kind, find, get_path, set_path
from services.cli.progress import Target, wait_all, wait_gone

console = Console()
err_console = Console(stderr=True)

PAGE_SIZE = 100

# Options every resource command takes (also accepted before the command, e.g. `cbctl -v get vms`).
Connection = Annotated[str, typer.Option("--connection", "-c", help="Connection of connection-scoped kinds.")]
Namespace = Annotated[str, typer.Option("--namespace", "-n", help="Namespace of namespace-scoped kinds.")]
Output = Annotated[str, typer.Option("--output", "-o", help="table, json or yaml.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="On error, show the request and the details.")]
Wait = Annotated[bool, typer.Option("--wait", "-w", help="Wait until the resource settles (progress bars).")]
Timeout = Annotated[float, typer.Option("--timeout", help="Seconds to wait with --wait.")]
Files = Annotated[list[Path] | None, typer.Option("--filename", "-f", help="YAML file(s) of resources; - is stdin.")]


@dataclass
class Globals:
    """Options given before the command."""

    gateway: str = ""
    api_key: str = ""
    verbose: bool = False


GLOBALS = Globals()


@dataclass
class Session:
    """The configuration and client of one command."""

    config: Config
    client: Client
    scope: dict[str, str]
    output: str


def run(verbose: bool, body: Callable[[], None]) -> None:
    """Run a command; an error is one line on stderr (more with -v) and exit status 1."""
    try:
        body()
    except (ApiError, ConfigError) as err:
        err_console.print(f"[red]Error:[/red] {err}", highlight=False, soft_wrap=True)
        if (verbose or GLOBALS.verbose) and isinstance(err, ApiError):
            for line in err.explain():
                err_console.print(f"  {line}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def session(connection: str = "", namespace: str = "", output_format: str = "") -> Session:
    config = load().with_flags(gateway=GLOBALS.gateway, api_key=GLOBALS.api_key, connection=connection,
                               namespace=namespace, output=output_format)
    check_output(config.output)
    scope = {"connection": config.connection, "namespace": config.namespace}
    return Session(config, Client(config), scope, config.output)


def list_all(client: Client, kind: Kind, scope: dict[str, str]) -> list[dict[str, Any]]:
    """Every item of a collection, following page tokens."""
    items: list[dict[str, Any]] = []
    token = ""
    for _ in range(10_000):
        params: dict[str, Any] = {"pageSize": PAGE_SIZE} if kind.paged else {}
        if token:
            params["pageToken"] = token
        page = client.call("GET", kind.collection_path(scope), params=params)
        items += page.get(kind.list_field, [])
        token = page.get("nextPageToken", "")
        if not token:
            break
    return items


def get_one(client: Client, kind: Kind, scope: dict[str, str], name: str) -> dict[str, Any]:
    if kind.name == "driver":  # drivers are only listed
        for item in list_all(client, kind, scope):
            if item.get("name") == name:
                return item
        raise ApiError(f"driver {name!r} not found", 404, "NOT_FOUND")
    result: dict[str, Any] = client.call("GET", kind.item_path(scope, name))
    return result


# ---------------------------------------------------------------- get, describe


def get(kind: Annotated[str, typer.Argument(help="What to get: vm, vpc, connection, …")],
        name: Annotated[str, typer.Argument(help="One resource; all of them when left out.")] = "",
        connection: Connection = "", namespace: Namespace = "", output_format: Output = "",
        verbose: Verbose = False) -> None:
    """List resources of a kind, or show one."""

    def body() -> None:
        s = session(connection, namespace, output_format)
        k = find(kind)
        with s.client:
            items = [get_one(s.client, k, s.scope, name)] if name else list_all(s.client, k, s.scope)
        if s.output == "table":
            output.table(console, k, items)
        else:
            output.dump(console, items[0] if name else items, s.output)

    run(verbose, body)


def describe(kind: Annotated[str, typer.Argument(help="The kind.")], name: Annotated[str, typer.Argument()],
             connection: Connection = "", namespace: Namespace = "", verbose: Verbose = False) -> None:
    """Show every field of one resource."""

    def body() -> None:
        s = session(connection, namespace)
        k = find(kind)
        with s.client:
            output.describe(console, k, get_one(s.client, k, s.scope, name))

    run(verbose, body)


# ---------------------------------------------------------------- documents


@dataclass
class Document:
    """One resource from a file: its kind, scope, name and body."""

    kind: Kind
    scope: dict[str, str]
    name: str
    spec: dict[str, Any]
    where: str


def read_documents(files: list[Path], default_scope: dict[str, str]) -> list[Document]:
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
            docs.append(_document(raw, f"{source} document {i}", default_scope))
    if not docs:
        raise ApiError("no resources in the given file(s)")
    return docs


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ApiError(f"cannot read {path}: {exc.strerror}") from None


def _document(raw: Any, where: str, default_scope: dict[str, str]) -> Document:
    if not isinstance(raw, dict) or "kind" not in raw:
        raise ApiError(f"{where}: expected a mapping with kind: and spec:")
    unknown = set(raw) - {"kind", "name", "spec", "connection", "namespace"}
    if unknown:
        raise ApiError(f"{where}: unknown keys {', '.join(sorted(unknown))} (kind, name, connection, namespace, spec)")
    try:
        kind = find(str(raw["kind"]))
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
    return Document(kind, scope, name, spec, where)


def _sets(values: list[str] | None) -> Iterator[tuple[str, Any]]:
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ApiError(f"--set {item!r}: expected path=value")
        try:
            yield key, yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            yield key, value


def _create(s: Session, doc: Document) -> tuple[str, dict[str, Any]]:
    """Create one resource: ('created' | 'unchanged', the resource)."""
    if not doc.kind.creatable:
        raise ApiError(f"{doc.kind.plural} cannot be created; they come from the cloud")
    path = doc.kind.collection_path(doc.scope)
    try:
        return "created", s.client.call("POST", path, doc.spec)
    except ApiError as err:
        if err.status == 409 and err.code == "ALREADY_EXISTS":
            return "unchanged", get_one(s.client, doc.kind, doc.scope, doc.name)
        where = "" if doc.where == "command line" else f"{doc.where}: "
        raise ApiError(f"{where}{doc.kind.name}/{doc.name}: {err.message}", err.status, err.code, err.details,
                       err.request_id, err.request) from None


def _report(s: Session, results: list[tuple[Document, str, dict[str, Any]]]) -> None:
    if s.output == "table":
        for doc, what, _ in results:
            console.print(f"{doc.kind.name}/{doc.name} {what}", highlight=False)
    else:
        data = [item for _, _, item in results]
        output.dump(console, data[0] if len(data) == 1 else data, s.output)


def _wait_ready(s: Session, docs: list[Document], timeout: float) -> None:
    targets = [Target(d.kind, d.scope, d.name, d.kind.ready_status) for d in docs if d.kind.ready_status]
    failures = wait_all(s.client, err_console, targets, timeout)
    if failures:
        raise ApiError("; ".join(failures))


# ---------------------------------------------------------------- create, apply, delete


def create(kind: Annotated[str, typer.Argument(help="The kind, e.g. vm.")] = "",
           name: Annotated[str, typer.Argument(help="The new resource's name.")] = "",
           files: Files = None,
           set_values: Annotated[list[str] | None, typer.Option("--set", help="field.path=value (YAML value).")] = None,
           connection: Connection = "", namespace: Namespace = "", output_format: Output = "", wait: Wait = False,
           timeout: Timeout = 300.0, verbose: Verbose = False) -> None:
    """Create resources from flags (`create vm web-1 --set spec=… `) or from files (-f)."""

    def body() -> None:
        s = session(connection, namespace, output_format)
        if files:
            docs = read_documents(files, s.scope)
        else:
            if not kind or not name:
                raise ApiError("give KIND and NAME, or -f FILE")
            spec: dict[str, Any] = {}
            for key, value in _sets(set_values):
                set_path(spec, key, value)
            docs = [_document({"kind": kind, "name": name, "spec": spec}, "command line", s.scope)]
        with s.client:
            results = []
            for doc in docs:
                what, item = _create(s, doc)
                if what == "unchanged":
                    raise ApiError(f"{doc.kind.name}/{doc.name} already exists", 409, "ALREADY_EXISTS")
                results.append((doc, what, item))
            _report(s, results)
            if wait:
                _wait_ready(s, docs, timeout)

    run(verbose, body)


def apply(files: Files = None, connection: Connection = "", namespace: Namespace = "", output_format: Output = "",
          wait: Wait = False, timeout: Timeout = 300.0, verbose: Verbose = False) -> None:
    """Create what the files describe, in order; what exists already is left unchanged."""

    def body() -> None:
        if not files:
            raise ApiError("give -f FILE (one or many YAML documents)")
        s = session(connection, namespace, output_format)
        docs = read_documents(files, s.scope)
        with s.client:
            results = []
            for doc in docs:
                what, item = _create(s, doc)
                results.append((doc, what, item))
            _report(s, results)
            if wait:
                _wait_ready(s, docs, timeout)

    run(verbose, body)


def delete(kind: Annotated[str, typer.Argument(help="The kind, e.g. vm.")] = "",
           name: Annotated[str, typer.Argument(help="The resource's name.")] = "",
           files: Files = None,
           force: Annotated[bool, typer.Option("--force", help="Forget the record even if the cloud refuses.")] = False,
           connection: Connection = "", namespace: Namespace = "", wait: Wait = False, timeout: Timeout = 300.0,
           verbose: Verbose = False) -> None:
    """Delete one resource, or everything in the files (in reverse order)."""

    def body() -> None:
        s = session(connection, namespace)
        if files:
            docs = list(reversed(read_documents(files, s.scope)))
        elif kind and name:
            docs = [Document(find(kind), s.scope, name, {}, "command line")]
        else:
            raise ApiError("give KIND and NAME, or -f FILE")
        with s.client:
            for doc in docs:
                what = _delete(s, doc, force, wait, timeout)
                console.print(f"{doc.kind.name}/{doc.name} {what}", highlight=False)

    run(verbose, body)


def _delete(s: Session, doc: Document, force: bool, wait: bool, timeout: float) -> str:
    if not doc.kind.deletable:
        raise ApiError(f"{doc.kind.plural} cannot be deleted")
    path = doc.kind.item_path(doc.scope, doc.name)
    params = {"force": "true"} if force else None
    deadline = time.monotonic() + timeout
    while True:
        try:
            s.client.call("DELETE", path, params=params)
            break
        except ApiError as err:
            if err.status == 404 and doc.where != "command line":
                return "already gone"  # deleting what a file describes is idempotent
            # A dependency the cloud still holds (a VM terminating) lets go soon: with --wait, retry.
            if wait and err.code == "FAILED_PRECONDITION" and time.monotonic() < deadline:
                time.sleep(0.5)
                continue
            raise
    if wait:
        wait_gone(s.client, err_console, doc.kind, doc.scope, doc.name, max(1.0, deadline - time.monotonic()))
    return "deleted"


def verb_command(verb: str) -> Callable[..., None]:
    """`cbctl <verb> KIND NAME`: a custom method, e.g. suspend a VM."""

    def command(kind: Annotated[str, typer.Argument(help="The kind, e.g. vm.")],
                name: Annotated[str, typer.Argument(help="The resource's name.")],
                connection: Connection = "", namespace: Namespace = "", wait: Wait = False,
                timeout: Timeout = 300.0, verbose: Verbose = False) -> None:
        def body() -> None:
            s = session(connection, namespace)
            k = find(kind)
            if verb not in k.verbs:
                raise ApiError(f"{k.plural} cannot {verb}" + (f"; they can {', '.join(k.verbs)}" if k.verbs else ""))
            with s.client:
                reply = s.client.call("POST", f"{k.item_path(s.scope, name)}:{verb}", {})
                console.print(f"{k.name}/{name} {str(reply.get('status', 'done')).lower()}", highlight=False)
                if wait:
                    failures = wait_all(s.client, err_console, [Target(k, s.scope, name, k.verbs[verb])], timeout)
                    if failures:
                        raise ApiError("; ".join(failures))

        run(verbose, body)

    command.__doc__ = f"{verb.capitalize()} a resource (for example a VM); --wait follows it to the end."
    return command
