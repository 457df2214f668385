"""cbctl, the command-line client of the suite (console script `cbctl` → `services.cli:app`).

Resource commands talk to the REST gateway over HTTP (`show`: get, describe; `lifecycle`: create,
apply, delete; `verbs`: custom methods and scale; on `session`, `options`, `listing`, `documents`,
`client`), and so do `exec` (`remote`) and `top` (`top`); `up`, `down` and `status` drive the local
suite (`local`). Configuration: `config`; kinds as data: `kinds`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from services.cli import lifecycle, local, mcis_vms, placement, registration, remote, rollouts, show, top, verbs
from services.cli.session import GLOBALS

app = typer.Typer(help="Drive the multi-cloud suite: resources through the REST gateway, and the local suite.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def main(
    gateway: Annotated[str, typer.Option("--gateway", help="Gateway URL (else CB_GATEWAY_URL, the config "
                                                                       "file, http://127.0.0.1:8000).")] = "",
    api_key: Annotated[str, typer.Option("--api-key", help="API key (else CB_API_KEY, the config file, "
                                                           ".run/admin.key).")] = "",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="On error, show the details.")] = False,
) -> None:
    GLOBALS.gateway = gateway
    GLOBALS.api_key = api_key
    GLOBALS.verbose = verbose


app.command()(show.get)
app.command()(show.describe)
app.command()(lifecycle.create)
app.command()(lifecycle.apply)
app.command()(lifecycle.delete)
for _verb in ("suspend", "resume", "reboot", "terminate", "refine", "cancel"):
    app.command(name=_verb)(verbs.verb_command(_verb))
app.command()(verbs.scale)
app.add_typer(rollouts.rollout, name="rollout")
app.command()(rollouts.logs)
app.command()(registration.register)
app.command()(registration.unregister)
for _verb in ("attach", "detach"):
    app.command(name=_verb)(mcis_vms.disk_command(_verb))
app.command(name="exec")(remote.exec_)
app.command()(placement.recommend)
app.command()(placement.plan)
app.command()(placement.benchmark)
app.command()(top.top)
app.command()(local.up)
app.command()(local.down)
app.command()(local.status)

__all__ = ["app"]
