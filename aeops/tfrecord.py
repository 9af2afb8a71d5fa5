"""TFRecord framing, read and written by hand so that damage is reported, not fatal.

A record is ``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``.
Beam's ``ReadFromTFRecord`` raises on a bad CRC or a short read and fails the job, and tf.data's
``ignore_errors`` silently drops the rest of the file; this reader instead yields every intact record
and a :class:`Frame` carrying the error and byte offset where the damage is. After a bad *data* CRC the
length is still trusted and reading goes on; after a bad *length* CRC or a short read nothing further
can be framed, so that frame is the last. The length is never trusted for memory: a length beyond
:data:`MAX_RECORD_BYTES` is damage, and a body is read in chunks, so a header claiming more than the
file holds costs what the file holds, not what the header claims.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import google_crc32c

_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8
# A serialized protobuf message (a tf.train.Example) cannot exceed 2 GiB: a longer record is a damaged length.
MAX_RECORD_BYTES = 2**31
_CHUNK = 16 << 20


def masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def is_gzip(path: str) -> bool:
    """The contract: GZIP is detected by the ``.gz`` suffix."""
    return path.endswith(".gz")


@dataclass(frozen=True)
class Frame:
    """One record read at ``offset`` (in the uncompressed stream); ``error`` is set when it is damaged."""

    offset: int
    data: bytes
    error: str | None = None


def read_frames(stream: BinaryIO, gzipped: bool = False) -> Iterator[Frame]:
    """Every record of ``stream`` in order, damage included as frames with ``error`` set."""
    if gzipped:
        stream = gzip.GzipFile(fileobj=stream, mode="rb")
    offset = 0
    while True:
        try:
            header = stream.read(_HEADER.size)
        except (EOFError, OSError, zlib.error) as exc:
            yield Frame(offset, b"", f"unreadable compressed stream: {exc}")
            return
        if not header:
            return
        if len(header) < _HEADER.size:
            yield Frame(offset, b"", f"truncated record header ({len(header)} of {_HEADER.size} bytes)")
            return
        length, length_crc = _HEADER.unpack(header)
        if masked_crc(header[:8]) != length_crc:
            yield Frame(offset, b"", "bad length CRC: the rest of the file cannot be framed")
            return
        if length > MAX_RECORD_BYTES:
            yield Frame(offset, b"", f"record length {length} exceeds {MAX_RECORD_BYTES} bytes: the rest of the "
                                     "file cannot be framed")
            return
        try:
            body = read_up_to(stream, length + _FOOTER.size)
        except (EOFError, OSError, zlib.error) as exc:
            yield Frame(offset, b"", f"unreadable compressed stream: {exc}")
            return
        if len(body) < length + _FOOTER.size:
            yield Frame(offset, body[:length], f"truncated record ({len(body)} of {length + 4} bytes after header)")
            return
        data = body[:length]
        (data_crc,) = _FOOTER.unpack(body[length:])
        error = None if masked_crc(data) == data_crc else "bad data CRC"
        yield Frame(offset, data, error)
        offset += _HEADER.size + len(body)


def read_up_to(stream: BinaryIO, size: int) -> bytes:
    """At most ``size`` bytes, read in chunks: a file shorter than ``size`` allocates only what it holds."""
    if size <= _CHUNK:
        return stream.read(size)
    parts = []
    while size > 0 and (part := stream.read(min(size, _CHUNK))):
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def read_records(stream: BinaryIO, gzipped: bool = False) -> Iterator[bytes]:
    """The records of an intact file; raises ``ValueError`` at the first damage."""
    for frame in read_frames(stream, gzipped):
        if frame.error:
            raise ValueError(f"damaged TFRecord at byte {frame.offset}: {frame.error}")
        yield frame.data


def frame(data: bytes) -> bytes:
    """``data`` framed as one TFRecord."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


def write_records(stream: BinaryIO, records, gzipped: bool = False) -> int:
    """Write ``records`` framed; returns how many. The caller owns (and closes) ``stream``."""
    target = gzip.GzipFile(fileobj=stream, mode="wb", mtime=0) if gzipped else stream
    count = 0
    for record in records:
        target.write(frame(record))
        count += 1
    if gzipped:
        target.close()
    return count
