"""The method policy as a table: which role and which namespace may call what."""

from __future__ import annotations

import pytest

from cbapi.dragonfly.v1 import dragonfly_pb2 as df
from cbapi.spider.v1 import spider_pb2 as sp
from cbapi.tumblebug.v1 import tumblebug_pb2 as tb
from services import errors, roles
from services.roles import Principal, Role
from services.rpc.authz import caller, decide, namespace_field, required_role

SP, TB, DF = "/cbapi.spider.v1.Spider/", "/cbapi.tumblebug.v1.Tumblebug/", "/cbapi.dragonfly.v1.Dragonfly/"
VIEWER, OPERATOR, ADMIN = (Principal("p", r) for r in (Role.VIEWER, Role.OPERATOR, Role.ADMIN))
TEAM_A = Principal("team-a-ops", Role.OPERATOR, "team-a")


@pytest.mark.parametrize(("method", "role"), [
    (SP + "ListConnections", Role.VIEWER), (SP + "GetVmStatus", Role.VIEWER), (SP + "WatchVm", Role.VIEWER),
    (SP + "ReconcileResources", Role.VIEWER), (DF + "QueryVmMetrics", Role.VIEWER),
    (DF + "ReadVmMetrics", Role.VIEWER), (TB + "ListCatalogSpecs", Role.VIEWER),
    (SP + "CreateVm", Role.OPERATOR), (SP + "SuspendVm", Role.OPERATOR), (TB + "CreateMcis", Role.OPERATOR),
    (TB + "RunMcisCommand", Role.OPERATOR), (DF + "RunBenchmark", Role.OPERATOR),
    (SP + "CreateCredential", Role.ADMIN), (SP + "ListCredentials", Role.ADMIN), (SP + "GetCredential", Role.ADMIN),
    (SP + "DeleteCredential", Role.ADMIN), (DF + "IssueAgentCredential", Role.ADMIN),
])
def test_required_role(method: str, role: Role) -> None:
    assert required_role(method) is role


def test_roles_in_order() -> None:
    assert decide(SP + "CreateVm", VIEWER, sp.CreateVmRequest()).startswith(
        "permission denied: p has role viewer (read only); /cbapi.spider.v1.Spider/CreateVm needs operator")
    assert decide(SP + "CreateVm", OPERATOR, sp.CreateVmRequest()) == ""
    assert "needs admin" in decide(SP + "ListCredentials", OPERATOR, sp.ListCredentialsRequest())
    assert decide(SP + "ListCredentials", ADMIN, sp.ListCredentialsRequest()) == ""
    assert decide("/grpc.health.v1.Health/Check", VIEWER, sp.ListCredentialsRequest()) == ""


def test_namespace_scope() -> None:
    assert decide(TB + "CreateMcis", TEAM_A, tb.CreateMcisRequest(namespace="team-a")) == ""
    denied = decide(TB + "CreateMcis", TEAM_A, tb.CreateMcisRequest(namespace="team-b"))
    assert "limited to namespace 'team-a'" in denied and "'team-b'" in denied
    assert decide(DF + "QueryVmMetrics", TEAM_A, df.QueryVmMetricsRequest(ns="team-a")) == ""
    assert decide(DF + "QueryVmMetrics", TEAM_A, df.QueryVmMetricsRequest(ns="team-b")) != ""
    # Namespace methods name it in their own fields.
    assert decide(TB + "GetNamespace", TEAM_A, tb.GetNamespaceRequest(name="team-a")) == ""
    assert decide(TB + "DeleteNamespace", TEAM_A, tb.DeleteNamespaceRequest(name="team-b")) != ""
    create = tb.CreateNamespaceRequest(namespace=tb.Namespace(name="team-b"))
    assert namespace_field(TB + "CreateNamespace", create.DESCRIPTOR) == "namespace.name"
    assert decide(TB + "CreateNamespace", TEAM_A, create) != ""
    # No namespace in the request: the catalog is open, the rest is not.
    assert decide(TB + "ListCatalogSpecs", TEAM_A, tb.ListCatalogSpecsRequest()) == ""
    assert decide(SP + "ListSpecs", TEAM_A, sp.ListSpecsRequest()) == ""
    assert "not a method of one namespace" in decide(TB + "ListNamespaces", TEAM_A, tb.ListNamespacesRequest())
    assert decide(SP + "ListConnections", TEAM_A, sp.ListConnectionsRequest()) != ""
    assert decide(SP + "CreateVm", TEAM_A, sp.CreateVmRequest()) != ""


def test_identity_metadata() -> None:
    md = [("x-cb-principal", "ci"), ("x-cb-role", "operator"), ("x-cb-namespace", "team-a"), ("other", "x")]
    assert roles.from_metadata(md) == Principal("ci", Role.OPERATOR, "team-a")
    assert roles.from_metadata([("x-cb-principal", "ci")]) is None
    with pytest.raises(ValueError, match="unknown role"):
        roles.from_metadata([("x-cb-role", "root")])
    assert Principal("ci", Role.VIEWER).metadata() == (
        ("x-cb-principal", "ci"), ("x-cb-role", "viewer"), ("x-cb-namespace", ""))


class Context:
    """What `caller` reads of a call: the TLS auth context and the metadata."""

    def __init__(self, peer: str | None, metadata: tuple[tuple[str, str], ...]) -> None:
        self.auth = ({"transport_security_type": [b"ssl"], "x509_common_name": [peer.encode()]} if peer
                     else {"transport_security_type": [b"insecure"]})
        self.metadata = metadata

    def auth_context(self) -> dict[str, list[bytes]]:
        return self.auth

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata


VIEWER_MD = (("x-cb-principal", "v"), ("x-cb-role", "viewer"), ("x-cb-namespace", ""))


def test_whose_metadata_counts() -> None:
    def who(peer: str | None, metadata: tuple[tuple[str, str], ...] = ()) -> Principal | None:
        return caller(Context(peer, metadata))  # type: ignore[arg-type]

    assert who("gateway", VIEWER_MD) == Principal("v", Role.VIEWER)
    with pytest.raises(errors.Unauthenticated, match="no caller identity"):
        who("gateway")
    assert who("tumblebug", VIEWER_MD) is None  # a service acts with full rights, whatever it sends
    assert who("admin-client", VIEWER_MD) is None
    for metadata in (VIEWER_MD, ()):  # no verified peer: refused, whatever it claims
        with pytest.raises(errors.Unauthenticated, match="client certificate"):
            who(None, metadata)
    with pytest.raises(errors.PermissionDenied, match="unknown role"):
        who("gateway", (("x-cb-role", "root"),))
