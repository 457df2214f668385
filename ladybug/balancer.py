"""The controller's side of the applications' endpoints: one HAProxy endpoint per application
(`ladybug.endpoint`), fed with the wanted instances and read for the canary analysis.

Endpoints outlive ladybug on purpose: a ladybug that stops (or is killed) leaves them serving,
and the next leader adopts them with `Endpoint.ensure`. Only deleting the application stops one.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cbapi.ladybug.v1 import ladybug_pb2 as pb
from ladybug.decisions.analysis import Traffic
from ladybug.endpoint import Backend, BackendStats, Endpoint, EndpointSettings, HealthCheck

# HAProxy's names and the endpoint's directory take a DNS label.
_LABEL_MAX = 63


def endpoint_name(ns: str, app: str) -> str:
    """`{ns}-{app}`, cut and suffixed with a hash when longer than a DNS label."""
    name = f"{ns}-{app}"
    if len(name) <= _LABEL_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:_LABEL_MAX - 9].rstrip('-')}-{digest}"


def health_of(spec: pb.AppSpec) -> HealthCheck:
    """HAProxy probes the path the agents probe; otherwise a TCP connect."""
    path = spec.health_check.http_path if spec.health_check.WhichOneof("probe") == "http_path" else ""
    return HealthCheck(http_path=path or None)


def backends_of(instances: Iterable[pb.Instance]) -> list[Backend]:
    """Every placed instance, draining ones marked drain (no new requests, in-flight ones finish)."""
    return [Backend(i.id, i.ip, i.port, 1, i.draining) for i in instances if i.ip and i.port]


def traffic_of(stats: dict[str, BackendStats], ids: set[str]) -> Traffic:
    """The summed counters of `ids` and the worst mean response time among them."""
    mine = [s for iid, s in stats.items() if iid in ids]
    return Traffic(sum(s.requests for s in mine), sum(s.responses_5xx for s in mine),
                   float(max((s.avg_response_ms for s in mine), default=0)))


@dataclass
class AppEndpoint:
    """One application's endpoint as the controller uses it."""

    address: str
    endpoint: Endpoint

    async def serve(self, instances: Sequence[pb.Instance]) -> None:
        await self.endpoint.set_backends(backends_of(instances))

    async def traffic(self, ids: set[str]) -> Traffic:
        return traffic_of(await self.endpoint.stats(), ids)

    async def busy(self, ids: Iterable[str]) -> set[str]:
        """Which of the draining `ids` still have requests in flight."""
        return {i for i in ids if not await self.endpoint.drained(i)}


class Balancers:
    """The endpoints of every application this leader drives, started or adopted on demand."""

    def __init__(self, settings: EndpointSettings | None = None) -> None:
        self.settings = settings or EndpointSettings()
        self._held: dict[tuple[str, str], AppEndpoint] = {}

    @staticmethod
    def available(settings: EndpointSettings | None = None) -> bool:
        """Whether HAProxy is installed here."""
        return shutil.which((settings or EndpointSettings()).haproxy) is not None

    async def ensure(self, app: pb.Application, port: int) -> AppEndpoint:
        """The app's endpoint on `port`: adopted if it runs (also one an earlier ladybug started),
        else started; a changed port or health check is applied by a seamless reload."""
        key = (app.namespace, app.name)
        check = health_of(app.spec)
        held = self._held.get(key)
        if held is not None and held.endpoint.port == port and held.endpoint.check == check:
            return held
        ep = await Endpoint.ensure(endpoint_name(app.namespace, app.name), port, check=check, settings=self.settings)
        held = AppEndpoint(f"{self.settings.host}:{port}", ep)
        self._held[key] = held
        return held

    def get(self, ns: str, app: str) -> AppEndpoint | None:
        return self._held.get((ns, app))

    async def remove(self, app: pb.Application, port: int) -> None:
        """Stop the endpoint of a deleted application on `port` (adopted first when an earlier
        ladybug started it); nothing when it never had one."""
        held = self._held.pop((app.namespace, app.name), None)
        if held is None and port:
            held = await self.ensure(app, port)
            self._held.pop((app.namespace, app.name), None)
        if held is not None:
            await held.endpoint.stop()

    def forget(self) -> None:
        """Let go of every endpoint (they keep serving): this process is no longer the leader."""
        self._held.clear()
