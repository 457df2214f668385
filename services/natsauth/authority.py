"""The trust chain of one suite: operator, system account, the `CB` account and its signer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from services.bus import HANDSHAKE_S
from services.natsauth.admin import CLAIMS_UPDATE, AccountAdmin
from services.natsauth.jwt import encode_jwt
from services.natsauth.nkey import ACCOUNT, OPERATOR, KeyPair
from services.natsauth.permissions import Permissions
from services.natsauth.signer import Signer

_SYSTEM_LIMITS = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True,
                  "conn": -1, "leaf": -1}
# The CB account may use JetStream; the system account must not.
_ACCOUNT_LIMITS = {**_SYSTEM_LIMITS, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


@dataclass
class Authority:
    """The trust chain of one suite: an operator (and its signing key, which re-signs
    accounts), the system account, and the `CB` account every service and agent lives in,
    with the signing key that mints their users."""

    operator: KeyPair
    operator_signing: KeyPair
    system: KeyPair
    account: KeyPair
    signing: KeyPair
    jwts: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls) -> Authority:
        auth = cls(KeyPair.generate(OPERATOR), KeyPair.generate(OPERATOR), KeyPair.generate(ACCOUNT),
                   KeyPair.generate(ACCOUNT), KeyPair.generate(ACCOUNT))
        op = auth.operator
        # The operator's own key signs once, here; later account changes use the signing key,
        # so the key that whoever revokes users must hold can be replaced without a new operator.
        auth.jwts["operator"] = encode_jwt(op.public_key, "cb", {
            "type": "operator", "system_account": auth.system.public_key,
            "signing_keys": [auth.operator_signing.public_key]}, op)
        auth.jwts["system"] = encode_jwt(auth.system.public_key, "SYS", {"type": "account",
                                                                          "limits": _SYSTEM_LIMITS}, op)
        auth.jwts["account"] = encode_jwt(auth.account.public_key, "CB", {
            "type": "account", "limits": _ACCOUNT_LIMITS, "signing_keys": [auth.signing.public_key]}, op)
        return auth

    @property
    def signer(self) -> Signer:
        return Signer(self.account.public_key, self.signing)

    def admin(self) -> AccountAdmin:
        """The means to change the `CB` account while the server runs (revoke users)."""
        pusher = Signer(self.system.public_key, self.system).issue(
            "cb-account-admin", Permissions(publish=[CLAIMS_UPDATE], subscribe=["_INBOX.>"]))
        return AccountAdmin(self.operator_signing, self.jwts["account"], pusher)

    def server_config(self, jwt_dir: Path) -> str:
        """nats-server configuration: trust this operator; accounts in a full resolver at
        `jwt_dir` (seeded with these two, changed by pushes), never deleted by a push."""
        # max_payload: a workload set carries up to 1 MiB of files per workload (base64 on the wire).
        return (f'operator: "{self.jwts["operator"]}"\n'
                "max_payload: 4MB\n"
                f"authorization: {{\n  timeout: {HANDSHAKE_S:g}\n}}\n"
                f"system_account: {self.system.public_key}\n"
                f'resolver: {{\n  type: full\n  dir: "{jwt_dir}"\n  allow_delete: false\n}}\n'
                "resolver_preload: {\n"
                f'  {self.system.public_key}: "{self.jwts["system"]}"\n'
                f'  {self.account.public_key}: "{self.jwts["account"]}"\n'
                "}\n")
