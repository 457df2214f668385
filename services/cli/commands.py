"""cbctl's resource commands: get, describe, create, delete, apply, custom verbs, and scale."""

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

from services.cli import apikeys, mcis, mcis_vms, output
from services.cli.client import ApiError, Client
from services.cli.config import Config, ConfigError, check_output, load
from services.cli.kinds import Kind, find, get_path, prefer, set_path, where
from services.cli.mcis import number
from services.cli.progress import McisTarget, Target, Waitable, wait_all, wait_gone

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
    # Scope flags given on this command line (they decide between spider's and tumblebug's kinds).
    given: frozenset[str] = frozenset()

    def kind(self, word: str) -> Kind:
        return find(word, prefer("namespace" in self.given, "connection" in self.given))


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
    given = frozenset(k for k, v in (("connection", connection), ("namespace", namespace)) if v)
    return Session(config, Client(config), scope, config.output, given)


def list_all(client: Client, kind: Kind, scope: dict[str, str], query: dict[str, str] | None = None,
             limit: int = 0, path: str = "", list_field: str = "") -> list[dict[str, Any]]:
    """Every item of a collection (at most `limit` when set), following page tokens."""
    items: list[dict[str, Any]] = []
    token = ""
    for _ in range(10_000):
        params: dict[str, Any] = {**(query or {}), **({"pageSize": PAGE_SIZE} if kind.paged else {})}
        if token:
            params["pageToken"] = token
        page = client.call("GET", path or kind.collection_path(scope), params=params)
        items += page.get(list_field or kind.list_field, [])
        token = page.get("nextPageToken", "")
        if not token or (limit and len(items) >= limit):
            break
    return items[:limit] if limit else items


def get_one(client: Client, kind: Kind, scope: dict[str, str], name: str) -> dict[str, Any]:
    if kind.listed_only:
        # A catalog entry's ID names its connection: list only that connection's part.
        query = {"connection": name.partition("+")[0]} if "connection" in kind.filters and "+" in name else None
        for item in list_all(client, kind, scope, query):
            if get_path(item, kind.name_path) == name:
                return item
        raise ApiError(f"{kind.name} {name!r} not found", 404, "NOT_FOUND")
    result: dict[str, Any] = client.call("GET", kind.item_path(scope, name))
    return result


# ---------------------------------------------------------------- get, describe


def _sorted(kind: Kind, items: list[dict[str, Any]], sort_by: str) -> list[dict[str, Any]]:
    """Items ordered by a column (its header or the start of it, any case: `price` is PRICE/H) or a
    JSON path; missing values last."""
    word = sort_by.strip().lower()
    exact = [p for h, p in kind.columns if h.lower() == word]
    prefixed = [p for h, p in kind.columns if h.lower().startswith(word)]
    path = (exact or (prefixed if len(prefixed) == 1 else [sort_by]))[0].partition("|")[0]

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
                                               list_field=c.list_field) for c in k.children}
        if s.output == "table":
            output.describe(console, k, item)
            for child in k.children:
                console.print(f"\n[bold]{child.title}[/bold]")
                output.rows(console, child.columns, children[child.list_field], child.title, one_line=True)
        else:
            output.dump(console, {**item, **children}, s.output)

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
            docs.append(_document(raw, f"{source} document {i}", default_scope, given))
    if not docs:
        raise ApiError("no resources in the given file(s)")
    return docs


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ApiError(f"cannot read {path}: {exc.strerror}") from None


def _document(raw: Any, where: str, default_scope: dict[str, str], given: frozenset[str]) -> Document:
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


def _sets(values: list[str] | None) -> Iterator[tuple[str, Any]]:
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ApiError(f"--set {item!r}: expected path=value")
        try:
            yield key, yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            yield key, value


