"""HttpRule path templates, and the table that matches an HTTP request to an RPC.

Template syntax (google/api/http.proto):

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    FieldPath = IDENT { "." IDENT } ;
    Verb     = ":" LITERAL ;

`*` matches one path segment, `**` zero or more (only last), `{name}` is `{name=*}`. A
single-segment variable is fully percent-decoded; a multi-segment one keeps `%2F` so its
slashes stay distinguishable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import unquote

from google.protobuf.descriptor import Descriptor, MethodDescriptor


class TemplateError(ValueError):
    """A path template that does not follow the HttpRule grammar."""


class SegmentKind(Enum):
    """What one segment of a path template matches: itself, one segment (`*`), or the rest (`**`)."""

    LITERAL = "literal"
    STAR = "*"
    DSTAR = "**"


@dataclass(frozen=True)
class Segment:
    kind: SegmentKind
    text: str = ""


@dataclass(frozen=True)
class Variable:
    """A field path bound to segments [start, end) of the template."""

    field_path: str
    start: int
    end: int


@dataclass(frozen=True)
class Template:
    """A parsed path template."""

    text: str
    segments: tuple[Segment, ...]
    variables: tuple[Variable, ...]
    verb: str = ""

    @property
    def literal_count(self) -> int:
        return sum(1 for s in self.segments if s.kind is SegmentKind.LITERAL)

    @property
    def has_dstar(self) -> bool:
        return any(s.kind is SegmentKind.DSTAR for s in self.segments)

    def openapi_path(self) -> str:
        """The template as an OpenAPI path: each variable becomes `{field.path}`."""
        parts: list[str] = []
        i = 0
        starts = {v.start: v for v in self.variables}
        while i < len(self.segments):
            var = starts.get(i)
            if var is not None:
                parts.append("{" + var.field_path + "}")
                i = max(var.end, i + 1)
                continue
            seg = self.segments[i]
            parts.append(seg.text if seg.kind is SegmentKind.LITERAL else seg.kind.value)
            i += 1
        return "/" + "/".join(parts) + (f":{self.verb}" if self.verb else "")

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """Bind the variables to raw (percent-encoded) request segments, or None."""
        n = len(segments)
        ends: list[int] = []  # ends[i]: index in `segments` after template segment i
        pos = 0
        for seg in self.segments:
            if seg.kind is SegmentKind.DSTAR:
                pos = n
            elif pos >= n:
                return None
            elif seg.kind is SegmentKind.LITERAL:
                if unquote(segments[pos]) != seg.text:
                    return None
                pos += 1
            else:
                if not segments[pos]:
                    return None
                pos += 1
            ends.append(pos)
        if pos != n:
            return None
        out: dict[str, str] = {}
        for var in self.variables:
            first = ends[var.start - 1] if var.start > 0 else 0
            raw = segments[first:ends[var.end - 1]]
            if len(raw) == 1 and var.end - var.start == 1 and self.segments[var.start].kind is SegmentKind.STAR:
                out[var.field_path] = unquote(raw[0])
            else:
                out[var.field_path] = "/".join(_unquote_keep_slash(r) for r in raw)
        return out


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_LITERAL = re.compile(r"^[A-Za-z0-9._~!$&'()+,;=@%-]+$")


def _unquote_keep_slash(raw: str) -> str:
    return "%2F".join(unquote(part) for part in re.split("%2[Ff]", raw))


def parse_template(text: str) -> Template:
    """Parse an HttpRule path template; raises TemplateError naming what is wrong."""
    if not text.startswith("/"):
        raise TemplateError(f"{text!r}: a template starts with '/'")
    body, verb = text[1:], ""
    # The verb follows the last ':' that is outside braces.
    depth, colon = 0, -1
    for i, ch in enumerate(body):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == ":" and depth == 0:
            colon = i
    if depth != 0:
        raise TemplateError(f"{text!r}: unbalanced braces")
    if colon >= 0:
        body, verb = body[:colon], body[colon + 1:]
        if not verb or not _LITERAL.match(verb):
            raise TemplateError(f"{text!r}: bad verb {verb!r}")
    segments: list[Segment] = []
    variables: list[Variable] = []
    for token in _split_top(body, text):
        if token.startswith("{"):
            inner = token[1:-1]
            path, _, pattern = inner.partition("=")
            if not _IDENT.match(path):
                raise TemplateError(f"{text!r}: bad field path {path!r}")
            if any(v.field_path == path for v in variables):
                raise TemplateError(f"{text!r}: {path} is bound twice")
            start = len(segments)
            for part in (pattern or "*").split("/"):
                if part.startswith("{"):
                    raise TemplateError(f"{text!r}: nested variables")
                segments.append(_segment(part, text))
            variables.append(Variable(path, start, len(segments)))
        else:
            segments.append(_segment(token, text))
    for i, seg in enumerate(segments):
        if seg.kind is SegmentKind.DSTAR and i != len(segments) - 1:
            raise TemplateError(f"{text!r}: '**' must be the last segment")
    return Template(text, tuple(segments), tuple(variables), verb)


def _split_top(body: str, text: str) -> list[str]:
    """Split on '/' outside braces."""
    out: list[str] = []
    depth, current = 0, ""
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "/" and depth == 0:
            out.append(current)
            current = ""
        else:
            current += ch
    out.append(current)
    if any(not t for t in out):
        raise TemplateError(f"{text!r}: empty segment")
    return out


def _segment(token: str, text: str) -> Segment:
    if token == "*":
        return Segment(SegmentKind.STAR)
    if token == "**":
        return Segment(SegmentKind.DSTAR)
    if not _LITERAL.match(token):
        raise TemplateError(f"{text!r}: bad segment {token!r}")
    return Segment(SegmentKind.LITERAL, unquote(token))


@dataclass(frozen=True)
class Rpc:
    """One RPC of a backend, as the gateway calls it."""

    backend: str
    method: MethodDescriptor
    input_class: Any
    output_class: Any

    @property
    def path(self) -> str:
        """The gRPC method path, `/package.Service/Method`."""
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def server_streaming(self) -> bool:
        return bool(self.method.server_streaming)

    @property
    def input(self) -> Descriptor:
        return self.method.input_type

    @property
    def output(self) -> Descriptor:
        return self.method.output_type


@dataclass(frozen=True)
class Route:
    """One HTTP binding (an HttpRule or one of its additional_bindings) of an RPC."""

    http_method: str
    template: Template
    rpc: Rpc
    body: str = ""
    response_body: str = ""

    def sort_key(self) -> tuple[int, int, int]:
        # Verbs first, then more literal segments, then templates without '**'.
        return (0 if self.template.verb else 1, -self.template.literal_count, 1 if self.template.has_dstar else 0)


_FOUND_CACHE = 4096


class NoRoute(Exception):
    """No route for this path (404), or none for this method (405, with the allowed ones)."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.allowed = sorted(set(allowed))
        super().__init__("method not allowed" if self.allowed else "no route")


