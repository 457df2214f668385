"""A minimal ISO 9660 image writer: one root directory of small files.

Enough for a cloud-init NoCloud seed (volume label `cidata`, files `user-data` and
`meta-data`). File identifiers are written as `NAME;1`; Linux mounts plain ISO 9660
with `map=normal`, which shows them lower-cased without the version: `user-data`.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime

SECTOR = 2048
_PVD, _TERMINATOR = 16, 17
# Sector 18 stays empty: some readers (libarchive) want path tables past it.
_L_TABLE, _M_TABLE, _ROOT = 19, 20, 21
_FIRST_FILE = 22


def _both16(n: int) -> bytes:
    return struct.pack("<H", n) + struct.pack(">H", n)


def _both32(n: int) -> bytes:
    return struct.pack("<I", n) + struct.pack(">I", n)


def _pad(text: str, size: int) -> bytes:
    return text.encode("ascii")[:size].ljust(size, b" ")


def _sectors(size: int) -> int:
    return max(1, -(-size // SECTOR))


def _record_date(when: datetime) -> bytes:
    return bytes([when.year - 1900, when.month, when.day, when.hour, when.minute, when.second, 0])


def _volume_date(when: datetime) -> bytes:
    return when.strftime("%Y%m%d%H%M%S00").encode() + b"\x00"


def _dir_record(ident: bytes, extent: int, size: int, when: datetime, is_dir: bool) -> bytes:
    length = 33 + len(ident) + (1 if len(ident) % 2 == 0 else 0)
    head = struct.pack("<BB", length, 0) + _both32(extent) + _both32(size) + _record_date(when)
    head += struct.pack("<BBB", 2 if is_dir else 0, 0, 0) + _both16(1) + struct.pack("<B", len(ident))
    return (head + ident).ljust(length, b"\x00")


def _path_table(root_extent: int, big_endian: bool) -> bytes:
    order = ">" if big_endian else "<"
    return struct.pack(f"{order}BBIH", 1, 0, root_extent, 1) + b"\x00\x00"


def _identifier(name: str) -> bytes:
    ident = name.upper().encode("ascii")
    if not 0 < len(ident) <= 30 or b"/" in ident or b";" in ident:
        raise ValueError(f"{name!r} is not a file name this writer can store")
    return ident + b";1"


def make_iso(label: str, files: dict[str, bytes], when: datetime | None = None) -> bytes:
    """An ISO 9660 image labelled `label` holding `files` (name → content) in its root."""
    when = (when or datetime.now(UTC)).replace(microsecond=0)
    names = sorted(files)
    extents: dict[str, int] = {}
    next_free = _FIRST_FILE
    for name in names:
        extents[name] = next_free
        next_free += _sectors(len(files[name]))
    root = _dir_record(b"\x00", _ROOT, SECTOR, when, True) + _dir_record(b"\x01", _ROOT, SECTOR, when, True)
    for name in names:
        root += _dir_record(_identifier(name), extents[name], len(files[name]), when, False)
    if len(root) > SECTOR:
        raise ValueError("too many files for a one-sector root directory")
    table = _path_table(_ROOT, False)
    pvd = bytearray(SECTOR)
    pvd[0:8] = b"\x01CD001\x01\x00"
    pvd[8:40] = _pad("LINUX", 32)
    pvd[40:72] = _pad(label, 32)
    pvd[80:88] = _both32(next_free)
    pvd[120:124] = _both16(1)
    pvd[124:128] = _both16(1)
    pvd[128:132] = _both16(SECTOR)
    pvd[132:140] = _both32(len(table))
    pvd[140:144] = struct.pack("<I", _L_TABLE)
    pvd[148:152] = struct.pack(">I", _M_TABLE)
    pvd[156:190] = _dir_record(b"\x00", _ROOT, SECTOR, when, True)
    pvd[190:813] = b" " * (813 - 190)  # set, publisher, preparer, application, file identifiers
    pvd[813:830] = pvd[830:847] = _volume_date(when)
    pvd[847:864] = pvd[864:881] = b"0" * 16 + b"\x00"
    pvd[881] = 1
    terminator = bytearray(SECTOR)
    terminator[0:7] = b"\xffCD001\x01"
    image = bytearray(SECTOR * next_free)
    image[_PVD * SECTOR:(_PVD + 1) * SECTOR] = pvd
    image[_TERMINATOR * SECTOR:(_TERMINATOR + 1) * SECTOR] = terminator
    image[_L_TABLE * SECTOR:_L_TABLE * SECTOR + len(table)] = table
    m_table = _path_table(_ROOT, True)
    image[_M_TABLE * SECTOR:_M_TABLE * SECTOR + len(m_table)] = m_table
    image[_ROOT * SECTOR:_ROOT * SECTOR + len(root)] = root
    for name in names:
        start = extents[name] * SECTOR
        image[start:start + len(files[name])] = files[name]
    return bytes(image)
