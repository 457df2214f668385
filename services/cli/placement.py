"""cbctl for placement: `cbctl recommend spec …`, `cbctl plan -f mcis.yaml`, `cbctl benchmark mcis web`.

(`cbctl get benchmarks` is the `benchmark` kind of `kinds`.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from services.cli import options, output, session
from services.cli.client import ApiError

console = Console()


def _weights(pairs: list[str]) -> dict[str, float]:
    out = {}
    for p in pairs:
        name, sep, value = p.partition("=")
        try:
            out[name] = float(value) if sep else 1.0
        except ValueError:
            raise ApiError(f"--weight {p!r}: give NAME=NUMBER, e.g. cost=1") from None
    return out


def recommend(kind: Annotated[str, typer.Argument(help="spec")],
              vcpu: Annotated[int, typer.Option("--vcpu", help="At least this many vCPUs.")] = 0,
              memory: Annotated[float, typer.Option("--memory", help="At least this many GiB.")] = 0.0,
              price: Annotated[float, typer.Option("--max-price", help="At most this price per hour.")] = 0.0,
              provider: Annotated[list[str] | None, typer.Option("--provider")] = None,
              region: Annotated[list[str] | None, typer.Option("--region")] = None,
              weight: Annotated[list[str] | None, typer.Option(
                  "--weight", "-w", help="Weigher=weight: cost, performance, performance_per_cost, location, "
                                         "latency (repeat).")] = None,
              metric: Annotated[str, typer.Option("--metric", help="Performance metric (cpu_multi…).")] = "",
              limit: Annotated[int, typer.Option("--limit")] = 10,
              output_format: options.Output = "", verbose: options.Verbose = False) -> None:
    """Rank catalog specs: filters, then the weighers' weighted sum; `*` marks an estimate."""

    def body() -> None:
        if kind not in ("spec", "specs"):
            raise ApiError("only specs are recommended: cbctl recommend spec …")
        s = session.session(output_format=output_format)
        req: dict[str, Any] = {"requirements": {"vcpuMin": vcpu, "memoryGibMin": memory, "priceMax": price,
                                                "providers": provider or [], "regions": region or []},
                               "weights": _weights(weight or []), "options": {"metric": metric}, "limit": limit}
        with s.client:
            reply = s.client.call("POST", "/tumblebug/v1/recommendations:spec", req)
        items = reply.get("specs", [])
        if s.output != "table":
            output.dump(console, reply, s.output)
            return
        for item in items:
            item["score"] = f"{float(item.get('score', 0)):.3f}"
            item["weighers"] = " ".join(f"{w['weigher']}={w.get('score', 0):.2f}{'*' if w.get('estimated') else ''}"
                                        for w in item.get("scores", []))
        output.rows(console, (("SPEC", "spec.id"), ("VCPU", "spec.vcpu"), ("PRICE/H", "spec.pricePerHour"),
                              ("SCORE", "score"), ("WEIGHERS", "weighers")), items, "specs")

    session.run(verbose, body)


def plan(file: Annotated[Path, typer.Option("--file", "-f", help="An MCIS document with a `placement`.")],
         namespace: options.Namespace = "", output_format: options.Output = "",
         verbose: options.Verbose = False) -> None:
    """Where each VM would go and what it would cost (a dry run; nothing is made)."""

    def body() -> None:
        s = session.session(namespace=namespace, output_format=output_format)
        doc = yaml.safe_load(file.read_text())
        spec = doc.get("spec", doc) if isinstance(doc, dict) else None
        if not isinstance(spec, dict) or "placement" not in spec:
            raise ApiError(f"{file}: no `placement` in the document (or its `spec`)")
        ns = (doc.get("metadata") or {}).get("namespace") or s.scope["namespace"]
        if not ns:
            raise ApiError("give --namespace (or metadata.namespace)")
        with s.client:
            reply = s.client.call("POST", f"/tumblebug/v1/namespaces/{ns}/mcis:plan", {"placement": spec["placement"]})
        if s.output != "table":
            output.dump(console, reply, s.output)
            return
        placements = reply.get("placements", [])
        for p in placements:
            p["costPerHour"] = f"{float(p.get('costPerHour', 0)):.4f}"
        output.rows(console, (("GROUP", "group"), ("VMS", "count"), ("SPEC", "spec.id"), ("PROVIDER", "spec.provider"),
                              ("REGION", "spec.region"), ("COST/H", "costPerHour")),
                    placements, "placements")
        console.print(f"status {reply.get('status')}  cost {float(reply.get('costPerHour', 0)):.4f}/h  "
                      f"gap {float(reply.get('gap', 0)):.2g}  solved in {float(reply.get('solveS', 0)):.3f}s",
                      highlight=False)
        if reply.get("message"):
            console.print(reply["message"], highlight=False)

    session.run(verbose, body)


def benchmark(kind: Annotated[str, typer.Argument(help="mcis")], name: Annotated[str, typer.Argument()],
              namespace: options.Namespace = "", output_format: options.Output = "",
              verbose: options.Verbose = False) -> None:
    """Benchmark every running VM of an MCIS and the RTT between its regions; results are stored."""

    def body() -> None:
        if kind != "mcis":
            raise ApiError("only an MCIS is benchmarked: cbctl benchmark mcis NAME")
        s = session.session(namespace=namespace, output_format=output_format)
        ns = s.scope["namespace"]
        with s.client:
            reply = s.client.call("POST", f"/tumblebug/v1/namespaces/{ns}/mcis/{name}:benchmark", {}, timeout=60)
        if s.output != "table":
            output.dump(console, reply, s.output)
            return
        vms = reply.get("vms", [])
        for v in vms:
            vals = v.get("values", {})
            v["cpu"] = f"{float(vals.get('cpu_multi', 0)):.3g}"
            v["mem"] = f"{float(vals.get('memory_read', 0)):.3g}"
        output.rows(console, (("VM", "vm"), ("SPEC", "specId"), ("CPU-MULTI/S", "cpu"), ("MEM-READ B/S", "mem"),
                              ("ERROR", "error")), vms, "VMs")
        output.rows(console, (("SITE A", "a"), ("SITE B", "b"), ("RTT-MS", "rttMs"), ("SAMPLES", "samples")),
                    reply.get("rtt", []), "region pairs")

    session.run(verbose, body)
