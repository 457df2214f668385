"""`cbctl create`, `apply` and `delete`: resources from flags or documents, created in order
(deleted in reverse), optionally followed with progress bars until they settle."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from services.cli import apikeys, mcis, mcis_vms, output
from services.cli.client import ApiError
from services.cli.documents import Document, document, parse_sets, read_documents
from services.cli.kinds import set_path
from services.cli.listing import get_one
from services.cli.mcis import number
from services.cli.options import Connection, Files, Namespace, Output, Timeout, Verbose, Wait
from services.cli.progress import McisTarget, Target, Waitable, wait_gone, wait_settled
from services.cli.session import Session, console, err_console, run, session


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


def _wait_ready(s: Session, results: list[tuple[Document, str, dict[str, Any]]], timeout: float) -> None:
    wait_settled(s.client, err_console, [_target(d, item) for d, _, item in results if d.kind.ready_status], timeout)


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
            for key, value in parse_sets(set_values):
                set_path(spec, key, value)
            apikeys.apply_flags(s.kind(kind).name, spec, role, namespace)
            docs = [document({"kind": kind, "name": name, "spec": spec}, "command line", s.scope, s.given)]
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
        target = McisTarget(doc.kind, doc.scope, doc.name, number(reply.get("generation")), "TERMINATED", gone=True)
        wait_settled(s.client, err_console, [target], max(1.0, deadline - time.monotonic()))
    elif wait:
        wait_gone(s.client, err_console, doc.kind, doc.scope, doc.name, max(1.0, deadline - time.monotonic()))
    elif doc.kind.grouped:
        return "deleting"
    return "deleted"
