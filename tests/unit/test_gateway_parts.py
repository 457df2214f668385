"""The gateway's parts on their own: templates, settings, error mapping, keys, rate limits, OpenAPI."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
from collections.abc import Awaitable
from pathlib import Path

import grpc
import pytest
from openapi_spec_validator import validate

from services.gateway import apikeys, auth, openapi
from services.gateway.backends import build_table
from services.gateway.deadline import deadline
from services.gateway.descriptors import Comments, from_installed, load_comments
from services.gateway.errors import HTTP_STATUS, GatewayError, bad_request
from services.gateway.ratelimit import RateLimiter, retry_after
from services.gateway.routes import NoRoute, TemplateError, parse_template
from services.gateway.settings import GatewaySettings, backend_addresses
from services.gateway.transcode import Violation
from services.roles import Principal, Role
from tests.support.gateway_library import library_files, library_schema

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text", ["v1/x", "/v1/{name", "/v1/{na-me}", "/v1/**/x", "/v1//x", "/v1/x:", "/v1/{a}/{a}",
                                  "/v1/{a={b}}", "/v1/x y"])
def test_bad_templates_are_refused(text: str) -> None:
    with pytest.raises(TemplateError):
        parse_template(text)


def test_template_parts_and_openapi_path() -> None:
    t = parse_template("/v1/{book.name=shelves/*/books/*}:move")
    assert t.verb == "move" and t.variables[0].field_path == "book.name" and t.literal_count == 3
    assert t.openapi_path() == "/v1/{book.name}:move"
    assert t.match(["v1", "shelves", "s", "books", "b"]) == {"book.name": "shelves/s/books/b"}
    assert t.match(["v1", "shelves", "s", "books"]) is None
    plain = parse_template("/spider/v1/connections/{name}")
    assert plain.match(["spider", "v1", "connections", "a%20b"]) == {"name": "a b"}
    assert plain.match(["spider", "v1", "connections", ""]) is None


def test_backends_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = GatewaySettings(services="spider,tumblebug,library")
    env = {"CB_SPIDER_ADDR": "127.0.0.1:1", "CB_TUMBLEBUG_ADDR": "", "CB_LIBRARY_ADDR": "127.0.0.1:3"}
    assert backend_addresses(settings, env) == {"spider": "127.0.0.1:1", "library": "127.0.0.1:3"}
    assert backend_addresses(GatewaySettings(), {}) == {
        "spider": "127.0.0.1:2048", "tumblebug": "127.0.0.1:50252", "dragonfly": "127.0.0.1:9999",
        "ladybug": "127.0.0.1:50254"}
    with pytest.raises(ValueError, match="CB_LIBRARY_ADDR"):
        backend_addresses(GatewaySettings(services="library"), {})


def test_status_mapping_follows_the_design() -> None:
    expected = {"NOT_FOUND": 404, "ALREADY_EXISTS": 409, "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 409,
                "ABORTED": 409, "RESOURCE_EXHAUSTED": 429, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
                "PERMISSION_DENIED": 403, "UNAUTHENTICATED": 401}
    assert {code: HTTP_STATUS[grpc.StatusCode[code]] for code in expected} == expected
    assert set(HTTP_STATUS) == set(grpc.StatusCode)
    body = bad_request("x: bad", [Violation("x", "bad")]).body()
    assert body == {"code": 3, "message": "x: bad", "details": [{
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": "x", "description": "bad"}]}]}


def test_rate_limiter_bursts_then_asks_to_wait() -> None:
    now = [100.0]
    limiter = RateLimiter(rate=2, burst=3, clock=lambda: now[0])
    assert [limiter.check("a") for _ in range(3)] == [0, 0, 0]
    wait = limiter.check("a")
    assert 0.4 < wait <= 0.5 and retry_after(wait) == "1"
    assert limiter.check("b") == 0  # buckets are per key
    now[0] += 0.5
    assert limiter.check("a") == 0
    assert RateLimiter(rate=0, burst=1).check("x") == 0  # 0 switches it off


def static(**keys: str) -> dict[str, auth.StaticKey]:
    return {name: auth.StaticKey(auth.hash_key(key, rounds=4), Principal(name, Role.ADMIN)) for name, key in keys.items()}


async def test_keys_bearer_basic_and_the_cache() -> None:
    store = auth.KeyStore(static(admin="k1", ci="k2"))
    authenticator = auth.Authenticator(store, failures_per_second=100)
    assert (await authenticator.authenticate("Bearer k2", "a")).name == "ci"
    basic = base64.b64encode(b"admin:k1").decode()
    assert (await authenticator.authenticate(f"Basic {basic}", "a")).name == "admin"
    for wrong in ("Bearer nope", "Basic " + base64.b64encode(b"admin:k2").decode()):  # another client's key
        with pytest.raises(GatewayError) as err:
            await authenticator.authenticate(wrong, "a")
        assert err.value.http_status == 401
    known = store.known(auth.Credentials("k2"))
    assert known is not None and known.name == "ci" and store.known(auth.Credentials("nope")) is None
    assert store.recently_rejected(auth.Credentials("nope"))
    assert auth.credentials_of(f"Basic {basic}") == auth.Credentials("k1", "admin")
    assert auth.credentials_of("Bearer  abc ") == auth.Credentials("abc")
    assert auth.credentials_of("Basic !!!") is None and auth.credentials_of("Digest x") is None


async def test_authenticator_answers_401_then_429_for_repeated_failures() -> None:
    store = auth.KeyStore(static(admin="good"))
    authenticator = auth.Authenticator(store, failures_per_second=1)
    assert (await authenticator.authenticate("Bearer good", "10.0.0.1")).name == "admin"
    codes = []
    for _ in range(4):
        try:
            await authenticator.authenticate("Bearer bad", "10.0.0.1")
        except GatewayError as exc:
            codes.append((exc.http_status, exc.headers))
    assert codes[0][0] == 401 and "Bearer" in codes[0][1]["WWW-Authenticate"]
    assert codes[-1][0] == 429 and int(codes[-1][1]["Retry-After"]) >= 1
    # A key that checked out before still works from that address.
    assert (await authenticator.authenticate("Bearer good", "10.0.0.1")).name == "admin"


async def test_concurrent_wrong_keys_hit_429_before_bcrypt_runs() -> None:
    """100 different wrong keys at once from one address: only the allowance (burst) reaches bcrypt,
    the rest get 429 at once; another address still gets its own allowance."""
    store = auth.KeyStore(static(admin="good"))
    authenticator = auth.Authenticator(store, failures_per_second=5, concurrency=2)
    burst = 10  # twice the rate

    def attempt(key: str, address: str) -> Awaitable[int]:
        return _status(authenticator, f"Bearer {key}", address)

    before = auth.BCRYPT_CHECKS._value.get()
    codes = await asyncio.gather(*(attempt(f"wrong-{i}", "10.0.0.9") for i in range(100)))
    checks = auth.BCRYPT_CHECKS._value.get() - before
    assert codes.count(401) == burst and codes.count(429) == 100 - burst
    assert checks == burst * len(store.static)  # one static key: one bcrypt per admitted attempt
    assert await attempt("good", "10.0.0.10") == 200  # another address is not held up
    # The same wrong key sent 50 times at once costs one bcrypt (one shared check).
    fresh = auth.Authenticator(store, failures_per_second=100)
    before = auth.BCRYPT_CHECKS._value.get()
    codes = await asyncio.gather(*(_status(fresh, "Bearer same-wrong", "10.0.0.11") for _ in range(50)))
    assert set(codes) == {401} and auth.BCRYPT_CHECKS._value.get() - before == 1


async def _status(authenticator: auth.Authenticator, header: str, address: str) -> int:
    try:
        await authenticator.authenticate(header, address)
    except GatewayError as exc:
        return exc.http_status
    return 200


def test_keys_file_roles_and_namespaces() -> None:
    h = auth.hash_key("k", rounds=4)
    keys = auth.parse_keys_file(f"ops:{h}:operator:team-a\nlook:{h}:viewer\nboss:{h}\n")
    assert keys["ops"].principal == Principal("ops", Role.OPERATOR, "team-a")
    assert keys["look"].principal == Principal("look", Role.VIEWER)
    assert keys["boss"].principal == Principal("boss", Role.ADMIN)
    with pytest.raises(ValueError, match="line 1: unknown role"):
        auth.parse_keys_file(f"x:{h}:root\n")


def test_stored_keys_carry_their_name() -> None:
    key = auth.generate_key("ci-bot")
    assert apikeys.key_name(key) == "ci-bot"
    assert apikeys.key_name(auth.generate_key()) == "" and apikeys.key_name("cb.x") == ""


def test_keys_file_and_admin_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    auth.write_keys_file(path, {"admin": auth.hash_key("k", rounds=4)})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(auth.parse_keys_file(path.read_text() + "# comment\n\n")) == ["admin"]
    with pytest.raises(ValueError, match="line 1"):
        auth.parse_keys_file("admin:plaintext\n")
    key, where = auth.admin_key(tmp_path / "run", {})
    assert where is not None and stat.S_IMODE(where.stat().st_mode) == 0o600 and where.read_text().strip() == key
    assert auth.admin_key(tmp_path / "run", {}) == (key, where)  # kept across restarts
    assert auth.admin_key(tmp_path / "run", {"CB_ADMIN_API_KEY": "given"}) == ("given", None)


def test_openapi_document_is_valid_and_carries_comments() -> None:
    comments = load_comments(ROOT / "protos")
    assert "VM" in comments.get("cbapi.spider.v1.Spider.CreateVm")
    spider = from_installed("spider")
    assert spider is not None
    doc = openapi.document(build_table([spider, library_schema()]), comments)
    validate(doc)
    json.dumps(doc)
    create_vm = doc["paths"]["/spider/v1/connections/{connection}/vms"]["post"]
    assert "cloud accepted" in create_vm["description"]
    assert create_vm["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/cbapi.spider.v1.Vm"}
    assert {p["name"] for p in create_vm["parameters"]} == {"connection", "requestId", "validateOnly"}
    list_books = doc["paths"]["/v1/{parent}/books"]["get"]
    assert {"filter.author", "filter.year.from", "genres", "since", "minRating"} <= {
        p["name"] for p in list_books["parameters"]}
    schemas = doc["components"]["schemas"]
    assert schemas["test.library.v1.Book"]["properties"]["copies"]["type"] == "string"  # int64
    assert schemas["test.library.v1.Book"]["additionalProperties"] is False
    assert len({op["operationId"] for item in doc["paths"].values() for op in item.values()}) == sum(
        len(item) for item in doc["paths"].values())


def test_comments_are_optional() -> None:
    assert load_comments(None).by_symbol == {} and load_comments(Path("/nonexistent")).by_symbol == {}
    doc = openapi.document(build_table([library_schema()]), Comments())
    validate(doc)
    assert len(library_files()) > 1


def test_grpc_timeout_header_sets_the_deadline_within_bounds() -> None:
    assert deadline(None, 30.0, 3700.0) == 30.0
    assert deadline("90S", 30.0, 3700.0) == 90.0
    assert deadline("500m", 30.0, 3700.0) == 0.5
    assert deadline("2H", 30.0, 3700.0) == 3700.0  # capped
    for bad in ("90", "1.5S", "-3S", "0S", "S", "10 s"):
        with pytest.raises(GatewayError) as err:
            deadline(bad, 30.0, 3700.0)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and "Grpc-Timeout" in err.value.message


def test_route_table_remembers_found_paths_without_sharing_bindings() -> None:
    table = build_table([from_installed("spider")])  # type: ignore[list-item]
    path = "/spider/v1/connections/c1/vms/web-1"
    route, bound = table.find("GET", path)
    assert route.rpc.path.endswith("/GetVm") and bound == {"connection": "c1", "name": "web-1"}
    assert table._found[("GET", path)][0] is route  # the next request skips matching
    bound["name"] = "changed by a caller"
    again, bound_again = table.find("GET", path)
    assert again is route and bound_again == {"connection": "c1", "name": "web-1"}
    with pytest.raises(NoRoute) as wrong:
        table.find("PUT", path)
    assert "GET" in wrong.value.allowed and ("PUT", path) not in table._found
