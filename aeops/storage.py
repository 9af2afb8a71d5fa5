"""Files local or on ``gs://``, through Beam's ``FileSystems`` so both behave the same everywhere.

``STORAGE_EMULATOR_HOST`` is honoured by the GCS client underneath, which is how the tests point
``gs://`` at a server on loopback.
"""

from __future__ import annotations

import glob as _glob
import os
from typing import BinaryIO

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems


def is_remote(path: str) -> bool:
    return "://" in path


def match(pattern: str) -> list[tuple[str, int]]:
    """(path, size) of every file matching ``pattern`` (a glob, a file or, locally, a folder's files)."""
    if not is_remote(pattern) and os.path.isdir(pattern):
        pattern = os.path.join(pattern, "**")
    if not is_remote(pattern) and "**" in pattern:
        # Beam's local matcher does not recurse; the standard library does.
        return sorted((p, os.path.getsize(p)) for p in _glob.glob(pattern, recursive=True) if os.path.isfile(p))
    results = FileSystems.match([pattern])[0].metadata_list
    return sorted((m.path, m.size_in_bytes) for m in results)


def shard_pattern(pattern: str) -> str:
    """What a job reads for ``pattern``: a local folder stands for the TFRecord shards directly inside it
    (``*.tfrecord``, ``*.tfrecord.gz``), not for every file under it; anything else is the glob as given."""
    if not is_remote(pattern) and os.path.isdir(pattern):
        return os.path.join(pattern, "*.tfrecord*")
    return pattern


def open_read(path: str) -> BinaryIO:
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def open_write(path: str, mime_type: str = "application/octet-stream") -> BinaryIO:
    if not is_remote(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return FileSystems.create(path, mime_type=mime_type, compression_type=CompressionTypes.UNCOMPRESSED)


def read_bytes(path: str) -> bytes:
    with open_read(path) as stream:
        return stream.read()


def write_bytes(path: str, data: bytes) -> None:
    with open_write(path) as stream:
        stream.write(data)


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def join(base: str, *parts: str) -> str:
    return FileSystems.join(base, *parts)