def _create(s: Session, doc: Document, update: bool = False) -> tuple[str, dict[str, Any]]:
    """Create one resource: ('created' | 'unchanged' | 'configured', the resource). With `update`,
    an MCIS that exists gets the document's new groups and sizes."""
    if not doc.kind.creatable:
        raise ApiError(f"{doc.kind.plural} cannot be created; they come from the cloud")
    path, body, suffix = doc.kind.collection_path(doc.scope), doc.spec, ""
    if doc.kind.create_request is not None:
        try:
            suffix, body = doc.kind.create_request(doc.name, doc.spec)
        except ApiError as err:
            raise ApiError(f"{doc.where}: {doc.kind.name}/{doc.name}: {err.message}") from None
    try:
        try:
            return "created", s.client.call("POST", path + suffix, body)
        except ApiError as err:
            if err.status != 409 or err.code != "ALREADY_EXISTS":
                raise
        existing = get_one(s.client, doc.kind, doc.scope, doc.name)
        if update and doc.kind.name == "app":
            # An application's changed spec is its next revision (the controller rolls it out).
            before = existing.get("revision")
            existing = s.client.call("PUT", doc.kind.item_path(doc.scope, doc.name), body)
            return ("configured" if existing.get("revision") != before else "unchanged"), existing
        asks = mcis.changes(existing, suffix, body) if update and doc.kind.grouped else []
        for tail, request in asks:
            existing = s.client.call("POST", doc.kind.item_path(doc.scope, doc.name) + tail, request)
        return ("configured" if asks else "unchanged"), existing
    except ApiError as err:
        where = "" if doc.where == "command line" else f"{doc.where}: "
        raise ApiError(f"{where}{doc.kind.name}/{doc.name}: {err.message}", err.status, err.code, err.details,
                       err.request_id, err.request) from None


def _report(s: Session, results: list[tuple[Document, str, dict[str, Any]]]) -> None:
    if s.output == "table":
        for doc, what, item in results:
            if doc.kind.name == apikeys.KIND and what == "created":
                apikeys.show_created(console, item)
                continue
            console.print(f"{doc.kind.name}/{doc.name} {what}", highlight=False)
    else:
        data = [item for _, _, item in results]
        output.dump(console, data[0] if len(data) == 1 else data, s.output)


def _target(doc: Document, item: dict[str, Any]) -> Waitable:
    if doc.kind.grouped:
        return McisTarget(doc.kind, doc.scope, doc.name, number(item.get("generation")), doc.kind.ready_status)
    return Target(doc.kind, doc.scope, doc.name, doc.kind.ready_status)


def _wait(s: Session, targets: list[Waitable], timeout: float) -> None:
    failures = wait_all(s.client, err_console, targets, timeout)
    if failures:
        raise ApiError("; ".join(failures))


def _wait_ready(s: Session, results: list[tuple[Document, str, dict[str, Any]]], timeout: float) -> None:
    _wait(s, [_target(d, item) for d, _, item in results if d.kind.ready_status], timeout)


# ---------------------------------------------------------------- create, apply, delete


def create(kind: Annotated[str, typer.Argument(help="The kind, e.g. vm.")] = "",
           name: Annotated[str, typer.Argument(help="The new resource's name.")] = "",
           files: Files = None,
           set_values: Annotated[list[str] | None, typer.Option("--set", help="field.path=value (YAML value).")] = None,
           connection: Connection = "", namespace: Namespace = "", output_format: Output = "", wait: Wait = False,
           timeout: Timeout = 300.0,
           role: Annotated[str, typer.Option("--role", help="An apikey's role: admin, operator or viewer.")] = "",
           verbose: Verbose = False) -> None:
    """Create resources from flags (`create vm web-1 --set spec=… `, `create apikey ci --role viewer`) or
    from files (-f). An API key is printed once."""

    def body() -> None:
        s = session(connection, namespace, output_format)
        if files:
            docs = read_documents(files, s.scope, s.given)
        else:
            if not kind or not name:
                raise ApiError("give KIND and NAME, or -f FILE")
            spec: dict[str, Any] = {}
            for key, value in _sets(set_values):
                set_path(spec, key, value)
            apikeys.apply_flags(s.kind(kind).name, spec, role, namespace)
            docs = [_document({"kind": kind, "name": name, "spec": spec}, "command line", s.scope, s.given)]
        with s.client:
            results = []
            for doc in docs:
                what, item = _create(s, doc)
                if what == "unchanged":
                    raise ApiError(f"{doc.kind.name}/{doc.name} already exists", 409, "ALREADY_EXISTS")
                results.append((doc, what, item))
            _report(s, results)
            if wait:
                _wait_ready(s, results, timeout)

    run(verbose, body)


