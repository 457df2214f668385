"""A test-only API, `test.library.v1.Library`, that uses every HttpRule feature the gateway
supports (multi-segment variables, `**`, verbs, `body: "*"` and `body: "field"`, response_body,
additional_bindings, nested and repeated query parameters, well-known types), compiled from
source here; and the transcoding tests that run against it.

The e2e tests serve the same API from a real gRPC server to show a new service gets routes
from a setting alone.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pool, message_factory

from services.gateway.backends import build_table, routes_of
from services.gateway.routes import NoRoute, Route, RouteTable
from services.gateway.transcode import BadInput, build_request, response_value
from tests.support.gateway_library import library_schema


def message_class(pool: descriptor_pool.DescriptorPool, name: str) -> Any:
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"test.library.v1.{name}"))


# ---------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def table() -> RouteTable:
    return build_table([library_schema()])


def find(table: RouteTable, method: str, path: str) -> tuple[Route, dict[str, str]]:
    return table.find(method, path)


def request(table: RouteTable, method: str, path: str, query: list[tuple[str, str]] | None = None,
            body: bytes = b"") -> Any:
    route, bound = table.find(method, path.split("?")[0])
    return build_request(route, bound, query or [], body)


def test_every_annotated_binding_becomes_a_route(table: RouteTable) -> None:
    names = sorted(f"{r.http_method} {r.template.text}" for r in table.routes)
    assert len(names) == 12  # 10 annotated RPCs + 2 additional bindings; NotRouted has no rule
    assert "GET /v1/by-path/{name=**}" in names and "GET /v1/echo" in names
    assert not any(r.rpc.method.name == "NotRouted" for r in table.routes)


def test_multi_segment_variables_and_double_star(table: RouteTable) -> None:
    route, bound = find(table, "GET", "/v1/shelves/s1/books/b%2F2")
    assert route.rpc.method.name == "GetBook" and bound == {"name": "shelves/s1/books/b%2F2"}
    route, bound = find(table, "GET", "/v1/by-path/a/b/c")
    assert route.rpc.method.name == "GetBook" and bound == {"name": "a/b/c"}
    route, bound = find(table, "GET", "/v1/shelves/s1/books/b1/author")
    assert route.rpc.method.name == "GetAuthor"


def test_verbs_win_over_plain_templates(table: RouteTable) -> None:
    route, bound = find(table, "POST", "/v1/shelves/s1/books/b1:move")
    assert route.rpc.method.name == "MoveBook" and bound == {"name": "shelves/s1/books/b1"}
    route, bound = find(table, "GET", "/v1/shelves/s1:watch")
    assert route.rpc.method.name == "WatchShelf" and bound == {"parent": "shelves/s1"}


def test_wrong_method_lists_the_allowed_ones(table: RouteTable) -> None:
    with pytest.raises(NoRoute) as info:
        find(table, "PUT", "/v1/shelves/s1/books/b1")
    assert info.value.allowed == ["DELETE", "GET", "PATCH"]
    with pytest.raises(NoRoute) as info:
        find(table, "GET", "/v1/nothing/here")
    assert info.value.allowed == []


def test_body_field_path_variable_and_query(table: RouteTable) -> None:
    msg = request(table, "POST", "/v1/shelves/s1/books", [("requestId", "r1")],
                  b'{"title": "Dune", "author": {"name": "Herbert", "born": 1920}, "ratings": {"x": 5}, '
                  b'"genre": "FICTION", "published": "1965-08-01T00:00:00Z", "copies": "12", "tags": ["a", "b"]}')
    assert msg.parent == "shelves/s1" and msg.request_id == "r1"
    assert msg.book.author.born == 1920 and msg.book.ratings["x"] == 5 and msg.book.copies == 12
    assert msg.book.genre == 1 and msg.book.published.seconds == -139449600 and list(msg.book.tags) == ["a", "b"]


def test_nested_path_variable_with_body_field(table: RouteTable) -> None:
    msg = request(table, "PATCH", "/v1/shelves/s1/books/b1", [("update_mask", "title,author.name")],
                  b'{"title": "New"}')
    assert msg.book.name == "shelves/s1/books/b1" and msg.book.title == "New"
    assert list(msg.update_mask.paths) == ["title", "author.name"]


def test_query_nested_repeated_enum_and_well_known(table: RouteTable) -> None:
    msg = request(table, "GET", "/v1/shelves/s1/books", [
        ("pageSize", "5"), ("filter.author", "Le Guin"), ("filter.year.from", "1960"), ("filter.year.to", "1980"),
        ("genres", "FICTION"), ("genres", "2"), ("since", "2020-01-02T03:04:05Z"), ("min_rating", "3"),
        ("ids", "a"), ("ids", "b")])
    assert msg.page_size == 5 and msg.filter.author == "Le Guin"
    assert (msg.filter.year.__getattribute__("from"), msg.filter.year.to) == (1960, 1980)
    assert list(msg.genres) == [1, 2] and msg.since.seconds == 1577934245
    assert msg.HasField("min_rating") and msg.min_rating.value == 3 and list(msg.ids) == ["a", "b"]


def test_body_star_accepts_both_naming_styles_and_an_empty_body(table: RouteTable) -> None:
    msg = request(table, "POST", "/v1/shelves/s1/books/b1:move", body=b'{"other_shelf": "s2"}')
    assert msg.other_shelf == "s2" and msg.name == "shelves/s1/books/b1"
    msg = request(table, "POST", "/v1/shelves/s1/books/b1:move", body=b'{"otherShelf": "s3"}')
    assert msg.other_shelf == "s3"
    assert request(table, "POST", "/v1/shelves/s1/books/b1:move").name == "shelves/s1/books/b1"


def test_every_scalar_type_of_the_json_mapping(table: RouteTable) -> None:
    msg = request(table, "POST", "/v1/echo", body=(
        b'{"i32": -5, "i64": "-9007199254740993", "u32": 4294967295, "u64": "18446744073709551615", '
        b'"f": 1.5, "d": "NaN", "b": true, "s": "x", "by": "aGk=", "genre": 2, "ri": [1, "2"], '
        b'"m": {"7": "seven"}, "dur": "1.5s", "st": {"k": [1, "a"]}, "v": null, "left": "L", "wb": false, '
        b'"authors": [{"name": "A"}]}'))
    assert msg.i64 == -9007199254740993 and msg.u64 == 2**64 - 1 and msg.by == b"hi" and msg.m[7] == "seven"
    assert msg.dur.nanos == 500_000_000 and msg.st["k"][1] == "a" and msg.HasField("v") and msg.left == "L"
    assert msg.HasField("wb") and msg.wb.value is False and msg.authors[0].name == "A"


@pytest.mark.parametrize(("body", "field"), [
    (b'{"i32": 2147483648}', "i32"),
    (b'{"i32": 1.5}', "i32"),
    (b'{"i32": "x"}', "i32"),
    (b'{"u32": -1}', "u32"),
    (b'{"f": 1e39}', "f"),
    (b'{"b": "true"}', "b"),
    (b'{"s": 5}', "s"),
    (b'{"by": "***"}', "by"),
    (b'{"genre": "POETRY"}', "genre"),
    (b'{"ri": 1}', "ri"),
    (b'{"ri": [1, "z"]}', "ri[1]"),
    (b'{"m": {"x": "y"}}', "m[x]"),
    (b'{"dur": "soon"}', "dur"),
    (b'{"left": "a", "right": "b"}', "right"),
    (b'{"s": "a", "S": "b"}', "S"),
    (b'{"i32": 1, "i32": 2, "nope": 1}', "nope"),
    (b'{"authors": [{"name": "A", "age": 3}]}', "authors[0].age"),
    (b'{"authors": [null]}', "authors[0]"),
    (b'{"d": NaN}', "body"),
    (b'[1, 2]', ""),
    (b'{"s": ', "body"),
    (b'\xff', "body"),
])
def test_bad_json_names_the_field(table: RouteTable, body: bytes, field: str) -> None:
    with pytest.raises(BadInput) as info:
        request(table, "POST", "/v1/echo", body=body)
    assert info.value.violations[0].field == field, info.value


@pytest.mark.parametrize(("query", "field"), [
    ([("pageSize", "ten")], "page_size"),
    ([("pageSize", "")], "page_size"),
    ([("pageSize", "1"), ("page_size", "2")], "page_size"),
    ([("filter.nope", "x")], "filter.nope"),
    ([("filter", "x")], "filter"),
    ([("genres", "POETRY")], "genres"),
    ([("since", "yesterday")], "since"),
    ([("parent", "shelves/x")], "parent"),
    ([("filter.year.from.x", "1")], "filter.year.from.x"),
])
def test_bad_query_names_the_field(table: RouteTable, query: list[tuple[str, str]], field: str) -> None:
    with pytest.raises(BadInput) as info:
        request(table, "GET", "/v1/shelves/s1/books", query)
    assert info.value.violations[0].field == field, info.value


def test_query_is_refused_where_the_body_sets_the_field(table: RouteTable) -> None:
    with pytest.raises(BadInput) as info:
        request(table, "POST", "/v1/shelves/s1/books", [("book.title", "x")], b"{}")
    assert info.value.violations[0].field == "book.title"
    with pytest.raises(BadInput):
        request(table, "POST", "/v1/echo", [("s", "x")], b"{}")
    with pytest.raises(BadInput):  # a GET binding takes no body
        request(table, "GET", "/v1/echo", body=b'{"s": "x"}')


def test_response_body_and_output_naming(table: RouteTable) -> None:
    pool = table.routes[0].rpc.input.file.pool
    book = message_class(pool, "Book")(name="n", author={"name": "A", "born": 1}, copies=3)
    route, _ = find(table, "GET", "/v1/shelves/s/books/b/author")
    assert response_value(route, book) == {"name": "A", "born": 1}
    route, _ = find(table, "GET", "/v1/shelves/s/books/b")
    out = response_value(route, book)
    # lowerCamelCase, int64 as a string, unpopulated fields present.
    assert out["copies"] == "3" and out["tags"] == [] and out["genre"] == "GENRE_UNSPECIFIED" and out["title"] == ""


def test_spider_routes_from_installed_code() -> None:
    from services.gateway.descriptors import from_installed

    schema = from_installed("spider")
    assert schema is not None and schema.source == "installed"
    routes = routes_of(schema)
    table = RouteTable(routes)
    route, bound = table.find("POST", "/spider/v1/connections/c1/security-groups/sg1/rules:remove")
    assert route.rpc.method.name == "RemoveRules" and bound == {"connection": "c1", "name": "sg1"}
    route, _ = table.find("DELETE", "/spider/v1/connections/c1/security-groups/sg1/rules")
    assert route.rpc.method.name == "RemoveRules"
    route, bound = table.find("POST", "/spider/v1/connections/c1/vms:register")
    assert route.rpc.method.name == "RegisterResource" and bound["collection"] == "vms"
    assert from_installed("no-such-service") is None
