"""Message → JSON data, as `json_format.MessageToDict(msg, always_print_fields_with_no_presence=True)`
writes it, from a plan compiled once per message type.

MessageToDict decides everything again for every field of every message it prints (the field's
kind, its JSON name, whether it is a map entry, a wrapper, a well-known type); it was a tenth of
the gateway's CPU per proxied GET. Here those decisions are made once per descriptor; a message
is then one pass over a tuple of fields. The output is the same object, keys in the same order:
first the populated fields by field number (as `ListFields` gives them), then the unpopulated
fields without presence in declaration order. Well-known types (Timestamp, Duration, Struct,
wrappers, Any, FieldMask …) and any message with extensions are handed to json_format itself.
`tests/unit/test_gateway_protojson.py` compares the two over every message type of cbapi.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message

F = FieldDescriptor
Convert = Callable[[Any], Any]

# The reference printer, for the types it handles specially and for each field's default value.
_PRINTER = json_format._Printer(always_print_fields_with_no_presence=True)  # type: ignore[attr-defined]

_INT64 = frozenset({F.CPPTYPE_INT64, F.CPPTYPE_UINT64})

# How a field is read: kinds in the compiled plan.
_PRESENCE, _REPEATED, _MAP, _SCALAR, _FLOAT = range(5)


def to_dict(msg: Message) -> Any:
    """The proto3 JSON form of `msg`, unpopulated fields without presence included."""
    return _writer(msg.DESCRIPTOR)(msg)


def _special(descriptor: Descriptor) -> bool:
    """Types json_format prints in their own way (or that carry extensions): left to it."""
    return (descriptor.file.name.startswith("google/protobuf/")
            or descriptor.full_name in json_format._WKTJSONMETHODS  # type: ignore[attr-defined]
            or bool(descriptor.extension_ranges))


@lru_cache(maxsize=4096)
def _writer(descriptor: Descriptor) -> Callable[[Message], Any]:
    if descriptor.full_name in _OWN_TEXT:
        return _own_text  # what the printer ends up calling, without its dispatch
    if _special(descriptor):
        return _PRINTER._MessageToJsonObject
    return _Plan(descriptor).write


# Well-known types whose JSON form is their own ToJsonString().
_OWN_TEXT = frozenset({"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"})


def _own_text(msg: Message) -> Any:
    return msg.ToJsonString()  # type: ignore[attr-defined]


def _message(msg: Message) -> Any:
    return _writer(msg.DESCRIPTOR)(msg)


def _enum(field: FieldDescriptor) -> Convert:
    enum = field.enum_type
    assert enum is not None
    if enum.full_name == "google.protobuf.NullValue":
        return lambda value: None
    # Each known number's JSON text, as the reference writes it (names, or a json_name option).
    names = {number: _PRINTER._FieldToJsonObject(field, number) for number in enum.values_by_number}

    def convert(value: int) -> Any:
        name = names.get(value)
        if name is None:  # an unknown number: written as a number (open enum) or refused (closed)
            return _PRINTER._FieldToJsonObject(field, value)
        return name

    return convert


def _float(value: float) -> Any:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _float32(value: float) -> Any:
    if math.isfinite(value):
        return type_checkers.ToShortestFloat(value)
    return _float(value)


def _bytes(value: bytes) -> str:
    return base64.b64encode(value).decode("utf-8")


def _converter(field: FieldDescriptor) -> Convert | None:
    """How one value of `field` becomes JSON; None: the value is already its JSON form."""
    cpp = field.cpp_type
    if cpp == F.CPPTYPE_MESSAGE:
        return _message
    if cpp == F.CPPTYPE_ENUM:
        return _enum(field)
    if field.type == F.TYPE_BYTES:
        return _bytes
    if cpp in _INT64:
        return str
    if cpp == F.CPPTYPE_DOUBLE:
        return _float
    if cpp == F.CPPTYPE_FLOAT:
        return _float32
    return None  # string, bool, 32-bit integers


def _map_key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def _is_map(field: FieldDescriptor) -> bool:
    return bool(field.message_type is not None and field.message_type.GetOptions().map_entry)


class _Plan:
    """The fields of one message type, in field-number order, each with how to read and write it."""

    def __init__(self, descriptor: Descriptor) -> None:
        by_number = sorted(descriptor.fields, key=lambda f: f.number)
        self.fields = tuple(self._step(f) for f in by_number)
        # Fields without presence are written even when unpopulated, after the populated ones,
        # in declaration order, with their default's JSON form.
        self.defaults = tuple((f.json_name, self._default(f)) for f in descriptor.fields if not f.has_presence)

    @staticmethod
    def _step(f: FieldDescriptor) -> tuple[str, str, int, Convert | None]:
        if _is_map(f):
            entry = f.message_type
            assert entry is not None
            return f.json_name, f.name, _MAP, _converter(entry.fields_by_name["value"])
        if f.is_repeated:
            return f.json_name, f.name, _REPEATED, _converter(f)
        if f.has_presence:
            return f.json_name, f.name, _PRESENCE, _converter(f)
        if f.cpp_type in (F.CPPTYPE_DOUBLE, F.CPPTYPE_FLOAT):
            return f.json_name, f.name, _FLOAT, _converter(f)
        return f.json_name, f.name, _SCALAR, _converter(f)

    @staticmethod
    def _default(f: FieldDescriptor) -> Callable[[], Any]:
        if _is_map(f):
            return dict
        if f.is_repeated:
            return list
        value = _PRINTER._FieldToJsonObject(f, f.default_value)
        return lambda: value

    def write(self, msg: Message) -> dict[str, Any]:
        out: dict[str, Any] = {}
        missing = False
        for name, attr, kind, convert in self.fields:
            if kind == _PRESENCE:
                if msg.HasField(attr):
                    value = getattr(msg, attr)
                    out[name] = value if convert is None else convert(value)
                continue
            value = getattr(msg, attr)
            if kind == _SCALAR:
                if value:
                    out[name] = value if convert is None else convert(value)
                else:
                    missing = True
            elif kind == _REPEATED:
                if value:
                    out[name] = list(value) if convert is None else [convert(v) for v in value]
                else:
                    missing = True
            elif kind == _MAP:
                if value:
                    out[name] = ({_map_key(k): value[k] for k in value} if convert is None
                                 else {_map_key(k): convert(value[k]) for k in value})
                else:
                    missing = True
            elif value or math.copysign(1.0, value) < 0:  # _FLOAT: -0.0 is populated (its bits are not zero)
                out[name] = convert(value)  # type: ignore[misc]
            else:
                missing = True
        if missing:
            for name, default in self.defaults:
                if name not in out:
                    out[name] = default()
        return out
