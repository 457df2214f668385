"""`cbctl top`: the metrics of an MCIS's VMs as a table that refreshes itself.

Each refresh asks tumblebug for the MCIS's VMs and, per metric group, the last stored point of
every VM (dragonfly's `aggregate=last`), so what it shows is what the agents last sent; AGENT
(healthy or not, from its heartbeats) is how a silent agent stands out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from services.cli import output
from services.cli.client import Client
from services.cli.kinds import RestKind
from services.cli.listing import list_all
from services.cli.options import Namespace, Output, Verbose
from services.cli.session import console, run, session

# The metric groups a row shows, and the fields it takes from each.
GROUPS = ("cpu", "memory", "diskio", "network")
SORTS = ("cpu", "memory", "name")


@dataclass
class VmRow:
    """One VM's line: its status, its agent, and its last metrics (None: none stored yet)."""

    vm: str
    subgroup: str
    status: str
    agent: str
    cpu_percent: float | None = None
    memory_percent: float | None = None
    memory_used_bytes: float | None = None
    disk_read_bytes_per_second: float | None = None
    disk_write_bytes_per_second: float | None = None
    net_recv_bytes_per_second: float | None = None
    net_sent_bytes_per_second: float | None = None

    def take(self, group: str, values: dict[str, float]) -> None:
        """Fill the columns `group` feeds from its last point."""
        if group == "cpu":
            self.cpu_percent = values.get("utilization_percent")
        elif group == "memory":
            self.memory_percent = values.get("utilization_percent")
            self.memory_used_bytes = values.get("used_bytes")
        elif group == "diskio":
            self.disk_read_bytes_per_second = values.get("read_bytes_per_second")
            self.disk_write_bytes_per_second = values.get("write_bytes_per_second")
        elif group == "network":
            self.net_recv_bytes_per_second = values.get("recv_bytes_per_second")
            self.net_sent_bytes_per_second = values.get("sent_bytes_per_second")


def sample(client: Client, mcis_kind: RestKind, mcis_path: str) -> list[VmRow]:
    """Every VM of the MCIS with its last stored metrics."""
    rows = {vm["name"]: VmRow(vm["name"], vm.get("subgroup", ""), str(vm.get("status", "")).capitalize(),
                              vm.get("agentStatus", ""))
            for vm in list_all(client, mcis_kind, {}, path=f"{mcis_path}/vms", list_field="vms")
            if not vm.get("removing")}
    for group in GROUPS:
        got = client.call("GET", f"{mcis_path}/metrics/{group}",
                          params={"period": "m", "aggregate": "last", "duration": "2m"})
        for series in got.get("series") or []:
            row, points = rows.get(series.get("vm", "")), series.get("points") or []
            if row is not None and points:
                last = max(points, key=lambda p: p.get("time", ""))
                row.take(group, last.get("values") or {})
    return list(rows.values())


def _order(rows: list[VmRow], by: str) -> list[VmRow]:
    def key(row: VmRow) -> tuple[int, float, str]:
        value = {"cpu": row.cpu_percent, "memory": row.memory_percent}.get(by)
        if by == "name":
            return (0, 0.0, row.vm)
        # Highest first; VMs with nothing stored last.
        return (1, 0.0, row.vm) if value is None else (0, -value, row.vm)

    return sorted(rows, key=key)


def human_bytes(value: float | None) -> str:
    """Short, as top and docker stats print them: `614M`, `95K`, `1.2G`."""
    if value is None:
        return "-"
    for unit in ("B", "K", "M", "G", "T"):
        if abs(value) < 1024 or unit == "T":
            return (f"{value:.0f}" if unit == "B" or abs(value) >= 100 else f"{value:.1f}") + unit
        value /= 1024
    return "-"  # unreachable: T ends the loop


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(title: str, rows: list[VmRow]) -> Table:
    """The rows as a table under a title line with the averages."""
    cpus = [r.cpu_percent for r in rows if r.cpu_percent is not None]
    average = f", CPU avg {sum(cpus) / len(cpus):.1f}%" if cpus else ""
    out = Table(title=f"{title}: {len(rows)} VMs{average}, {time.strftime('%H:%M:%S')}", title_justify="left",
                box=None, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold")
    # Units in the headers keep the cells short: the table fits 80 columns.
    for header in ("VM", "GROUP", "STATUS", "AGENT", "CPU%", "MEM%", "USED", "RD/s", "WR/s", "RX/s", "TX/s"):
        out.add_column(header, justify="right" if header not in ("VM", "GROUP", "STATUS", "AGENT") else "left",
                       no_wrap=True)
    for r in rows:
        out.add_row(r.vm, r.subgroup, r.status, r.agent or "-", _percent(r.cpu_percent),
                    _percent(r.memory_percent), human_bytes(r.memory_used_bytes),
                    human_bytes(r.disk_read_bytes_per_second), human_bytes(r.disk_write_bytes_per_second),
                    human_bytes(r.net_recv_bytes_per_second), human_bytes(r.net_sent_bytes_per_second))
    return out


def top(name: Annotated[str, typer.Argument(help="The MCIS.")],
        interval: Annotated[float, typer.Option("--interval", "-i", help="Seconds between refreshes.",
                                                min=0.5)] = 2.0,
        count: Annotated[int, typer.Option("--count", help="Stop after this many refreshes (0: until Ctrl-C).",
                                           min=0)] = 0,
        once: Annotated[bool, typer.Option("--once", help="Print once and stop (as --count 1).")] = False,
        sort: Annotated[str, typer.Option("--sort", help=f"Order rows by {', '.join(SORTS)}.")] = "cpu",
        namespace: Namespace = "", output_format: Output = "", verbose: Verbose = False) -> None:
    """Show the metrics of an MCIS's VMs as a live table (CPU, memory, disk and network rates)."""

    def body() -> None:
        s = session(namespace=namespace, output_format=output_format)
        if sort not in SORTS:
            raise typer.BadParameter(f"--sort must be one of {', '.join(SORTS)}")
        mcis = s.kind("mcis")
        path = mcis.item_path(s.scope, name)
        rounds = 1 if once else count
        title = f"mcis/{name}"
        with s.client:
            if s.output in ("json", "yaml") or not console.is_terminal:
                for i in _rounds(rounds, interval):
                    rows = _order(sample(s.client, mcis, path), sort)
                    if s.output == "json":
                        print(json.dumps([asdict(r) for r in rows]), flush=True)
                    elif s.output == "yaml":
                        print("---") if i else None
                        output.dump(console, [asdict(r) for r in rows], "yaml")
                    else:
                        console.print(table(title, rows))
                return
            with Live(console=console, auto_refresh=False, screen=False) as live:
                for _ in _rounds(rounds, interval):
                    live.update(table(title, _order(sample(s.client, mcis, path), sort)), refresh=True)

    try:
        run(verbose, body)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _rounds(rounds: int, interval: float) -> Iterator[int]:
    """0, 1, 2, … (`rounds` of them, or forever when 0), sleeping `interval` between them."""
    i = 0
    while not rounds or i < rounds:
        if i:
            time.sleep(interval)
        yield i
        i += 1
