"""cbctl's application commands beyond the plain kind: `rollout status|undo|promote|abort`,
`logs app`, and following a rollout with a progress bar (driven by the app's `:watch` stream).

A rollout's bar counts the instances of the revision being rolled out that are healthy, out of
the desired count; its status is the controller's own step line ("2/4 instances of revision 3
healthy", "canaries healthy, waiting for promotion"). It ends when the revision is available, when
the rollout pauses for promotion, or when it fails (and was rolled back).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from services.cli.client import ApiError, Client, StreamIdle
from services.cli.kinds import RestKind, get_path
from services.cli.mcis import number
from services.cli.options import Namespace, Timeout, Verbose
from services.cli.session import console, err_console, run, session

rollout = typer.Typer(help="Follow, undo or promote an application's rollout.", no_args_is_help=True)

AppName = Annotated[str, typer.Argument(help="The application: NAME or app/NAME.")]


def _name(word: str) -> str:
    kind, _, name = word.rpartition("/")
    if kind and kind not in ("app", "apps", "application"):
        raise ApiError(f"{word!r}: rollouts are of applications (app/NAME)")
    return name


@dataclass(frozen=True)
class Position:
    """Where a rollout stands, read from one Application record (REST/JSON)."""

    revision: int
    phase: str
    step: str
    healthy: int
    desired: int
    stable: int
    failed: int
    message: str

    @classmethod
    def of(cls, app: dict[str, Any]) -> Position:
        def num(path: str) -> int:
            return number(get_path(app, path))

        return cls(num("revision"), str(get_path(app, "status.phase") or ""), str(get_path(app, "status.rollout.step")
                   or ""), num("status.counts.healthy"), num("status.counts.desired"),
                   num("status.stableRevision"), num("status.failedRevision"), str(get_path(app, "status.message")
                                                                                  or ""))

    def done(self, started: int, desired: int = 0) -> str | None:
        """"available", "paused", "failed" once the rollout of `started` ended (with `desired`
        instances wanted, when given), else None."""
        if desired and self.desired != desired:
            return None  # the controller has not acted on the change yet
        if self.failed and self.failed >= started:
            return "failed"
        if self.phase == "PAUSED":
            return "paused"
        if self.phase == "AVAILABLE" and self.stable == self.revision and self.healthy >= self.desired:
            return "available"
        return None

    def line(self) -> str:
        return self.step or self.message or self.phase.lower()


def follow(client: Client, kind: RestKind, scope: dict[str, str], name: str, timeout: float,
           started: int = 0, desired: int = 0) -> Position:
    """Show the rollout of app `name` as a bar until it ends (see Position.done); raises ApiError
    when it failed or the time ran out."""
    path = f"{kind.item_path(scope, name)}:watch"
    deadline = time.monotonic() + timeout
    last: Position | None = None
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task(f"app/{name}", total=1, status="…")
        while time.monotonic() < deadline:
            try:
                for _, item in client.events(path, until=deadline):
                    last = Position.of(item)
                    started = started or last.revision
                    progress.update(task, total=max(last.desired, 1), completed=min(last.healthy, last.desired),
                                    description=f"app/{name} r{last.revision}", status=last.line())
                    end = last.done(started, desired)
                    if end == "failed":
                        raise ApiError(f"app/{name}: revision {last.failed} failed and was rolled back to "
                                       f"revision {last.revision}: {last.message or last.step}",
                                       code="ROLLOUT_FAILED")
                    if end is not None or time.monotonic() > deadline:
                        break
                else:
                    raise ApiError(f"app/{name} is gone", code="NOT_FOUND")
            except StreamIdle:
                break  # nothing changed until the deadline: say where it stands
            if last is not None and last.done(started, desired):
                return last
    raise ApiError(f"app/{name}: the rollout did not end within {timeout:.0f}s"
                   + (f" ({last.line()})" if last else ""), code="DEADLINE_EXCEEDED")


def report(pos: Position, name: str) -> None:
    if pos.phase == "PAUSED":
        console.print(f"app/{name} paused: {pos.line()} (cbctl rollout promote {name})", highlight=False)
    else:
        console.print(f"app/{name} revision {pos.revision} available: {pos.healthy}/{pos.desired} healthy",
                      highlight=False)


@rollout.command()
def status(app: AppName, namespace: Namespace = "", watch: Annotated[bool, typer.Option(
        "--watch/--no-watch", help="Follow the rollout with a progress bar until it ends.")] = True,
           timeout: Timeout = 600.0, verbose: Verbose = False) -> None:
    """Where the application's rollout stands; follows it to its end (progress bar) by default."""

    def body() -> None:
        s = session(namespace=namespace)
        k, name = s.kind("app"), _name(app)
        with s.client:
            if not watch:
                pos = Position.of(s.client.call("GET", k.item_path(s.scope, name)))
                console.print(f"app/{name} revision {pos.revision} {pos.phase}: {pos.line()}", highlight=False)
                return
            report(follow(s.client, k, s.scope, name, timeout), name)

    run(verbose, body)


