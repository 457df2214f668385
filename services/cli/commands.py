"""Where cbctl's resource commands were before they were split by concept (`session`, `options`,
`listing`, `documents`, `show`, `lifecycle`, `verbs`). Re-exports for branches still importing from
here; nothing in the tree does. To be removed once they are merged."""

from __future__ import annotations

from services.cli.documents import Document, read_documents
from services.cli.lifecycle import apply, create, delete
from services.cli.listing import PAGE_SIZE, get_one, list_all
from services.cli.options import Connection, Files, Namespace, Output, Subgroup, Timeout, Verbose, Wait
from services.cli.session import GLOBALS, Globals, Session, console, err_console, run, session
from services.cli.show import describe, get
from services.cli.verbs import scale, verb_command

__all__ = ["GLOBALS", "PAGE_SIZE", "Connection", "Document", "Files", "Globals", "Namespace", "Output", "Session",
           "Subgroup", "Timeout", "Verbose", "Wait", "apply", "console", "create", "delete", "describe", "err_console",
           "get", "get_one", "list_all", "read_documents", "run", "scale", "session", "verb_command"]
