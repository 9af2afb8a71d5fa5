"""The hand-written TFRecord reader: framing byte for byte as TensorFlow writes it, each kind of damage reported
with its offset, and a length header that lies costs a dead letter, never the memory it claims."""

from __future__ import annotations

import dataclasses
import gzip
import io
import struct
import subprocess
import sys

import pytest

from aeops import tfrecord
from tests import shards


def lying_header(length: int) -> bytes:
    """A record header claiming ``length`` bytes, with a valid length CRC: only the length itself is wrong."""
    packed = struct.pack("<Q", length)
    return packed + struct.pack("<I", tfrecord.masked_crc(packed))


def shard_with_a_lying_header(path, length: int, gzipped: bool) -> int:
    """Two good records, then a header claiming ``length`` bytes and a few bytes; returns the header's offset."""
    good = [shards.example(image) for image in shards.good_images()[:2]]
    head = b"".join(tfrecord.frame(r) for r in good)
    data = head + lying_header(length) + b"only a few bytes follow"
    path.write_bytes(gzip.compress(data, mtime=0) if gzipped else data)
    return len(head)


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("length", [2**60, 2**31 + 1, 1 << 30], ids=["2^60", "over-2GiB", "1GiB-in-a-small-file"])
def test_a_length_beyond_the_bound_or_the_file_is_one_damaged_frame(tmp_path, gzipped, length):
    path = tmp_path / ("lying.tfrecord" + (".gz" if gzipped else ""))
    offset = shard_with_a_lying_header(path, length, gzipped)
    with open(path, "rb") as stream:
        frames = list(tfrecord.read_frames(stream, gzipped))
    assert [f.error is None for f in frames] == [True, True, False]
    assert frames[-1].offset == offset
    assert ("exceeds" if length > tfrecord.MAX_RECORD_BYTES else "truncated record") in frames[-1].error


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
def test_reading_a_lying_header_allocates_what_the_file_holds_not_what_it_claims(tmp_path, gzipped):
    """In a child limited to 512 MiB of address space: a 1 GiB read would raise MemoryError there."""
    path = tmp_path / ("lying.tfrecord" + (".gz" if gzipped else ""))
    shard_with_a_lying_header(path, 1 << 30, gzipped)
    script = (
        "import resource, sys; from aeops import tfrecord\n"
        "resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))\n"
        f"frames = list(tfrecord.read_frames(open(sys.argv[1], 'rb'), {gzipped}))\n"
        "print(frames[-1].error)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "truncated record" in result.stdout, result.stderr[-500:]


# tf.io.TFRecordWriter's bytes for the records b"aeops" and b"" (TensorFlow 2.21): length, masked CRC32C of the
# length, data, masked CRC32C of the data.
TENSORFLOW_WROTE = bytes.fromhex("0500000000000000eab2043e61656f7073b663332b" "000000000000000029039807d8ea82a2")


def test_framing_is_byte_for_byte_what_tfrecordwriter_writes():
    assert tfrecord.frame(b"aeops") + tfrecord.frame(b"") == TENSORFLOW_WROTE
    assert list(tfrecord.read_records(io.BytesIO(TENSORFLOW_WROTE))) == [b"aeops", b""]
    assert tfrecord.masked_crc(b"aeops") == 0x2B3363B6


def test_a_record_cut_short_is_reported_with_both_lengths():
    frames = list(tfrecord.read_frames(io.BytesIO(TENSORFLOW_WROTE[:-16 - 3])))
    assert frames == [tfrecord.Frame(0, b"aeops", "truncated record (6 of 9 bytes after header)")]
    header_only = list(tfrecord.read_frames(io.BytesIO(TENSORFLOW_WROTE[:5])))
    assert header_only == [tfrecord.Frame(0, b"", "truncated record header (5 of 12 bytes)")]


def test_a_damaged_gzip_stream_ends_the_file_with_a_frame_saying_so():
    good = gzip.compress(tfrecord.frame(b"one") + tfrecord.frame(b"two"), mtime=0)
    damaged = good[:20] + bytes(b ^ 0x5A for b in good[20:30]) + good[30:]
    frames = list(tfrecord.read_frames(io.BytesIO(damaged), gzipped=True))
    assert frames[-1].error.startswith("unreadable compressed stream: ")
    assert all(frame.error is None for frame in frames[:-1])


def test_frames_are_immutable_values():
    frame = tfrecord.Frame(12, b"x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.offset = 0
    assert frame == tfrecord.Frame(12, b"x", None) and frame.error is None


def test_a_gzip_stream_cut_short_ends_the_file_with_a_frame_saying_so():
    cut = gzip.compress(tfrecord.frame(b"one") + tfrecord.frame(b"two"), mtime=0)[:-12]
    frames = list(tfrecord.read_frames(io.BytesIO(cut), gzipped=True))
    assert frames[-1].error.startswith("unreadable compressed stream: Compressed file ended")