@rollout.command()
def undo(app: AppName, to_revision: Annotated[int, typer.Option(
        "--to-revision", help="The revision to go back to (default: the last stable one).", min=0)] = 0,
         namespace: Namespace = "", wait: Annotated[bool, typer.Option("--wait", "-w", help="Follow it.")] = False,
         timeout: Timeout = 600.0, verbose: Verbose = False) -> None:
    """Roll the application back to an earlier revision (a new rollout of that spec)."""

    def body() -> None:
        s = session(namespace=namespace)
        k, name = s.kind("app"), _name(app)
        with s.client:
            reply = s.client.call("POST", f"{k.item_path(s.scope, name)}:rollback", {"revision": to_revision})
            console.print(f"app/{name} rolling back (revision {reply.get('revision')})", highlight=False)
            if wait:
                report(follow(s.client, k, s.scope, name, timeout, number(reply.get("revision"))), name)

    run(verbose, body)


def _verb(verb: str, said: str) -> Any:
    def command(app: AppName, namespace: Namespace = "", verbose: Verbose = False) -> None:
        def body() -> None:
            s = session(namespace=namespace)
            k, name = s.kind("app"), _name(app)
            with s.client:
                s.client.call("POST", f"{k.item_path(s.scope, name)}:{verb}", {})
                console.print(f"app/{name} {said}", highlight=False)

        run(verbose, body)

    return command


rollout.command(name="promote", help="Promote the canaries: the rest of the instances follow.")(
    _verb("promote", "promoted"))
rollout.command(name="abort", help="Stop the rollout and go back to the stable revision.")(
    _verb("abort", "rollout aborted"))


def logs(kind: Annotated[str, typer.Argument(help="app")], name: Annotated[str, typer.Argument()],
         instance: Annotated[str, typer.Option("--instance", "-i", help="One instance (default: every one).")] = "",
         tail: Annotated[int, typer.Option("--tail", help="Lines per instance and stream.", min=1)] = 50,
         namespace: Namespace = "", verbose: Verbose = False) -> None:
    """The last lines each instance of an application wrote (stdout, then stderr)."""

    def body() -> None:
        s = session(namespace=namespace)
        k = s.kind(kind)
        if k.name != "app":
            raise ApiError(f"logs are kept for applications (cbctl logs app NAME), not {k.plural}")
        with s.client:
            ids = [instance] if instance else [
                str(i.get("id")) for i in s.client.call("GET", f"{k.item_path(s.scope, name)}/instances")
                .get("instances", [])]
            missed = 0
            for iid in ids:
                try:
                    got = s.client.call("GET", f"{k.item_path(s.scope, name)}/instances/{iid}/logs",
                                        params={"tailLines": tail})
                except ApiError as err:
                    if instance:
                        raise
                    # One instance's logs out of reach (drained since the listing, its VM's agent away)
                    # must not hide the others': said on stderr, and the exit status says it.
                    if err.code != "NOT_FOUND":
                        err_console.print(f"[{iid}] no logs: {err}", highlight=False, markup=False, soft_wrap=True)
                        missed += 1
                    continue
                for stream in ("stdout", "stderr"):
                    for line in str(got.get(stream, "")).splitlines():
                        (console if stream == "stdout" else err_console).print(
                            f"[{iid}] {line}", highlight=False, markup=False, soft_wrap=True)
            if missed:
                raise ApiError(f"the logs of {missed} of {len(ids)} instances could not be read (above)",
                               code="UNAVAILABLE")

    run(verbose, body)


def scale_app(s: Any, k: RestKind, name: str, instances: int, wait: bool, timeout: float) -> None:
    """`cbctl scale app NAME --size N`: N instances (then the bar follows them with --wait)."""
    reply = s.client.call("POST", f"{k.item_path(s.scope, name)}:scale", {"instances": instances})
    console.print(f"app/{name} scaling to {instances} instances", highlight=False)
    if wait:
        report(follow(s.client, k, s.scope, name, timeout, number(reply.get("revision")), instances), name)