def apply(files: Files = None, connection: Connection = "", namespace: Namespace = "", output_format: Output = "",
          wait: Wait = False, timeout: Timeout = 300.0, verbose: Verbose = False) -> None:
    """Create what the files describe, in order; what exists already is left unchanged (an MCIS gets
    the file's new VM groups and sizes)."""

    def body() -> None:
        if not files:
            raise ApiError("give -f FILE (one or many YAML documents)")
        s = session(connection, namespace, output_format)
        docs = read_documents(files, s.scope, s.given)
        with s.client:
            results = []
            for doc in docs:
                what, item = _create(s, doc, update=True)
                results.append((doc, what, item))
            _report(s, results)
            if wait:
                _wait_ready(s, results, timeout)
                _follow_rollouts(s, [d for d, _, _ in results if d.kind.name == "app"], timeout)

    run(verbose, body)


def _follow_rollouts(s: Session, docs: list[Document], timeout: float) -> None:
    """Each applied application's rollout, with its progress bar, until it ends."""
    from services.cli.rollouts import follow, report

    for doc in docs:
        report(follow(s.client, doc.kind, doc.scope, doc.name, timeout), doc.name)


def delete(kind: Annotated[str, typer.Argument(help="The kind, e.g. vm.")] = "",
           name: Annotated[str, typer.Argument(help="The resource's name.")] = "",
           files: Files = None,
           force: Annotated[bool, typer.Option("--force", help="Forget the record even if the cloud refuses.")] = False,
           terminate: Annotated[bool, typer.Option(
               "--terminate", help="An MCIS, or a VM of one: terminate first, then delete.")] = False,
           in_mcis: Annotated[str, typer.Option("--mcis", help="A VM of this MCIS (its group shrinks by one).")] = "",
           connection: Connection = "", namespace: Namespace = "", wait: Wait = False, timeout: Timeout = 300.0,
           verbose: Verbose = False) -> None:
    """Delete one resource, or everything in the files (in reverse order)."""

    def body() -> None:
        s = session(connection, namespace)
        if in_mcis:
            if kind.lower() not in ("vm", "vms") or not name:
                raise ApiError("--mcis takes a VM: cbctl delete vm NAME --mcis MCIS")
            with s.client:
                mcis_vms.delete_vm(s.client, console, s.scope, in_mcis, name,
                                   mcis_vms.Removal(terminate, force, wait, timeout))
            return
        if files:
            docs = list(reversed(read_documents(files, s.scope, s.given)))
        elif kind and name:
            docs = [Document(s.kind(kind), s.scope, name, {}, "command line")]
        else:
            raise ApiError("give KIND and NAME, or -f FILE")
        if terminate and not any(d.kind.grouped for d in docs):
            raise ApiError("--terminate is for an MCIS")
        with s.client:
            for doc in docs:
                what = _delete(s, doc, force, terminate and doc.kind.grouped, wait, timeout)
                console.print(f"{doc.kind.name}/{doc.name} {what}", highlight=False)

    run(verbose, body)


def _delete(s: Session, doc: Document, force: bool, terminate: bool, wait: bool, timeout: float) -> str:
    if not doc.kind.deletable:
        raise ApiError(f"{doc.kind.plural} cannot be deleted")
    path = doc.kind.item_path(doc.scope, doc.name)
    params = {k: "true" for k, on in (("force", force), ("terminate", terminate)) if on} or None
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = s.client.call("DELETE", path, params=params)
            break
        except ApiError as err:
            if err.status == 404 and doc.where != "command line":
                return "already gone"  # deleting what a file describes is idempotent
            # A dependency the cloud still holds (a VM terminating) lets go soon: with --wait, retry.
            if wait and doc.kind.delete_retry and err.code == "FAILED_PRECONDITION" and time.monotonic() < deadline:
                time.sleep(0.5)
                continue
            raise
    if wait and doc.kind.grouped:
        # An MCIS goes once its VMs are terminated: follow them group by group.
        _wait(s, [McisTarget(doc.kind, doc.scope, doc.name, number(reply.get("generation")), "TERMINATED",
                             gone=True)], max(1.0, deadline - time.monotonic()))
    elif wait:
        wait_gone(s.client, err_console, doc.kind, doc.scope, doc.name, max(1.0, deadline - time.monotonic()))
    elif doc.kind.grouped:
        return "deleting"
    return "deleted"


