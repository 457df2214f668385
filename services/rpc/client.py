"""Channels to other services (and to CloudTwin) with the request ID passed along."""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services import errors, logs
from services.rpc.tls import channel_credentials

T = TypeVar("T")

log = logging.getLogger("rpc.client")

OPTIONS = [
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    ("grpc.max_send_message_length", 32 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.enable_retries", 0),
]


def channel(address: str, options: Sequence[tuple[str, Any]] = (), request_ids: bool = True,
            balance: str = "round_robin") -> grpc.aio.Channel:
    """A mutual-TLS channel to a service of the suite (or CloudTwin), presenting this process's
    certificate (`CB_TLS_…`). `options` add to or override the defaults; without `request_ids`
    the caller puts the request ID in each call's metadata itself.

    `address` may list several replicas, `127.0.0.1:2048,127.0.0.1:2049` (IPv4 literals): gRPC
    then balances over those that answer (`balance`: round_robin, or pick_first to stay on one
    until it goes away)."""
    target, extra = target_of(address, balance)
    merged = dict(OPTIONS)
    merged.update(extra)
    merged.update(options)
    inner = grpc.aio.secure_channel(target, channel_credentials(), options=list(merged.items()))
    return RequestIdChannel(inner) if request_ids else inner


def _with_request_id(metadata: Any) -> Any:
    rid = logs.request_id.get()
    if not rid:
        return metadata
    if metadata is None:
        return (("x-request-id", rid),)
    pairs = tuple(metadata)
    if any(key == "x-request-id" for key, _ in pairs):
        return metadata
    return (*pairs, ("x-request-id", rid))


class _RequestIdMultiCallable:
    """A unary-request method of a RequestIdChannel: the call as the channel's own, its metadata
    with the current request ID added."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __call__(self, request: Any, *, metadata: Any = None, **kwargs: Any) -> Any:
        return self._inner(request, metadata=_with_request_id(metadata), **kwargs)


class RequestIdChannel(grpc.aio.Channel):
    """A channel that passes the current request ID (`services.logs.request_id`) on as `x-request-id`
    metadata of each unary-request call, unless the caller set one.

    It does what RequestIdClientInterceptor did without grpc.aio's interceptor machinery, which
    wraps every call in a second call object and task (py-spy on spider under GetVmStatus load:
    2.5 % of its main thread in the interceptor's own frames, plus that task). Everything else is
    the wrapped channel's."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel

    async def __aenter__(self) -> RequestIdChannel:
        return self

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        await self._channel.close(None)

    async def close(self, grace: float | None = None) -> None:
        await self._channel.close(grace)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._channel.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._channel.channel_ready()

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _RequestIdMultiCallable(self._channel.unary_unary(method, *args, **kwargs))

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _RequestIdMultiCallable(self._channel.unary_stream(method, *args, **kwargs))

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._channel.stream_unary(method, *args, **kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._channel.stream_stream(method, *args, **kwargs)


def target_of(address: str, balance: str = "round_robin") -> tuple[str, dict[str, Any]]:
    """The gRPC target and channel options for `address`: one host:port, or several IPv4
    host:port separated by commas (one `ipv4:` target with a load-balancing policy).

    A list's TLS name is its first host: gRPC would otherwise check the certificate against the
    whole list, which no certificate names (every suite certificate holds 127.0.0.1)."""
    parts = [p.strip() for p in address.split(",") if p.strip()]
    if len(parts) <= 1:
        return address.strip(), {}
    hosts = [p.rpartition(":")[0] for p in parts]
    if not all(_is_ipv4(h) for h in hosts):
        raise ValueError(f"several addresses must be IPv4 host:port ({address}); "
                         "for DNS names use one name that resolves to every replica")
    config = json.dumps({"loadBalancingConfig": [{balance: {}}]})
    return "ipv4:" + ",".join(parts), {"grpc.service_config": config, "grpc.ssl_target_name_override": hosts[0],
                                       "grpc.default_authority": parts[0]}


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


async def is_serving(address: str, service: str = "", timeout: float = 1.0) -> bool:
    """True when the standard health check of `address` answers SERVING (over mutual TLS)."""
    async with channel(address, request_ids=False) as ch:
        try:
            reply = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.aio.AioRpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def call(rpc: Callable[..., Awaitable[T]], request: Any, timeout: float, peer: str) -> T:
    """Call another service; its errors come back as domain errors (code, message, field
    violations and upstream code kept). `peer` names the service (never its address: messages
    reach clients); it is blamed only when it could not be reached, not when it answered
    UNAVAILABLE because something behind it was down."""
    try:
        return await rpc(request, timeout=timeout)
    except grpc.aio.AioRpcError as err:
        domain = errors.from_rpc_error(err)
        if isinstance(domain, errors.Unavailable) and not errors.answered_by_server(err):
            # The transport's words name addresses: they go to the log only.
            log.warning("peer unreachable", extra={"peer": peer, "error": (err.details() or "")[:300]})
            domain.message = f"{peer} is unavailable; retry shortly"
        raise domain from err
