"""Read the files packed inside two resource containers that ship photographs in Debian packages.

- Qt resource files (``.rcc``, ``rcc -binary``): a header, a tree of nodes, a names table and a data
  table (Qt's ``src/corelib/io/qresource.cpp`` reads the same layout). gcompris-qt-data keeps its WebP
  photographs in them.
- Eet files (``.edj``, Enlightenment's Edje themes and backgrounds; ``eet_lib.c``): a header, a directory of
  entries (offset, stored size, size, name), optionally zlib-compressed. Edje stores an opaque lossy image as
  a plain JPEG under ``edje/images/N``.

No library on PyPI reads either format, hence these readers; they only read, never write. Each yields
``(member name, bytes)``; anything malformed raises :class:`ContainerError` naming what is wrong.
"""

from __future__ import annotations

import struct
import zlib
from typing import Iterator

RCC_MAGIC = b"qres"
RCC_DIRECTORY, RCC_ZLIB, RCC_ZSTD = 0x02, 0x01, 0x04
EET_MAGIC = 0x1EE70F42
EET_ZLIB, EET_CIPHERED, EET_ALIAS = 0x1, 0x2, 0x4


class ContainerError(ValueError):
    """The bytes are not a readable container of the expected kind."""


def rcc_members(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Every file of a binary Qt resource, as ``("dir/name", bytes)``; zlib members are inflated."""
    if data[:4] != RCC_MAGIC:
        raise ContainerError("not a Qt resource file (no 'qres' magic)")
    version, tree, payload, names = struct.unpack(">4I", data[4:20])
    if version not in (1, 2, 3):
        raise ContainerError(f"Qt resource version {version} is not one this reader knows (1-3)")
    node_size = 14 if version == 1 else 22  # version 2 added an 8-byte modification time per node

    def name(node: int) -> str:
        (offset,) = struct.unpack_from(">I", data, tree + node * node_size)
        (length,) = struct.unpack_from(">H", data, names + offset)
        start = names + offset + 6  # 2-byte length, 4-byte hash, then UTF-16BE
        return data[start : start + 2 * length].decode("utf-16-be")

    def walk(node: int, prefix: str) -> Iterator[tuple[str, bytes]]:
        flags, a, b = struct.unpack_from(">HII", data, tree + node * node_size + 4)
        if flags & RCC_DIRECTORY:
            for child in range(b, b + a):  # a children from node b on
                yield from walk(child, f"{prefix}{name(child)}/")
            return
        (offset,) = struct.unpack_from(">I", data, tree + node * node_size + 10)
        (size,) = struct.unpack_from(">I", data, payload + offset)
        blob = data[payload + offset + 4 : payload + offset + 4 + size]
        if flags & RCC_ZSTD:
            raise ContainerError(f"{prefix.rstrip('/')}: zstd-compressed member; this reader inflates zlib only")
        if flags & RCC_ZLIB:
            blob = zlib.decompress(blob[4:])  # qCompress: a 4-byte size, then a zlib stream
        yield prefix.rstrip("/"), blob

    try:
        yield from walk(0, "")
    except (struct.error, zlib.error, UnicodeDecodeError) as exc:
        raise ContainerError(f"damaged Qt resource file ({exc})") from None


def eet_members(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Every entry of an Eet file, as ``(name, bytes)``; zlib entries are inflated. Skipped: aliases and
    encrypted entries (no image of their own) and LZ4-compressed ones (edje_cc uses LZ4 for theme sources
    and scripts; lossy images are stored as plain JPEG, which nothing compresses further)."""
    try:
        magic, count, _dictionary = struct.unpack_from(">3I", data, 0)
        if magic != EET_MAGIC:
            raise ContainerError("not an Eet file (no 0x1ee70f42 magic)")
        for index in range(count):
            offset, stored, size, name_at, name_size, flags = struct.unpack_from(">6I", data, 12 + 24 * index)
            name = data[name_at : name_at + name_size].rstrip(b"\0").decode("utf-8")
            lz4 = flags & EET_ZLIB and (flags >> 3) & 0xFF
            if flags & (EET_CIPHERED | EET_ALIAS) or lz4:
                continue
            blob = data[offset : offset + stored]
            yield name, zlib.decompress(blob, bufsize=size) if flags & EET_ZLIB else blob
    except (struct.error, zlib.error, UnicodeDecodeError) as exc:
        raise ContainerError(f"damaged Eet file ({exc})") from None


READERS = {".rcc": rcc_members, ".edj": eet_members}
