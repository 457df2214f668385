"""One cbctl command's session: the global options, the configuration and client it runs with,
the consoles it prints to, and how an error ends it (one line on stderr, exit status 1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import typer
from rich.console import Console

from services.cli.client import ApiError, Client
from services.cli.config import Config, ConfigError, check_output, load
from services.cli.kinds import RestKind, find, prefer

console = Console()
err_console = Console(stderr=True)


@dataclass
class Globals:
    """Options given before the command."""

    gateway: str = ""
    api_key: str = ""
    verbose: bool = False


GLOBALS = Globals()


@dataclass
class Session:
    """The configuration and client of one command."""

    config: Config
    client: Client
    scope: dict[str, str]
    output: str
    # Scope flags given on this command line (they decide between spider's and tumblebug's kinds).
    given: frozenset[str] = frozenset()

    def kind(self, word: str) -> RestKind:
        return find(word, prefer("namespace" in self.given, "connection" in self.given))


def run(verbose: bool, body: Callable[[], None]) -> None:
    """Run a command; an error is one line on stderr (more with -v) and exit status 1."""
    try:
        body()
    except (ApiError, ConfigError) as err:
        err_console.print(f"[red]Error:[/red] {err}", highlight=False, soft_wrap=True)
        if isinstance(err, ApiError) and err.code == "UNAUTHENTICATED":
            err_console.print("  cbctl sends the key given by --api-key, CB_API_KEY or api_key in "
                              "~/.config/cbctl/config.yaml (the local suite's: .run/admin.key)",
                              highlight=False, soft_wrap=True)
        if (verbose or GLOBALS.verbose) and isinstance(err, ApiError):
            for line in err.explain():
                err_console.print(f"  {line}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def session(connection: str = "", namespace: str = "", output_format: str = "") -> Session:
    config = load().with_flags(gateway=GLOBALS.gateway, api_key=GLOBALS.api_key, connection=connection,
                               namespace=namespace, output=output_format)
    check_output(config.output)
    scope = {"connection": config.connection, "namespace": config.namespace}
    given = frozenset(k for k, v in (("connection", connection), ("namespace", namespace)) if v)
    return Session(config, Client(config), scope, config.output, given)
