"""The gateway's compiled JSON writer against json_format.MessageToDict, byte for byte (key order
included), over every message type of cbapi and the well-known types, empty, full and half full."""

from __future__ import annotations

import importlib
import pkgutil
import random
from collections.abc import Iterator

import orjson
import pytest
from google.protobuf import any_pb2, duration_pb2, field_mask_pb2, json_format, struct_pb2, timestamp_pb2, wrappers_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

import cbapi
from services.gateway import protojson, transcode

F = FieldDescriptor


def _cbapi_messages() -> list[Descriptor]:
    for module in pkgutil.walk_packages(cbapi.__path__, "cbapi."):
        if module.name.endswith("_pb2"):
            importlib.import_module(module.name)
    seen: dict[str, Descriptor] = {}

    def walk(d: Descriptor) -> None:
        if d.GetOptions().map_entry or d.full_name in seen:
            return
        seen[d.full_name] = d
        for nested in d.nested_types:
            walk(nested)

    for module in list(pkgutil.walk_packages(cbapi.__path__, "cbapi.")):
        if module.name.endswith("_pb2"):
            file = importlib.import_module(module.name).DESCRIPTOR
            for d in file.message_types_by_name.values():
                walk(d)
    return sorted(seen.values(), key=lambda d: d.full_name)


MESSAGES = _cbapi_messages()
WELL_KNOWN = [timestamp_pb2.Timestamp.DESCRIPTOR, duration_pb2.Duration.DESCRIPTOR, field_mask_pb2.FieldMask.DESCRIPTOR,
              struct_pb2.Struct.DESCRIPTOR,
              struct_pb2.Value.DESCRIPTOR, wrappers_pb2.Int64Value.DESCRIPTOR, wrappers_pb2.StringValue.DESCRIPTOR,
              any_pb2.Any.DESCRIPTOR]


def _scalar(f: FieldDescriptor, rng: random.Random, i: int) -> object:
    t = f.type
    if t == F.TYPE_ENUM:
        assert f.enum_type is not None
        numbers = sorted(f.enum_type.values_by_number)
        # Now and then a number the enum does not name (proto3 enums are open).
        return 77 if (i == 2 and not f.enum_type.is_closed) else numbers[(i + 1) % len(numbers)]
    if t == F.TYPE_STRING:
        return ["", "x", "ünï\"cödé\n", "a b"][(i + 1) % 4]
    if t == F.TYPE_BYTES:
        return [b"", b"\x00\xff", b"bytes"][(i + 1) % 3]
    if t == F.TYPE_BOOL:
        return i % 2 == 0
    if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return [0.0, 1.5, -0.0, float("nan"), float("inf"), float("-inf"), 0.1, 3e38][(i + 1 + rng.randrange(8)) % 8]
    if t in (F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64):
        return [0, 2**62 + 1, -(2**63), 42][(i + 1) % 4]
    if t in (F.TYPE_UINT64, F.TYPE_FIXED64):
        return [0, 2**64 - 1, 7][(i + 1) % 3]
    if t in (F.TYPE_UINT32, F.TYPE_FIXED32):
        return [0, 2**32 - 1, 3][(i + 1) % 3]
    return [0, -(2**31), 2**31 - 1, 5][(i + 1) % 4]


def _fill_well_known(msg: Message, rng: random.Random) -> None:
    name = msg.DESCRIPTOR.full_name
    if name == "google.protobuf.Timestamp":
        msg.FromNanoseconds(rng.randrange(0, 2**60))  # type: ignore[attr-defined]
    elif name == "google.protobuf.Duration":
        msg.FromNanoseconds(rng.randrange(-(2**50), 2**50))  # type: ignore[attr-defined]
    elif name == "google.protobuf.FieldMask":
        msg.paths.extend(["a_b.c_d", "e"])  # type: ignore[attr-defined]
    elif name == "google.protobuf.Struct":
        msg.update({"a": 1.5, "b": ["x", None, True], "c": {"d": "e"}})  # type: ignore[attr-defined]
    elif name == "google.protobuf.Value":
        msg.string_value = "v"  # type: ignore[attr-defined]
    elif name == "google.protobuf.Any":
        msg.Pack(timestamp_pb2.Timestamp(seconds=5))  # type: ignore[attr-defined]
    elif "value" in msg.DESCRIPTOR.fields_by_name:  # wrappers
        f = msg.DESCRIPTOR.fields_by_name["value"]
        msg.value = _scalar(f, rng, 1)  # type: ignore[attr-defined]


