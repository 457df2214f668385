"""`cbctl exec`: one command line on every VM of an MCIS (or a group, or one VM), output per VM.

As with ssh, the words after `--` are joined with spaces and run by each VM's shell, so pipes and
`$VARS` work when quoted: `cbctl exec web -- 'hostname; uptime'`. The exit status is 0 when every
VM ran it and exited 0, else 1, with a one-line summary of the others on stderr.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.markup import escape

from services.cli import output
from services.cli.client import ApiError
from services.cli.options import Namespace, Output, Verbose
from services.cli.session import console, err_console, run, session


@dataclass(frozen=True)
class VmOutcome:
    """How the command went on one VM, as the response tells it."""

    vm: str
    exit_code: int
    stdout: str
    stderr: str
    problem: str  # why it did not run or did not finish ("" when it exited by itself)
    duration_s: float
    via: str

    @classmethod
    def of(cls, item: dict[str, Any]) -> VmOutcome:
        result = item.get("result") or {}
        problem = item.get("error") or result.get("error") or ""
        if not problem and result.get("timedOut"):
            problem = "timed out"
        for stream in ("stdout", "stderr"):
            if result.get(f"{stream}Truncated"):
                problem = "; ".join(p for p in (problem, f"{stream} cut at the output limit") if p)
        return cls(str(item.get("vm", "")), int(result.get("exitCode", 0)), str(result.get("stdout", "")),
                   str(result.get("stderr", "")), problem, float(result.get("durationS", 0.0)),
                   str(item.get("via", "")))

    @property
    def ok(self) -> bool:
        return not self.problem and self.exit_code == 0

    def headline(self) -> str:
        # A negative code is the signal that ended it (a timeout's kill): the problem says more.
        how = ", ".join(w for w in (f"exit {self.exit_code}" if self.exit_code > 0 or not self.problem else "",
                                    self.problem) if w)
        via = f" via {self.via}" if self.via else ""
        return f"{self.vm}: {how} ({self.duration_s:.2f} s{via})"


def exec_(name: Annotated[str, typer.Argument(help="The MCIS.")],
          command: Annotated[list[str], typer.Argument(help="The command line, after --.")],
          subgroup: Annotated[str, typer.Option("--subgroup", "-g", help="Only this VM group.")] = "",
          vm: Annotated[str, typer.Option("--vm", help="Only this VM.")] = "",
          timeout: Annotated[float, typer.Option("--timeout", help="Seconds the command may run on each VM.",
                                                 min=0.1, max=3600)] = 60.0,
          namespace: Namespace = "", output_format: Output = "", verbose: Verbose = False) -> None:
    """Run a command on the VMs of an MCIS (through their agents; SSH for VMs without one); prints each VM's output."""

    def body() -> None:
        s = session(namespace=namespace, output_format=output_format)
        line = " ".join(command).strip()
        if not line:
            raise ApiError("give the command after --, e.g. cbctl exec web -- hostname")
        request = {"command": line, "timeoutS": timeout,
                   **{k: v for k, v in (("subgroup", subgroup), ("vm", vm)) if v}}
        with s.client:
            reply = s.client.call("POST", f"{s.kind('mcis').item_path(s.scope, name)}:command", request,
                                  timeout=timeout + 15.0)
        results = reply.get("results") or []
        if s.output in ("json", "yaml"):
            output.dump(console, reply, s.output)
        else:
            show(results)
        failed = [o for o in map(VmOutcome.of, results) if not o.ok]
        if failed:
            err_console.print(f"{len(failed)} of {len(results)} VMs did not succeed: "
                              + "; ".join(o.headline() for o in failed[:5]) + (" …" if len(failed) > 5 else ""),
                              highlight=False, soft_wrap=True)
            raise typer.Exit(1)

    run(verbose, body)


def show(results: list[dict[str, Any]]) -> None:
    """Each VM's headline, then its output: stdout as it is, stderr in red."""
    for outcome in map(VmOutcome.of, results):
        colour = "green" if outcome.ok else "red"
        console.print(f"[bold {colour}]== {escape(outcome.headline())}[/]", highlight=False, soft_wrap=True)
        if outcome.stdout:
            console.out(outcome.stdout.rstrip("\n"), highlight=False)
        if outcome.stderr:
            console.print(f"[red]{escape(outcome.stderr.rstrip())}[/red]", highlight=False, soft_wrap=True)
