"""How large a value in a request, and a stored record, may be: one table for every service.

etcd refuses a request over 1.5 MiB, and a value that big used to travel all the way there and come
back as INTERNAL. So every gRPC request is checked on arrival (the server interceptor calls
`check_request`) against the limits below, by field name, and refused with INVALID_ARGUMENT naming
the field and the limit; the store checks each record as a last line (`check_record`).
"""

from __future__ import annotations

from google.protobuf.message import Message

from services import errors

KIB = 1024
MIB = 1024 * KIB

# One record (an etcd value). etcd's own limit is 1.5 MiB per request, which must also hold the key
# and, in a transaction, the other records written with it.
RECORD_MAX_BYTES = 1 * MIB

# A string or bytes field of any request message, by field name. Map fields: each value.
FIELD_MAX_BYTES: dict[str, int] = {
    # Names follow the name rule (63 characters) where users choose them; clouds' own names
    # (images, specs) and catalog IDs (`{connection}+{name}`) are longer but never this long.
    "name": 256,
    "description": 4 * KIB,
    # A credential's secret values: access keys, service-account JSON documents.
    "values": 8 * KIB,
    # A region's settings (endpoint, zone, …).
    "settings": 4 * KIB,
    # AWS allows 256 characters per tag value.
    "tags": 256,
    "public_key": 16 * KIB,
    "private_key": 16 * KIB,
    # AWS allows 16 KiB of user-data; the suite adds its agent's part to the user's.
    "user_data": 64 * KIB,
    "command": 64 * KIB,
    # An application's (and a workload's) files, each value; ladybug caps their sum at 1 MiB.
    "files": 1 * MIB,
}
# Any other string or bytes field.
DEFAULT_FIELD_MAX_BYTES = 16 * KIB
MAP_KEY_MAX_BYTES = 256

# A request no larger than this cannot hold a field over any limit: it is not walked.
_SMALLEST = min(MAP_KEY_MAX_BYTES, *FIELD_MAX_BYTES.values())


def human(size: int) -> str:
    """1048576 → '1 MiB', 4096 → '4 KiB', 300 → '300 bytes'."""
    for unit, scale in (("MiB", MIB), ("KiB", KIB)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size:,} bytes"


def _too_large(path: str, size: int, limit: int) -> errors.InvalidArgument:
    return errors.InvalidArgument.field(path, f"is {size:,} bytes; the limit is {human(limit)}")


def _size(value: str | bytes) -> int:
    return len(value) if isinstance(value, bytes) else len(value.encode())


def _check_value(path: str, value: str | bytes, limit: int) -> None:
    # len(str) ≤ size in UTF-8 ≤ 4·len(str): encode only when it could matter.
    if len(value) > limit or (isinstance(value, str) and 4 * len(value) > limit and _size(value) > limit):
        raise _too_large(path, _size(value), limit)


def _key_text(key: object) -> str:
    return errors.cut(str(key), 32)


def check_message(message: Message, prefix: str = "") -> None:
    """Raise INVALID_ARGUMENT for the first string/bytes field (nested, repeated, map) over its limit."""
    for f, value in message.ListFields():
        path = f"{prefix}{f.name}"
        limit = FIELD_MAX_BYTES.get(f.name, DEFAULT_FIELD_MAX_BYTES)
        mt = f.message_type
        if mt is not None and mt.GetOptions().map_entry:
            value_field = mt.fields_by_name["value"]
            for key, item in value.items():
                item_path = f"{path}[{_key_text(key)}]"
                if isinstance(key, str):
                    _check_value(f"{path} (a key)", key, MAP_KEY_MAX_BYTES)
                if value_field.message_type is not None:
                    check_message(item, f"{item_path}.")
                elif isinstance(item, str | bytes):
                    _check_value(item_path, item, limit)
        elif f.is_repeated:
            for i, item in enumerate(value):
                if mt is not None:
                    check_message(item, f"{path}[{i}].")
                elif isinstance(item, str | bytes):
                    _check_value(f"{path}[{i}]", item, limit)
        elif mt is not None:
            check_message(value, f"{path}.")
        elif isinstance(value, str | bytes):
            _check_value(path, value, limit)


def check_request(message: Message) -> None:
    """The interceptor's check of every incoming request (cheap for small ones)."""
    if message.ByteSize() > _SMALLEST:
        check_message(message)


def check_record(key: str, value: Message) -> None:
    """The store's last line: a record over RECORD_MAX_BYTES is refused before etcd sees it."""
    size = value.ByteSize()
    if size > RECORD_MAX_BYTES:
        kind = type(value).__name__
        raise errors.InvalidArgument(
            f"the {kind} record {errors.cut(key, 160)} would be {size:,} bytes; the limit is "
            f"{human(RECORD_MAX_BYTES)}: make its values smaller",
            [errors.FieldViolation(kind, f"is {size:,} bytes; the limit is {human(RECORD_MAX_BYTES)}")])