def fill(msg: Message, rng: random.Random, depth: int = 0, share: float = 1.0) -> None:
    """Set (about `share` of) the fields of `msg`, nested messages down to depth 3."""
    if msg.DESCRIPTOR.file.name.startswith("google/protobuf/"):
        _fill_well_known(msg, rng)
        return
    for i, f in enumerate(msg.DESCRIPTOR.fields):
        if rng.random() > share:
            continue
        value_type = f.message_type
        if value_type is not None and value_type.GetOptions().map_entry:
            key_f, value_f = value_type.fields_by_name["key"], value_type.fields_by_name["value"]
            target = getattr(msg, f.name)
            for j in range(2):
                key = _scalar(key_f, rng, j + 1)
                if value_f.message_type is not None:
                    if depth < 3:
                        fill(target[key], rng, depth + 1, share)
                else:
                    target[key] = _scalar(value_f, rng, j + i)
            continue
        if f.is_repeated:
            target = getattr(msg, f.name)
            for j in range(2):
                if value_type is not None:
                    if depth < 3:
                        fill(target.add(), rng, depth + 1, share)
                else:
                    target.append(_scalar(f, rng, j + i))
            continue
        if value_type is not None:
            if depth < 3:
                sub = getattr(msg, f.name)
                sub.SetInParent()
                fill(sub, rng, depth + 1, share)
            continue
        setattr(msg, f.name, _scalar(f, rng, i))


def samples(descriptor: Descriptor) -> Iterator[Message]:
    cls = GetMessageClass(descriptor)
    yield cls()
    for seed, share in ((1, 1.0), (2, 0.5), (3, 0.5), (4, 0.2)):
        msg = cls()
        fill(msg, random.Random(f"{descriptor.full_name}/{seed}"), share=share)
        yield msg


def _reference(msg: Message) -> bytes:
    return orjson.dumps(json_format.MessageToDict(msg, always_print_fields_with_no_presence=True),
                        option=orjson.OPT_NON_STR_KEYS)


def test_every_cbapi_message_is_covered() -> None:
    names = {d.full_name for d in MESSAGES}
    assert len(names) > 100
    assert {"cbapi.spider.v1.Connection", "cbapi.tumblebug.v1.Mcis"} <= names


@pytest.mark.parametrize("descriptor", MESSAGES + WELL_KNOWN, ids=lambda d: d.full_name)
def test_writer_matches_message_to_dict(descriptor: Descriptor) -> None:
    for msg in samples(descriptor):
        assert orjson.dumps(protojson.to_dict(msg), option=orjson.OPT_NON_STR_KEYS) == _reference(msg)


def test_out_of_order_fields_and_negative_zero() -> None:
    # Field numbers declared out of order, and -0.0 (populated: its bits are not zero) between
    # unpopulated fields: populated ones come by number, the rest in declaration order.
    from google.protobuf import descriptor_pb2, descriptor_pool

    pool = descriptor_pool.DescriptorPool()
    file = descriptor_pb2.FileDescriptorProto(name="t.proto", package="t", syntax="proto3")
    m = file.message_type.add(name="M")
    for name, number, kind in (("z_last", 9, F.TYPE_STRING), ("a_first", 1, F.TYPE_DOUBLE),
                               ("m_mid", 5, F.TYPE_INT64), ("b_two", 2, F.TYPE_FLOAT)):
        m.field.add(name=name, number=number, type=kind, label=F.LABEL_OPTIONAL)
    pool.Add(file)
    cls = GetMessageClass(pool.FindMessageTypeByName("t.M"))
    for values in ({}, {"a_first": -0.0}, {"z_last": "z", "b_two": -0.0}, {"m_mid": 3, "a_first": 1.0}):
        msg = cls(**values)
        assert orjson.dumps(protojson.to_dict(msg)) == _reference(msg), values


def test_transcoder_uses_it() -> None:
    from cbapi.spider.v1 import spider_pb2 as pb

    msg = pb.Connection(name="c", driver="mock")
    assert transcode.to_dict(msg) == json_format.MessageToDict(msg, always_print_fields_with_no_presence=True)
