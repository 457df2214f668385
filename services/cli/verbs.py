"""Custom methods from the command line: `cbctl suspend|resume|reboot|terminate|refine KIND NAME`
and `cbctl scale mcis NAME`, optionally followed until they settle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from services.cli.client import ApiError
from services.cli.kinds import RestKind
from services.cli.listing import get_one
from services.cli.mcis import number
from services.cli.options import Connection, Namespace, Subgroup, Timeout, Verbose, Wait
from services.cli.progress import McisTarget, Target, wait_settled
from services.cli.session import Session, console, err_console, run, session


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
                    said = reply.get("status") or reply.get("message") or "done"  # a campaign says what it does
                    console.print(f"{k.name}/{name} {str(said).lower()}", highlight=False)
                    if wait and k.verbs[verb]:
                        wait_settled(s.client, err_console, [Target(k, s.scope, name, k.verbs[verb])], timeout)
                    return
                console.print(f"{k.name}/{name} {verb} accepted", highlight=False)
                if wait:
                    target = McisTarget(k, s.scope, name, number(reply.get("generation")), k.verbs[verb], only=subgroup)
                    wait_settled(s.client, err_console, [target], timeout)
                    _settled_line(s, k, name)

        run(verbose, body)

    command.__doc__ = (f"{verb.capitalize()} a resource (a VM, an MCIS or one of its groups, a campaign); "
                       "--wait follows it to the end.")
    return command


def _settled_line(s: Session, k: RestKind, name: str) -> None:
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
                target = McisTarget(k, s.scope, name, number(reply.get("generation")), "RUNNING", only=subgroup)
                wait_settled(s.client, err_console, [target], timeout)
                _settled_line(s, k, name)

    run(verbose, body)