Subgroup = Annotated[str, typer.Option("--subgroup", "-g", help="An MCIS: only this VM group.")]


def verb_command(verb: str) -> Callable[..., None]:
    """`cbctl <verb> KIND NAME`: a custom method, e.g. suspend a VM or an MCIS."""

    def command(kind: Annotated[str, typer.Argument(help="The kind, e.g. vm or mcis.")],
                name: Annotated[str, typer.Argument(help="The resource's name.")],
                subgroup: Subgroup = "",
                vm: Annotated[str, typer.Option("--vm", help="An MCIS: only this VM.")] = "",
                force: Annotated[bool, typer.Option("--force", help="An MCIS: skip the allowed-transition "
                                                                    "check.")] = False,
                connection: Connection = "", namespace: Namespace = "", wait: Wait = False,
                timeout: Timeout = 300.0, verbose: Verbose = False) -> None:
        def body() -> None:
            s = session(connection, namespace)
            k = s.kind(kind)
            if verb not in k.verbs:
                raise ApiError(f"{k.plural} cannot {verb}" + (f"; they can {', '.join(k.verbs)}" if k.verbs else ""))
            if (subgroup or vm or force) and not k.grouped:
                raise ApiError("--subgroup, --vm and --force are for an MCIS")
            request = {key: value for key, value in (("subgroup", subgroup), ("vm", vm), ("force", force)) if value}
            with s.client:
                reply = s.client.call("POST", f"{k.item_path(s.scope, name)}:{verb}", request)
                if not k.grouped:
                    console.print(f"{k.name}/{name} {str(reply.get('status', 'done')).lower()}", highlight=False)
                    if wait:
                        _wait(s, [Target(k, s.scope, name, k.verbs[verb])], timeout)
                    return
                console.print(f"{k.name}/{name} {verb} accepted", highlight=False)
                if wait:
                    _wait(s, [McisTarget(k, s.scope, name, number(reply.get("generation")), k.verbs[verb],
                                         only=subgroup)], timeout)
                    _settled_line(s, k, name)

        run(verbose, body)

    command.__doc__ = (f"{verb.capitalize()} a resource (a VM, an MCIS or one of its groups); "
                       "--wait follows it to the end.")
    return command


def _settled_line(s: Session, k: Kind, name: str) -> None:
    """`mcis/web Running:6 (R:6/6)`: where an MCIS ended up."""
    console.print(f"{k.name}/{name} {get_one(s.client, k, s.scope, name).get('status', '')}", highlight=False)


def scale(kind: Annotated[str, typer.Argument(help="mcis or app")], name: Annotated[str, typer.Argument()],
          size: Annotated[int, typer.Option("--size", help="An MCIS: VMs of the group; an app: its instances.",
                                            min=0)],
          subgroup: Annotated[str, typer.Option("--subgroup", "-g", help="An MCIS: the VM group.")] = "",
          namespace: Namespace = "", wait: Wait = False, timeout: Timeout = 300.0, verbose: Verbose = False) -> None:
    """Scale a VM group of an MCIS, or an application's instances; --wait follows it."""

    def body() -> None:
        s = session(namespace=namespace)
        k = s.kind(kind)
        if k.name == "app":
            from services.cli.rollouts import scale_app

            with s.client:
                scale_app(s, k, name, size, wait, timeout)
            return
        if not k.grouped:
            raise ApiError(f"{k.plural} cannot be scaled; an MCIS's VM groups and applications can")
        if not subgroup:
            raise ApiError("name the VM group to scale: --subgroup GROUP")
        with s.client:
            reply = s.client.call("POST", f"{k.item_path(s.scope, name)}/subgroups/{subgroup}:scale", {"size": size})
            console.print(f"{k.name}/{name} {subgroup} scaling to {size}", highlight=False)
            if wait:
                _wait(s, [McisTarget(k, s.scope, name, number(reply.get("generation")), "RUNNING", only=subgroup)],
                      timeout)
                _settled_line(s, k, name)

    run(verbose, body)
