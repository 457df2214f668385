"""One OpenAPI 3 document for every backend, generated from the route table's descriptors.

Paths and operations come from the HttpRules (additional bindings included), schemas from the
messages as the proto3 JSON mapping writes them (lowerCamelCase, int64 as strings, enums by
name), descriptions from the proto comments. Message schemas forbid unknown properties, as the
transcoder does.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from services.gateway.descriptors import Comments
from services.gateway.routes import Route, RouteTable, SegmentKind
from services.gateway.transcode import WELL_KNOWN, is_map, is_repeated

F = FieldDescriptor
Schema = dict[str, Any]

_INT32 = {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
_UINT32 = {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**32 - 1}
_INT64 = {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
_UINT64 = {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}
_SCALARS: dict[int, Schema] = {
    F.TYPE_INT32: _INT32, F.TYPE_SINT32: _INT32, F.TYPE_SFIXED32: _INT32,
    F.TYPE_UINT32: _UINT32, F.TYPE_FIXED32: _UINT32,
    F.TYPE_INT64: _INT64, F.TYPE_SINT64: _INT64, F.TYPE_SFIXED64: _INT64,
    F.TYPE_UINT64: _UINT64, F.TYPE_FIXED64: _UINT64,
    F.TYPE_DOUBLE: {"type": "number", "format": "double"}, F.TYPE_FLOAT: {"type": "number", "format": "float"},
    F.TYPE_BOOL: {"type": "boolean"}, F.TYPE_STRING: {"type": "string"},
    F.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_WELL_KNOWN_SCHEMAS: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$", "example": "1.5s"},
    "google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated field paths."},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}, "required": ["@type"],
                            "additionalProperties": True},
}
_WRAPPED: dict[str, int] = {
    "google.protobuf.DoubleValue": F.TYPE_DOUBLE, "google.protobuf.FloatValue": F.TYPE_FLOAT,
    "google.protobuf.Int64Value": F.TYPE_INT64, "google.protobuf.UInt64Value": F.TYPE_UINT64,
    "google.protobuf.Int32Value": F.TYPE_INT32, "google.protobuf.UInt32Value": F.TYPE_UINT32,
    "google.protobuf.BoolValue": F.TYPE_BOOL, "google.protobuf.StringValue": F.TYPE_STRING,
    "google.protobuf.BytesValue": F.TYPE_BYTES,
}
# How deep nested message fields are offered as query parameters (a.b.c).
_QUERY_DEPTH = 3
_STATUS = "google.rpc.Status"
_STATUS_SCHEMA: Schema = {
    "type": "object",
    "description": "An error: the gRPC status code, a readable message, and google.rpc details "
                   "(google.rpc.BadRequest carries the field violations).",
    "properties": {
        "code": {"type": "integer", "format": "int32", "description": "The gRPC status code."},
        "message": {"type": "string"},
        "details": {"type": "array", "items": _WELL_KNOWN_SCHEMAS["google.protobuf.Any"]},
    },
    "required": ["code", "message"],
}


class DocumentBuilder:
    """Builds the document; component schemas are added as operations refer to them."""

    def __init__(self, comments: Comments) -> None:
        self.comments = comments
        self.schemas: dict[str, Schema] = {_STATUS: _STATUS_SCHEMA}

    def ref(self, message: Descriptor) -> Schema:
        name = message.full_name
        if name in _WELL_KNOWN_SCHEMAS:
            return dict(_WELL_KNOWN_SCHEMAS[name])
        if name in _WRAPPED:
            return {**_SCALARS[_WRAPPED[name]], "nullable": True}
        if name not in self.schemas:
            self.schemas[name] = {}  # reserve first: messages may refer to themselves
            self.schemas[name] = self.message_schema(message)
        return {"$ref": f"#/components/schemas/{name}"}

    def message_schema(self, message: Descriptor, leave_out: frozenset[str] = frozenset()) -> Schema:
        properties: dict[str, Schema] = {}
        for f in message.fields:
            if f.name in leave_out:
                continue
            properties[f.json_name] = self.field_schema(f)
        schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
        text = self.comments.get(message.full_name)
        if text:
            schema["description"] = text
        return schema

    def field_schema(self, f: FieldDescriptor) -> Schema:
        schema = self._value_schema(f)
        text = self.comments.get(f.full_name)
        if text:
            if "$ref" in schema:
                schema = {"allOf": [schema]}
            schema = {**schema, "description": text}
            if text.lower().startswith("output only"):
                schema["readOnly"] = True
        return schema

    def _value_schema(self, f: FieldDescriptor) -> Schema:
        if is_map(f):
            assert f.message_type is not None
            value = f.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self._single(value)}
        if is_repeated(f):
            return {"type": "array", "items": self._single(f)}
        return self._single(f)

    def _single(self, f: FieldDescriptor) -> Schema:
        if f.message_type is not None:
            return self.ref(f.message_type)
        if f.enum_type is not None:
            return {"type": "string", "enum": list(f.enum_type.values_by_name)}
        return dict(_SCALARS[f.type])

    def query_parameters(self, message: Descriptor, prefix: str, json_prefix: str, taken: set[str],
                         depth: int = 0, seen: tuple[str, ...] = ()) -> list[Schema]:
        """Fields a query string may set: scalars, repeated scalars, nested singular messages."""
        out: list[Schema] = []
        for f in message.fields:
            path = f"{prefix}{f.name}"
            if path in taken or is_map(f):
                continue
            name = f"{json_prefix}{f.json_name}"
            mt = f.message_type
            if mt is not None and mt.full_name not in WELL_KNOWN:
                if not is_repeated(f) and depth + 1 < _QUERY_DEPTH and mt.full_name not in seen:
                    out += self.query_parameters(mt, f"{path}.", f"{name}.", taken, depth + 1,
                                                 (*seen, message.full_name))
                continue
            if mt is not None and mt.full_name not in _WRAPPED and mt.full_name not in (
                    "google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"):
                continue
            schema = self._value_schema(f)
            param: Schema = {"name": name, "in": "query", "required": False, "schema": schema}
            if is_repeated(f):
                param.update(style="form", explode=True)
            text = self.comments.get(f.full_name)
            if text:
                param["description"] = text
            out.append(param)
        return out

    def operation(self, route: Route, operation_id: str) -> Schema:
        rpc = route.rpc
        t = route.template
        params: list[Schema] = []
        path_fields: set[str] = set()
        for var in t.variables:
            path_fields.add(var.field_path)
            f = _field(rpc.input, var.field_path)
            schema = self._single(f)
            if schema.get("type") == "string" and schema.get("format") is None and "enum" not in schema:
                # A path segment cannot be empty or hold a slash (multi-segment variables aside).
                multi = var.end - var.start > 1 or any(s.kind is SegmentKind.DSTAR for s in t.segments[var.start:var.end])
                schema = {**schema, "minLength": 1} if multi else {**schema, "pattern": "^[^/]+$"}
            param: Schema = {"name": var.field_path, "in": "path", "required": True, "schema": schema}
            text = self.comments.get(f.full_name)
            if text:
                param["description"] = text
            params.append(param)
        op: Schema = {
            "operationId": operation_id,
            "tags": [rpc.method.containing_service.name],
            "summary": _summary(rpc.method.name, self.comments.get(rpc.method.full_name)),
        }
        description = self.comments.get(rpc.method.full_name)
        if description:
            op["description"] = description
        if route.body == "*":
            top = frozenset(p.split(".")[0] for p in path_fields)
            op["requestBody"] = {"required": False, "content": {"application/json": {
                "schema": self.message_schema(rpc.input, leave_out=top)}}}
        elif route.body:
            body_field = rpc.input.fields_by_name[route.body]
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": self._value_schema(body_field)}}}
            taken = path_fields | {route.body}
            params += self.query_parameters(rpc.input, "", "", taken)
        else:
            params += self.query_parameters(rpc.input, "", "", path_fields)
        if params:
            op["parameters"] = params
        out = self._response_schema(route)
        if rpc.server_streaming:
            ok = {"description": "A stream of Server-Sent Events: `data:` holds one message as JSON; "
                                 "`event: error` carries an error status, `event: end` the normal end.",
                  "content": {"text/event-stream": {"schema": {"type": "string"}}}}
            op["x-stream-message"] = out
        else:
            ok = {"description": "OK", "content": {"application/json": {"schema": out}}}
        error = {"application/json": {"schema": {"$ref": f"#/components/schemas/{_STATUS}"}}}
        op["responses"] = {"200": ok, "default": {
            "description": "An error (400 bad input, 401 no or wrong API key, 404, 409, 429, 503 …)",
            "content": error}}
        if rpc.server_streaming:
            # Errors before the first event are ordinary JSON responses, not events.
            op["responses"]["404"] = {"description": "The resource to watch does not exist", "content": error}
        return op

    def _response_schema(self, route: Route) -> Schema:
        if route.response_body:
            return self._value_schema(route.rpc.output.fields_by_name[route.response_body])
        return self.ref(route.rpc.output)


def _field(message: Descriptor, path: str) -> FieldDescriptor:
    current: Descriptor | None = message
    f: FieldDescriptor | None = None
    for part in path.split("."):
        assert current is not None
        f = current.fields_by_name[part]
        current = f.message_type
    assert f is not None
    return f


def _summary(method: str, comment: str) -> str:
    first = comment.split(".")[0].split("\n")[0].strip()
    return first or method


def document(table: RouteTable, comments: Comments, title: str = "cb-suite API", version: str = "v1",
             extra_paths: dict[str, Schema] | None = None) -> Schema:
    """The OpenAPI 3.0 document of every route in `table`."""
    builder = DocumentBuilder(comments)
    paths: dict[str, dict[str, Schema]] = {}
    counts: dict[str, int] = {}
    for route in sorted(table.routes, key=lambda r: (r.template.openapi_path(), r.http_method)):
        base = f"{route.rpc.method.containing_service.name}_{route.rpc.method.name}"
        counts[base] = counts.get(base, 0) + 1
        operation_id = base if counts[base] == 1 else f"{base}{counts[base]}"
        paths.setdefault(route.template.openapi_path(), {})[route.http_method.lower()] = builder.operation(
            route, operation_id)
    for path, item in (extra_paths or {}).items():
        paths.setdefault(path, {}).update(item)
    tags = sorted({r.rpc.method.containing_service for r in table.routes}, key=lambda s: s.name)
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version,
                 "description": "HTTP/JSON for every service of the suite, transcoded to gRPC "
                                "(google.api.http). Authenticate with `Authorization: Bearer <API key>` "
                                "or HTTP Basic `admin:<API key>`."},
        "tags": [{"name": s.name, "description": comments.get(s.full_name)} for s in tags],
        "paths": paths,
        "components": {
            "schemas": builder.schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "basic": {"type": "http", "scheme": "basic"}},
        },
        "security": [{"bearer": []}, {"basic": []}],
    }