@dataclass
class RouteTable:
    """Routes indexed by their first literal segment, tried most specific first."""

    routes: list[Route] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_head: dict[str, list[Route]] = {}
        self._wild: list[Route] = []
        for route in sorted(self.routes, key=Route.sort_key):
            first = route.template.segments[0]
            if first.kind is SegmentKind.LITERAL:
                self._by_head.setdefault(first.text, []).append(route)
            else:
                self._wild.append(route)
        # Paths found before: a resource read again skips matching every template of its service.
        self._found: dict[tuple[str, str], tuple[Route, dict[str, str]]] = {}

    def find(self, http_method: str, raw_path: str) -> tuple[Route, dict[str, str]]:
        """The route for a request and its bound variables; raises NoRoute."""
        key = (http_method, raw_path)
        hit = self._found.get(key)
        if hit is not None:
            return hit[0], dict(hit[1])
        route, bound = self._match(http_method, raw_path)
        if len(self._found) >= _FOUND_CACHE:
            self._found.clear()  # the table is immutable: forgetting costs only a match
        self._found[key] = (route, dict(bound))
        return route, bound

    def _match(self, http_method: str, raw_path: str) -> tuple[Route, dict[str, str]]:
        segments = raw_path.lstrip("/").split("/") if raw_path not in ("", "/") else []
        head = unquote(segments[0]) if segments else ""
        verb = ""
        verbless = segments
        if segments and ":" in segments[-1]:
            last, _, verb = segments[-1].rpartition(":")
            verbless = [*segments[:-1], last]
        allowed: list[str] = []
        for route in [*self._by_head.get(head, ()), *self._wild]:
            t = route.template
            if t.verb:
                if t.verb != unquote(verb):
                    continue
                bound = t.match(verbless)
            else:
                bound = t.match(segments)
            if bound is None:
                continue
            if route.http_method == http_method:
                return route, bound
            allowed.append(route.http_method)
        raise NoRoute(allowed)

    def __len__(self) -> int:
        return len(self.routes)


class RuleError(ValueError):
    """An HttpRule that cannot be served (unknown field, bad template); its RPC gets no route."""


_METHODS = ("get", "put", "post", "delete", "patch")


def bindings_of(rule: Any) -> list[tuple[str, str, str, str]]:
    """(HTTP method, template, body, response_body) of a google.api.HttpRule and its additional bindings."""
    out: list[tuple[str, str, str, str]] = []
    for r in [rule, *rule.additional_bindings]:
        pattern = r.WhichOneof("pattern")
        if pattern is None:
            continue
        if pattern == "custom":
            out.append((r.custom.kind.upper(), r.custom.path, r.body, r.response_body))
        elif pattern in _METHODS:
            out.append((pattern.upper(), getattr(r, pattern), r.body, r.response_body))
    return out


def field_chain(message: Descriptor, path: str) -> list[Any]:
    """The field descriptors along a dotted proto field path; raises RuleError."""
    chain: list[Any] = []
    current: Descriptor | None = message
    for name in path.split("."):
        if current is None:
            raise RuleError(f"{path}: {chain[-1].name} is not a message")
        f = current.fields_by_name.get(name)
        if f is None:
            raise RuleError(f"{path}: {current.full_name} has no field {name}")
        chain.append(f)
        current = f.message_type
    return chain


def check_route(route: Route) -> None:
    """Refuse a binding the transcoder could not honour, naming why."""
    rpc, t = route.rpc, route.template
    if rpc.method.client_streaming:
        raise RuleError("client-streaming RPCs cannot be transcoded")
    for var in t.variables:
        last = field_chain(rpc.input, var.field_path)[-1]
        if last.message_type is not None or _is_repeated(last):
            raise RuleError(f"path variable {var.field_path} must be a singular scalar field")
    if route.body and route.body != "*":
        last = field_chain(rpc.input, route.body)[-1]
        if "." in route.body:
            raise RuleError(f"body {route.body}: must be a top-level field")
        if any(v.field_path.split(".")[0] == route.body for v in t.variables) and last.message_type is None:
            raise RuleError(f"body {route.body} is also bound by the path")
    if route.response_body:
        if "." in route.response_body:
            raise RuleError(f"response_body {route.response_body}: must be a top-level field")
        field_chain(rpc.output, route.response_body)


def _is_repeated(f: Any) -> bool:
    return bool(f.is_repeated)
