#!/usr/bin/env python3
"""Make every secret a deployment of the suite needs, into one directory.

`cb-make-secrets DIR [--domain SUFFIX ...] [--owner UID]` (in the image) or
`python deploy/make_secrets.py DIR` (in a checkout). What exists is kept, so running it again
changes nothing; delete DIR to start over. It writes:

- `tls/ca.crt`, `tls/ca.key`: the suite's private CA (ca.key is never given to a process);
  `tls/<identity>.crt|.key` for spider, tumblebug, dragonfly, ladybug, cloudtwin, gateway, etcd,
  nats and admin, each valid for its own name (the compose service name), `*.<name>` and the same
  under each `--domain`;
- `secret.key`: the key that seals credentials in etcd (base64 of 32 bytes);
- `admin.key`: the gateway's admin API key, and `gateway-keys`: only its bcrypt hash, which is
  all the gateway gets;
- `nats/auth.conf`: the NATS operator, the system and CB accounts (resolver under /var/lib/cb/nats/jwt);
  `nats/dragonfly.creds`, `nats/agent-signer.json`, `nats/account-admin.json`: dragonfly's own
  least-privilege user, the key that mints agents' users and what revokes them.

With `--kubernetes NAMESPACE`, also `kubernetes-secrets.yaml`: all of it as the Secrets the
manifests of deploy/k8s mount. Files are mode 0600; with `--owner`, they belong to that user (the image's `cb`, 10001),
because compose hands secret files to containers as they are on disk.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

IDENTITIES = ("spider", "tumblebug", "dragonfly", "ladybug", "cloudtwin", "gateway", "etcd", "nats", "admin")
# Where the NATS server keeps its account JWTs inside its container (a volume).
NATS_RESOLVER_DIR = Path("/var/lib/cb/nats/jwt")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def make_tls(directory: Path, domains: Sequence[str]) -> None:
    from services import tls

    authority = tls.Authority.ensure(directory)
    for name in IDENTITIES:
        # `etcd-0.etcd`, `nats-1.nats`…: members of a StatefulSet are reached by their pod names.
        extra = [f"*.{name}"]
        for domain in domains:
            extra += [f"{name}.{domain}", f"*.{name}.{domain}"]
        authority.identity(name, dns_names=extra)


def make_nats(directory: Path) -> None:
    from services import natsauth

    if (directory / "auth.conf").exists():
        return
    auth = natsauth.Authority.create()
    dragonfly = auth.signer.issue("cb-dragonfly", natsauth.dragonfly_permissions())
    _write(directory / "dragonfly.creds", natsauth.format_creds(dragonfly.jwt, dragonfly.seed))
    _write(directory / "agent-signer.json", auth.signer.dump())
    _write(directory / "account-admin.json", auth.admin().dump())
    _write(directory / "auth.conf", auth.server_config(NATS_RESOLVER_DIR))


def make_keys(directory: Path) -> None:
    from services.gateway.auth import ADMIN, hash_key, write_keys_file

    if not (directory / "secret.key").exists():
        _write(directory / "secret.key", base64.b64encode(os.urandom(32)).decode() + "\n")
    if not (directory / "admin.key").exists():
        key = secrets.token_urlsafe(32)
        _write(directory / "admin.key", key + "\n")
        write_keys_file(directory / "gateway-keys", {ADMIN: hash_key(key)})


def kubernetes_secrets(directory: Path, namespace: str) -> str:
    """The Secrets the manifests of deploy/k8s mount, as one YAML stream (`kubectl apply -f`)."""
    tls_dir, nats_dir = directory / "tls", directory / "nats"

    def secret(name: str, files: dict[str, Path]) -> str:
        data = "".join(f"  {key}: {base64.b64encode(path.read_bytes()).decode()}\n" for key, path in files.items())
        return (f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
                f"type: Opaque\ndata:\n{data}")

    docs = [secret(f"cb-{name}-tls", {"ca.crt": tls_dir / "ca.crt", "tls.crt": tls_dir / f"{name}.crt",
                                      "tls.key": tls_dir / f"{name}.key"})
            for name in IDENTITIES if name != "admin"]
    docs += [secret("cb-secret-key", {"secret.key": directory / "secret.key"}),
             secret("cb-gateway-keys", {"gateway-keys": directory / "gateway-keys"}),
             secret("cb-nats-auth", {"auth.conf": nats_dir / "auth.conf"}),
             secret("cb-dragonfly-nats", {"dragonfly.creds": nats_dir / "dragonfly.creds",
                                          "agent-signer.json": nats_dir / "agent-signer.json",
                                          "account-admin.json": nats_dir / "account-admin.json"})]
    return "---\n".join(docs)


def chown_all(directory: Path, uid: int) -> None:
    for path in [directory, *directory.rglob("*")]:
        os.chown(path, uid, uid)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--domain", action="append", default=[],
                        help="a DNS suffix the services are also reached under (e.g. cb-suite.svc, "
                             "cb-suite.svc.cluster.local in Kubernetes)")
    parser.add_argument("--owner", type=int, help="give every file to this user ID (and group)")
    parser.add_argument("--kubernetes", metavar="NAMESPACE",
                        help="also write DIR/kubernetes-secrets.yaml: the Secrets deploy/k8s mounts, in NAMESPACE")
    args = parser.parse_args(argv)
    out: Path = args.directory
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    make_tls(out / "tls", args.domain)
    make_nats(out / "nats")
    make_keys(out)
    if args.kubernetes and not (out / "kubernetes-secrets.yaml").exists():
        _write(out / "kubernetes-secrets.yaml", kubernetes_secrets(out, args.kubernetes))
    if args.owner is not None:
        chown_all(out, args.owner)
    print(f"secrets in {out} (admin API key: {out / 'admin.key'})")
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):  # run as a file from a checkout: import the suite from it
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
