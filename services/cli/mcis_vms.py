"""cbctl on one VM of an MCIS: take it out (`cbctl delete vm g-2 --mcis web`), attach or detach a
data disk of the namespace (`cbctl attach datadisk data --mcis web --vm g-1`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.console import Console

from services.cli import options, session
from services.cli.client import ApiError, Client
from services.cli.kinds import find
from services.cli.mcis import number
from services.cli.progress import McisTarget, wait_all


@dataclass(frozen=True)
class Removal:
    """How a VM leaves: terminated first, forced, waited for."""

    terminate: bool
    force: bool
    wait: bool
    timeout: float


def _vm_path(scope: dict[str, str], in_mcis: str, vm: str) -> str:
    return f"{find('mcis').item_path(scope, in_mcis)}/vms/{vm}"


def delete_vm(client: Client, console: Console, scope: dict[str, str], in_mcis: str, vm: str, how: Removal) -> None:
    """DeleteMcisVm; with --wait, follow the MCIS until the reconciler has acted on it."""
    params = {k: "true" for k, on in (("terminate", how.terminate), ("force", how.force)) if on} or None
    reply = client.call("DELETE", _vm_path(scope, in_mcis, vm), params=params)
    console.print(f"vm/{vm} leaving mcis/{in_mcis}", highlight=False)
    if how.wait:
        target = McisTarget(find("mcis"), scope, in_mcis, number(reply.get("generation")), "")
        failures = wait_all(client, console, [target], how.timeout)
        if failures:
            raise ApiError("; ".join(failures))
        console.print(f"vm/{vm} deleted", highlight=False)


def disk_command(verb: str) -> Callable[..., None]:
    """`cbctl attach|detach datadisk NAME --mcis MCIS --vm VM`."""

    def command(kind: Annotated[str, typer.Argument(help="datadisk")],
                name: Annotated[str, typer.Argument(help="The namespace's data disk.")],
                in_mcis: Annotated[str, typer.Option("--mcis", help="The MCIS of the VM.")],
                vm: Annotated[str, typer.Option("--vm", help="The VM.")],
                namespace: options.Namespace = "", verbose: options.Verbose = False) -> None:
        def body() -> None:
            if find(kind).name != "datadisk":
                raise ApiError(f"only a datadisk can be {verb}ed to an MCIS VM")
            s = session.session(namespace=namespace)
            with s.client:
                reply = s.client.call("POST", f"{_vm_path(s.scope, in_mcis, vm)}:{verb}DataDisk", {"dataDisk": name})
            disks = ", ".join(reply.get("dataDisks") or []) or "none"
            session.console.print(f"datadisk/{name} {verb}ed {'to' if verb == 'attach' else 'from'} "
                                   f"{in_mcis}/{vm} (its data disks: {disks})", highlight=False)

        session.run(verbose, body)

    command.__doc__ = f"{verb.capitalize()} a data disk of the namespace {'to' if verb == 'attach' else 'from'} a VM " \
                      "of an MCIS."
    return command
