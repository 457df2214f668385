"""The dragonfly service process (`cb-dragonfly`)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from cbapi.dragonfly.v1 import dragonfly_pb2_grpc
from dragonfly.account import AccountSync
from dragonfly.agent_requests import AgentRequests
from dragonfly.agents import Agents
from dragonfly.alerts.engine import AlertEngine
from dragonfly.alerts.rulebook import RuleBook
from dragonfly.alerts.webhook import WebhookSink
from dragonfly.collector import Collector
from dragonfly.credentials import AgentCredentials
from dragonfly.guard import AgentGuard, GuardMetrics
from dragonfly.guard import register as register_guard
from dragonfly.guard import unregister as unregister_guard
from dragonfly.servicer import DragonflyServicer
from dragonfly.settings import DragonflySettings
from dragonfly.storage import Backend, accounting
from dragonfly.storage.memory import MemoryBackend
from dragonfly.storage.victoriametrics import VictoriaMetricsBackend
from dragonfly.workloads import WorkloadStatuses
from services.bus import Bus
from services.natsauth import DRAGONFLY_INBOX, AccountAdmin, Creds, NatsAuthSettings, Signer
from services.rpc.server import Binding, run
from services.settings import CommonSettings
from services.store import Store

log = logging.getLogger("dragonfly")

SERVICE_NAME = "cbapi.dragonfly.v1.Dragonfly"


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as err:
        raise SystemExit(f"dragonfly cannot read {what} {path}: {err}") from err


class DragonflyApp:
    """Every replica collects its share of metrics, hears every heartbeat and serves the API."""

    name = "dragonfly"

    def __init__(self, settings: DragonflySettings, common: CommonSettings, auth: NatsAuthSettings) -> None:
        if settings.storage not in ("memory", "victoriametrics"):
            raise SystemExit(f"dragonfly: unknown storage {settings.storage!r} (memory or victoriametrics)")
        if not auth.creds_file:
            raise SystemExit("dragonfly needs a NATS credential: set CB_NATS_CREDS_FILE")
        self.identity = f"dragonfly-{uuid.uuid4().hex[:12]}"
        self.store = Store.from_endpoints(common.etcd_endpoints)
        creds = Creds.parse(_read(auth.creds_file, "credential"))
        # Answers to dragonfly's requests come to its own inbox root, the only one its user may hear.
        self.bus = Bus(common.nats_url, self.identity, {**creds.client_options(),
                                                         "inbox_prefix": DRAGONFLY_INBOX.encode()},
                       read_every_s=settings.read_every_s)
        self.backend: Backend = (VictoriaMetricsBackend(settings.vm_url) if settings.storage == "victoriametrics"
                                 else MemoryBackend(settings.raw_points, settings.memory_mb))
        self.accounting: accounting.MemoryAccounting | None = None
        self.guard = AgentGuard(settings.agent_rate_per_s, settings.agent_burst, settings.agent_warn_every_s)
        self.guard_metrics: GuardMetrics | None = None
        self.agents = Agents(self.store, self.bus, settings.default_interval_s, self.guard)
        sink = WebhookSink(settings.webhook_attempts, settings.webhook_backoff_s, timeout_s=settings.webhook_timeout_s)
        self.alerts = AlertEngine(self.store, self.bus, self.agents, sink, settings.alert_events_max,
                                  settings.alert_tick_s)
        self.collector = Collector(self.bus, self.backend, settings.collector_queue, settings.batch_samples,
                                   settings.flush_s, self.alerts.observe, self.guard, self.agents.heard_batch)
        self.agents.on_forget.append(self.collector.forget)
        self.account: AccountSync | None = None
        credentials = None
        if settings.agent_signer_file:
            if not settings.account_admin_file:
                raise SystemExit("dragonfly issues agent credentials only if it can revoke them: "
                                 "set CB_DRAGONFLY_ACCOUNT_ADMIN_FILE with CB_DRAGONFLY_AGENT_SIGNER_FILE")
            signer = Signer.load(_read(settings.agent_signer_file, "signing key"))
            admin = AccountAdmin.load(_read(settings.account_admin_file, "account admin"))
            # Its own connection: the account admin is a user of the system account, not of CB.
            admin_bus = Bus(common.nats_url, f"{self.identity}-account", admin.pusher.client_options())
            self.account = AccountSync(self.store, admin_bus, admin, settings.account_resync_s)
            credentials = AgentCredentials(self.store, signer, self.account, settings.agent_credential_ttl_s)
        self.workloads = WorkloadStatuses(self.store, self.bus, self.guard)
        self.servicer = DragonflyServicer(self.agents, self.backend, AgentRequests(self.bus, self.agents), credentials,
                                          settings.agent_nats_url or common.nats_url, self.alerts,
                                          RuleBook(self.store, self.agents, self.alerts), self.workloads)

    def bindings(self) -> list[Binding]:
        return [Binding(SERVICE_NAME, self.servicer, dragonfly_pb2_grpc.add_DragonflyServicer_to_server)]

    async def start(self) -> None:
        await self.bus.connect()
        if self.account is not None:
            await self.account.start()
        await self.agents.start()
        await self.workloads.start()
        await self.alerts.start()
        await self.collector.start()
        if isinstance(self.backend, MemoryBackend):
            self.accounting = accounting.register(self.backend)
        self.guard_metrics = register_guard(self.guard)
        log.info("collecting", extra={"identity": self.identity})

    async def stop(self) -> None:
        await self.collector.stop()
        await self.alerts.stop()
        await self.workloads.stop()
        await self.agents.stop()
        if self.account is not None:
            await self.account.stop()
        await self.bus.close()
        if self.accounting is not None:
            accounting.unregister(self.accounting)
        if self.guard_metrics is not None:
            unregister_guard(self.guard_metrics)
        await self.backend.close()
        await self.store.close()


def main() -> None:
    settings = DragonflySettings()
    common = CommonSettings()
    run(lambda: DragonflyApp(settings, common, NatsAuthSettings()), settings, common)


if __name__ == "__main__":
    main()
