"""Waiting for resources to settle, with progress bars driven by the `:watch` streams."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from services.cli.client import ApiError, Client
from services.cli.kinds import Kind, get_path

# How far along a VM is, by the status it reports (the target itself is 100%).
_STAGE = {"CREATING": 0.4, "SUSPENDING": 0.5, "RESUMING": 0.5, "REBOOTING": 0.5, "TERMINATING": 0.5}


@dataclass(frozen=True)
class Target:
    """A resource to wait for, and the status it must reach."""

    kind: Kind
    scope: dict[str, str]
    name: str
    want: str


def wait_all(client: Client, console: Console, targets: Sequence[Target], timeout: float) -> list[str]:
    """Follow each target's watch stream until it reaches its status; one progress bar each.

    Returns the failures, one line each (empty when all settled)."""
    if not targets:
        return []
    failures: list[str] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        tasks = [progress.add_task(f"{t.kind.name}/{t.name}", total=1.0, status="…") for t in targets]

        def follow(target: Target, task: TaskID) -> None:
            try:
                _follow(client, progress, task, target, timeout)
            except ApiError as err:
                progress.update(task, status=f"[red]{err.code or 'ERROR'}")
                failures.append(f"{target.kind.name}/{target.name}: {err.one_line()}")

        # One thread per stream (bounded): each blocks on its own HTTP response.
        with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
            list(pool.map(follow, targets, tasks))
    return failures


def _follow(client: Client, progress: Progress, task: TaskID, target: Target, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    path = f"{target.kind.item_path(target.scope, target.name)}:watch"
    last = ""
    # The stream ends when the resource is gone; a new stream resumes after a dropped connection.
    while time.monotonic() < deadline:
        for _, item in client.events(path, params={"intervalSeconds": "0.5"}):
            last = str(get_path(item, "status") or "")
            progress.update(task, completed=1.0 if last == target.want else _STAGE.get(last, 0.2), status=last)
            if last == target.want:
                return
            if last in target.kind.failed_statuses:
                raise ApiError(f"{target.name} is {last}", code=last)
            if time.monotonic() > deadline:
                break
        else:
            raise ApiError(f"{target.name} is gone (last status {last or 'unknown'})", code="NOT_FOUND")
    raise ApiError(f"{target.name} did not reach {target.want} within {timeout:.0f}s (it is {last or 'unknown'})",
                   code="DEADLINE_EXCEEDED")


def wait_gone(client: Client, console: Console, kind: Kind, scope: dict[str, str], name: str, timeout: float) -> None:
    """Poll until GET says 404."""
    deadline = time.monotonic() + timeout
    with console.status(f"waiting for {kind.name}/{name} to go …"):
        while True:
            try:
                client.call("GET", kind.item_path(scope, name))
            except ApiError as err:
                if err.status == 404:
                    return
                raise
            if time.monotonic() > deadline:
                raise ApiError(f"{kind.name}/{name} still exists after {timeout:.0f}s", code="DEADLINE_EXCEEDED")
            time.sleep(0.5)
