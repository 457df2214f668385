"""The suite's own NATS users and the files the launcher writes for them."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from services.natsauth.authority import Authority
from services.natsauth.creds import format_creds
from services.natsauth.permissions import Permissions

# Where dragonfly's own requests (to agents) are answered: a root of its own, outside `_INBOX.`,
# where every agent's inbox lives, so no agent's inbox pattern can ever cover it.
DRAGONFLY_INBOX = "_INBOX_dragonfly"


def dragonfly_permissions() -> Permissions:
    """Dragonfly's NATS user: exactly the subjects it speaks on (see dragonfly/subjects.py), no more.

    It hears agents' metric batches (its collectors' queue group), heartbeats, registrations and
    workload statuses,
    and the answers to its own requests; it sends requests to agents (`cb.agent.{vm}.{verb}`),
    each MCIS's interval, alert events, and answers into agents' inboxes. It may not publish as
    an agent (`cb.metrics|heartbeat|register`), so an answer steered there by a forged reply
    subject is refused by the server as well as by dragonfly's own check (dragonfly/guard.py).
    No `resp` permission: that would let any reply subject a sender chooses through.
    Tumblebug reaches agents only through dragonfly's API, so it has no NATS user at all."""
    return Permissions(
        publish=["cb.agent.*.*.*.*", "cb.config.*.*", "cb.alerts.*.*", "_INBOX.*.*.*.>"],
        subscribe=["cb.metrics.*.*.*", "cb.heartbeat.*.*.*", "cb.register.*.*.*", "cb.workloads.*.*.*",
                   f"{DRAGONFLY_INBOX}.>"])


@dataclass(frozen=True)
class AuthFiles:
    """What `write_suite_auth` leaves in a directory (each secret file mode 0600)."""

    server_config: Path
    dragonfly_creds: Path
    signer: Path
    account_admin: Path


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def write_suite_auth(directory: Path) -> AuthFiles:
    """A fresh authority for one suite run: the server's config and its resolver directory,
    dragonfly's credential (least privilege, in the CB account; the only service on NATS), the
    account signing key that mints agents' credentials, and the account admin that revokes them."""
    auth = Authority.create()
    files = AuthFiles(directory / "nats-auth.conf", directory / "dragonfly.creds", directory / "agent-signer.json",
                      directory / "account-admin.json")
    # A service credential of an earlier layout (unrestricted) must not stay usable beside it.
    (directory / "service.creds").unlink(missing_ok=True)
    jwt_dir = directory / "nats-accounts"
    # Accounts of an earlier authority mean nothing to this one.
    shutil.rmtree(jwt_dir, ignore_errors=True)
    jwt_dir.mkdir(mode=0o700, parents=True)
    _write_secret(files.server_config, auth.server_config(jwt_dir.resolve()))
    dragonfly = auth.signer.issue("cb-dragonfly", dragonfly_permissions())
    _write_secret(files.dragonfly_creds, format_creds(dragonfly.jwt, dragonfly.seed))
    _write_secret(files.signer, auth.signer.dump())
    _write_secret(files.account_admin, auth.admin().dump())
    return files
