"""`cbctl register` and `cbctl unregister`: adopt a cloud resource into spider, or forget one
and leave it in the cloud (spider's connection-scoped kinds only)."""

from __future__ import annotations

from typing import Annotated

import typer

from services.cli.client import ApiError
from services.cli.kinds import RestKind
from services.cli.options import Connection, Verbose
from services.cli.session import Session, console, run, session


def _spider_kind(s: Session, word: str) -> RestKind:
    k = s.kind(word)
    if not k.registrable:
        kinds = "vpc, securitygroup, keypair, vm, disk"
        raise ApiError(f"{k.plural} cannot be registered or unregistered; spider's {kinds} can (with -c)")
    return k


def register(kind: Annotated[str, typer.Argument(help="vpc, securitygroup, keypair, vm or disk.")],
             name: Annotated[str, typer.Argument(help="The name to give it in spider.")],
             csp_id: Annotated[str, typer.Option("--csp-id", help="The cloud's ID of the existing resource.")],
             connection: Connection = "", verbose: Verbose = False) -> None:
    """Adopt a resource that already exists in the cloud under a spider name."""

    def body() -> None:
        s = session(connection)
        k = _spider_kind(s, kind)
        with s.client:
            reply = s.client.call("POST", f"{k.collection_path(s.scope)}:register", {"name": name, "cspId": csp_id})
        console.print(f"{k.name}/{name} registered ({reply.get('iid', {}).get('cspId', csp_id)})", highlight=False)

    run(verbose, body)


def unregister(kind: Annotated[str, typer.Argument(help="vpc, securitygroup, keypair, vm or disk.")],
               name: Annotated[str, typer.Argument(help="The resource's name in spider.")],
               connection: Connection = "", verbose: Verbose = False) -> None:
    """Forget a resource in spider and leave it in the cloud (the reverse of register)."""

    def body() -> None:
        s = session(connection)
        k = _spider_kind(s, kind)
        with s.client:
            reply = s.client.call("POST", f"{k.item_path(s.scope, name)}:unregister", {})
        csp_id = reply.get("iid", {}).get("cspId", "")
        console.print(f"{k.name}/{name} unregistered; {csp_id} stays in the cloud", highlight=False)

    run(verbose, body)
