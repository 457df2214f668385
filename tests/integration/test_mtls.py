"""Every server of the suite admits only callers with a certificate of the suite's CA.

For spider, tumblebug, dragonfly, CloudTwin and etcd: a caller without a client
certificate, and one with a certificate of another CA, are refused in the handshake
(the RPC never runs); the session's own certificate works. Each refused call is one
that answered anyone before: ListCredentials, ListNamespaces, IssueAgentCredential,
GetKnobs, an etcd range read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest
from aetcd import rpc as etcd_rpc
from aetcd.rpc import rpc_pb2_grpc as etcd_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cbapi.cloudtwin.v1 import cloudtwin_pb2 as tw
from cbapi.cloudtwin.v1 import cloudtwin_pb2_grpc as tw_grpc
from cbapi.dragonfly.v1 import dragonfly_pb2 as dpb
from cbapi.dragonfly.v1 import dragonfly_pb2_grpc as dpb_grpc
from cbapi.spider.v1 import spider_pb2 as pb
from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as tb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services import tls
from services.rpc.client import channel
from services.rpc.tls import peer_identity, server_credentials
from tests import servers

# What a caller can do with a channel to each server, without side effects when it is refused.
Probe = Callable[[grpc.aio.Channel], Awaitable[object]]
PROBES: dict[str, Probe] = {
    "spider": lambda ch: spider_pb2_grpc.SpiderStub(ch).ListCredentials(pb.ListCredentialsRequest(), timeout=5),
    "tumblebug": lambda ch: tumblebug_pb2_grpc.TumblebugStub(ch).ListNamespaces(tb.ListNamespacesRequest(),
                                                                                timeout=5),
    "dragonfly": lambda ch: dpb_grpc.DragonflyStub(ch).IssueAgentCredential(
        dpb.IssueAgentCredentialRequest(ns="nobody", mcis="nothing", vm="none"), timeout=5),
    "cloudtwin": lambda ch: tw_grpc.CloudTwinStub(ch).GetKnobs(tw.GetKnobsRequest(), timeout=5),
    "etcd": lambda ch: etcd_grpc.KVStub(ch).Range(etcd_rpc.RangeRequest(key=b"/cb/"), timeout=5),
}
SERVERS = list(PROBES)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> tls.Identity:
    """An `admin` certificate of another CA (same names, other key)."""
    return tls.Authority.ensure(tmp_path_factory.mktemp("foreign-ca")).identity("admin")


@pytest.fixture
def addresses(spider_process: servers.Server, tumblebug_process: servers.Server, dragonfly_process: servers.Server,
              cloudtwin_process: servers.Server, etcd_process: servers.Server) -> dict[str, str]:
    """Where each of the session's servers listens."""
    return {"spider": spider_process.address, "tumblebug": tumblebug_process.address, "dragonfly": dragonfly_process.address,
            "cloudtwin": cloudtwin_process.address, "etcd": etcd_process.address}


def _ca() -> bytes:
    return tls.configured().ca_file.read_bytes()


async def _refused(address: str, credentials: grpc.ChannelCredentials | None, probe: Probe) -> None:
    ch = grpc.aio.insecure_channel(address) if credentials is None else grpc.aio.secure_channel(address, credentials)
    async with ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await probe(ch)
    # Refused in the TLS handshake: the call never reached the service.
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE, err.value


@pytest.mark.parametrize("name", SERVERS)
async def test_a_caller_without_a_certificate_is_refused(addresses: dict[str, str], name: str) -> None:
    address = addresses[name]
    # It trusts the server (our CA) but has no certificate of its own; and one speaking plaintext.
    await _refused(address, grpc.ssl_channel_credentials(root_certificates=_ca()), PROBES[name])
    await _refused(address, None, PROBES[name])


@pytest.mark.parametrize("name", SERVERS)
async def test_a_certificate_of_another_ca_is_refused(addresses: dict[str, str], name: str,
                                                      foreign: tls.Identity) -> None:
    address = addresses[name]
    _, cert, key = foreign.read()
    await _refused(address, grpc.ssl_channel_credentials(root_certificates=_ca(), private_key=key,
                                                         certificate_chain=cert), PROBES[name])


@pytest.mark.parametrize("name", SERVERS)
async def test_the_suites_certificate_is_admitted(addresses: dict[str, str], name: str) -> None:
    address = addresses[name]
    async with channel(address) as ch:
        if name == "etcd":
            reply = await PROBES[name](ch)
            assert isinstance(reply, etcd_rpc.RangeResponse) and reply.header.revision > 0
        else:
            answer = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_server_that_is_not_of_our_ca_is_not_trusted(foreign: tls.Identity) -> None:
    """The client side too: channel() will not talk to a server with another CA's certificate."""
    server = grpc.aio.server()
    _, cert, key = foreign.read()
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    health_pb2_grpc.add_HealthServicer_to_server(_Serving(), server)
    await server.start()
    try:
        async with channel(f"127.0.0.1:{port}") as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(0)


class _Serving(health_pb2_grpc.HealthServicer):
    async def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
                    ) -> health_pb2.HealthCheckResponse:
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


async def test_peer_identity_is_the_callers_certificate_name(session_ca: tls.Authority,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A server learns who calls from the verified certificate (what authorization builds on)."""
    seen: list[str | None] = []

    async def whoami(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        seen.append(peer_identity(context))
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "test.Who", {"Am": grpc.unary_unary_rpc_method_handler(whoami)}),))
    port = server.add_secure_port("127.0.0.1:0", server_credentials())
    await server.start()
    try:
        async with channel(f"127.0.0.1:{port}") as ch:
            await ch.unary_unary("/test.Who/Am")(b"", timeout=5)
        for key, value in session_ca.identity("gateway").env().items():
            monkeypatch.setenv(key, value)
        async with channel(f"127.0.0.1:{port}") as ch:
            await ch.unary_unary("/test.Who/Am")(b"", timeout=5)
    finally:
        await server.stop(0)
    assert seen == ["admin", "gateway"]
