"""Waiting for resources to settle, with progress bars driven by the `:watch` streams.

A plain resource gets one bar, moved by the status each message of its stream carries. An MCIS
gets a bar for itself and one per VM group: its record says *that* something changed, not where
(it holds counts for the whole MCIS only), so each change makes the follower read the VMs again
(ListMcisVms, paged), at most once per `REFRESH_MIN` seconds — or slower, twice the time the
last read took, so a huge MCIS costs the service a bounded share of its time.

Waiting for Running includes each VM's agent (when the MCIS installs agents): a VM is done once it is
Running and its agent reports healthy, so `cbctl exec` works the moment the wait ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from services.cli import mcis
from services.cli.client import ApiError, Client, StreamIdle
from services.cli.kinds import RestKind, get_path

# How far along a VM is, by the status it reports (the target itself is 100%).
_STAGE = {"CREATING": 0.4, "SUSPENDING": 0.5, "RESUMING": 0.5, "REBOOTING": 0.5, "TERMINATING": 0.5}
REFRESH_MIN = 0.3
# How often VMs are read while agents are coming up (they change nothing the stream would show).
AGENT_POLL_S = 0.5
VM_PAGE = 1000


class Waitable(Protocol):
    """Something to follow to its end with bars of its own; raises ApiError when it fails."""

    @property
    def label(self) -> str: ...

    def follow(self, client: Client, progress: Progress, timeout: float) -> None: ...


@dataclass(frozen=True)
class Target:
    """A resource to wait for, and the status it must reach."""

    kind: RestKind
    scope: dict[str, str]
    name: str
    want: str

    @property
    def label(self) -> str:
        return f"{self.kind.name}/{self.name}"

    def follow(self, client: Client, progress: Progress, timeout: float) -> None:
        task = progress.add_task(self.label, total=1.0, status="…")
        try:
            _follow(client, progress, task, self, timeout)
        except ApiError as err:
            progress.update(task, status=f"[red]{err.code or 'ERROR'}")
            raise


def wait_all(client: Client, console: Console, targets: Sequence[Waitable], timeout: float) -> list[str]:
    """Follow every target until it settles, each with its own bars.

    Returns the failures, one line each (empty when all settled)."""
    if not targets:
        return []
    failures: list[str] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:

        def follow(target: Waitable) -> None:
            try:
                target.follow(client, progress, timeout)
            except ApiError as err:
                failures.append(f"{target.label}: {err.one_line()}")

        # One thread per stream (bounded): each blocks on its own HTTP response.
        with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
            list(pool.map(follow, targets))
    return failures


def _follow(client: Client, progress: Progress, task: TaskID, target: Target, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    path = f"{target.kind.item_path(target.scope, target.name)}:watch"
    last = ""
    # The stream ends when the resource is gone; a new stream resumes after a dropped connection.
    while time.monotonic() < deadline:
        try:
            for _, item in client.events(path, params=target.kind.watch_params or None, until=deadline):
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
        except StreamIdle:
            break
    raise ApiError(f"{target.name} did not reach {target.want} within {timeout:.0f}s (it is {last or 'unknown'})",
                   code="DEADLINE_EXCEEDED")


# ---------------------------------------------------------------- an MCIS, group by group


@dataclass
class _Latest:
    """What the watch thread saw last, handed to the follower."""

    record: dict[str, Any] = field(default_factory=dict)
    ended: bool = False
    error: ApiError | None = None
    changed: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class McisTarget:
    """An MCIS to follow until the reconciler has acted on `generation` (or, with `gone`, until it
    is deleted), with one bar per VM group. `want` is the status the VMs in scope head for
    ("" = any settled one); `only` limits that scope to one group."""

    kind: RestKind
    scope: dict[str, str]
    name: str
    generation: int
    want: str = "RUNNING"
    only: str = ""
    gone: bool = False
    # Bars by group ("" = the MCIS itself), and each bar's last total.
    tasks: dict[str, TaskID] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    initial: dict[str, int] | None = None

    @property
    def label(self) -> str:
        return f"{self.kind.name}/{self.name}"

    @property
    def path(self) -> str:
        return self.kind.item_path(self.scope, self.name)

    def follow(self, client: Client, progress: Progress, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.tasks[""] = progress.add_task(self.label, total=None, status="…")
        latest = _Latest()
        # The stream blocks its thread; a daemon thread, since a settled MCIS's stream stays open.
        threading.Thread(target=self._watch, args=(client, latest), daemon=True).start()
        interval, fetched = REFRESH_MIN, 0.0
        agents = 0  # VMs whose agent is still coming up, at the last read
        while True:
            # Agents report to dragonfly, not to the MCIS record: while some are coming up, the VMs are
            # read again every interval even when the record does not change.
            limit = max(deadline - time.monotonic(), 0.0)
            changed = latest.changed.wait(min(limit, AGENT_POLL_S) if agents else limit)
            if (not changed and not agents) or time.monotonic() > deadline:
                raise ApiError(f"{self.name} did not settle within {timeout:.0f}s "
                               f"(it is {latest.record.get('status', 'unknown')})", code="DEADLINE_EXCEEDED")
            # Changes that come within the interval are read together.
            time.sleep(max(0.0, min(fetched + interval - time.monotonic(), deadline - time.monotonic())))
            with latest.lock:
                latest.changed.clear()
                record, ended, error = dict(latest.record), latest.ended, latest.error
            if error is not None:
                raise error
            if ended:
                self._finish_gone(progress, record)
                return
            started = time.monotonic()
            vms = self._vms(client)
            fetched, interval = time.monotonic(), max(REFRESH_MIN, 2 * (time.monotonic() - started))
            if vms is None:
                continue  # deleted between the record and its VMs: the stream says so next
            self._render(progress, record, vms)
            agents = mcis.agents_waited(vms) if self.want == "RUNNING" else 0
            if not self.gone and mcis.settled(record, self.generation) and not agents:
                self._judge(record, vms)
                return

    def _watch(self, client: Client, latest: _Latest) -> None:
        try:
            for _, item in client.events(f"{self.path}:watch"):
                with latest.lock:
                    latest.record = item
                latest.changed.set()
            with latest.lock:
                latest.ended = True
        except ApiError as err:
            with latest.lock:
                if err.code == "NOT_FOUND" and self.gone:
                    latest.ended = True
                else:
                    latest.error = err
        except Exception as exc:  # the command ended and closed the client under the stream
            with latest.lock:
                latest.error = ApiError(f"the watch stopped: {exc}")
        latest.changed.set()

    def _vms(self, client: Client) -> list[dict[str, Any]] | None:
        """Every VM of the MCIS, page by page; None when it is gone."""
        vms: list[dict[str, Any]] = []
        token = ""
        while True:
            params: dict[str, Any] = {"pageSize": VM_PAGE, **({"pageToken": token} if token else {})}
            try:
                page = client.call("GET", f"{self.path}/vms", params=params)
            except ApiError as err:
                if err.status == 404:
                    return None
                raise
            vms += page.get("vms", [])
            token = page.get("nextPageToken", "")
            if not token:
                return vms

    def _render(self, progress: Progress, record: dict[str, Any], vms: list[dict[str, Any]]) -> None:
        if self.gone and self.initial is None:
            self.initial = {}
            for vm in vms:
                group = str(vm.get("subgroup", ""))
                self.initial[group] = self.initial.get(group, 0) + 1
        rows = mcis.groups(record, vms, self.want, self.only, self.initial)
        for row in rows:
            if row.name not in self.tasks:
                self.tasks[row.name] = progress.add_task(f"  {row.name} ({row.connection})", total=1, status="")
            self.totals[row.name] = max(row.total, 1)
            progress.update(self.tasks[row.name], total=self.totals[row.name], completed=row.done,
                            status=f"{row.done}/{row.total}  {row.words()}")
        action = str(record.get("targetAction", "")).removeprefix("ACTION_").lower()
        doing = "" if action in ("none", "unspecified", "") else f"  ({action})"
        coming = mcis.agents_waited(vms) if self.want == "RUNNING" else 0
        if coming:
            doing += f"  (waiting for {coming} agent{'s' if coming != 1 else ''} to report healthy)"
        self.totals[""] = max(sum(r.total for r in rows), 1)
        progress.update(self.tasks[""], total=self.totals[""], completed=sum(r.done for r in rows),
                        status=f"{record.get('status', '')}{doing}")

    def _finish_gone(self, progress: Progress, record: dict[str, Any]) -> None:
        if not self.gone:
            # A rollback of the request that made it deletes it; its message says why.
            why = f": {record['message']}" if record.get("message") else ""
            raise ApiError(f"{self.name} is gone (last status {record.get('status') or 'unknown'}){why}",
                           code="NOT_FOUND")
        for key, task in self.tasks.items():
            total = self.totals.get(key, 1)
            progress.update(task, total=total, completed=total, status="deleted" if not key else "gone")

    def _judge(self, record: dict[str, Any], vms: list[dict[str, Any]]) -> None:
        failed = mcis.failures(vms)
        if failed:
            raise ApiError(f"{self.name} settled as {record.get('status', '')}: {failed}", code="FAILED")


def wait_settled(client: Client, console: Console, targets: Sequence[Waitable], timeout: float) -> None:
    """`wait_all`, with every failure in one ApiError."""
    failures = wait_all(client, console, targets, timeout)
    if failures:
        raise ApiError("; ".join(failures))


def wait_gone(client: Client, console: Console, kind: RestKind, scope: dict[str, str], name: str, timeout: float) -> None:
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
