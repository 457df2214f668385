"""The options every cbctl resource command takes (also accepted before the command, e.g.
`cbctl -v get vms`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Connection = Annotated[str, typer.Option("--connection", "-c", help="Connection of connection-scoped kinds.")]
Namespace = Annotated[str, typer.Option("--namespace", "-n", help="Namespace of namespace-scoped kinds.")]
Output = Annotated[str, typer.Option("--output", "-o", help="table, json or yaml.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="On error, show the request and the details.")]
Wait = Annotated[bool, typer.Option("--wait", "-w", help="Wait until the resource settles (progress bars).")]
Timeout = Annotated[float, typer.Option("--timeout", help="Seconds to wait with --wait.")]
Files = Annotated[list[Path] | None, typer.Option("--filename", "-f", help="YAML file(s) of resources; - is stdin.")]
Subgroup = Annotated[str, typer.Option("--subgroup", "-g", help="An MCIS: only this VM group.")]
