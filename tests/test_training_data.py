"""``make training-data``: the container readers on tiny hand-built files, and the manifest's checks."""

from __future__ import annotations

import hashlib
import io
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aeops import codec, containers, training_data
from aeops.training_data import ManifestError, Photo


def rcc(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """A version-3 Qt resource holding ``{name: (bytes, zlib)}`` in one folder ``pics``, laid out as
    ``rcc -binary`` writes it: header, data, names, tree of 22-byte nodes."""
    data, names, nodes = b"", b"", []

    def name(text: str) -> int:
        nonlocal names
        offset = len(names)
        names += struct.pack(">HI", len(text), 0) + text.encode("utf-16-be")
        return offset

    nodes.append(struct.pack(">IHII", 0, containers.RCC_DIRECTORY, 1, 1))  # root: one child, node 1
    nodes.append(struct.pack(">IHII", name("pics"), containers.RCC_DIRECTORY, len(files), 2))
    for file, (payload, compressed) in files.items():
        stored = struct.pack(">I", len(payload)) + zlib.compress(payload) if compressed else payload
        nodes.append(struct.pack(">IHHHI", name(file), containers.RCC_ZLIB if compressed else 0, 0, 0, len(data)))
        data += struct.pack(">I", len(stored)) + stored
    tree = b"".join(node + b"\0" * 8 for node in nodes)  # version 2+: an 8-byte modification time per node
    header = 24
    return (b"qres" + struct.pack(">5I", 3, header + len(data) + len(names), header, header + len(data), 0)
            + data + names + tree)


def eet(entries: list[tuple[str, bytes, int]]) -> bytes:
    """An Eet file of ``(name, stored bytes, flags)``: header, directory, then names and data."""
    directory_end = 12 + 24 * len(entries)
    body, directory = b"", b""
    for name, stored, flags in entries:
        name_at = directory_end + len(body)
        body += name.encode() + b"\0"
        data_at = directory_end + len(body)
        body += stored
        size = len(zlib.decompress(stored)) if flags == containers.EET_ZLIB else len(stored)
        directory += struct.pack(">6I", data_at, len(stored), size, name_at, len(name) + 1, flags)
    return struct.pack(">3I", containers.EET_MAGIC, len(entries), 0) + directory + body


def test_rcc_members_come_out_with_their_paths_and_inflated():
    webp, jpeg = b"RIFF\x10\0\0\0WEBPVP8 data", b"\xff\xd8\xff\xe0 a jpeg" * 20
    blob = rcc({"sea.webp": (webp, False), "cat.jpg": (jpeg, True)})
    assert list(containers.rcc_members(blob)) == [("pics/sea.webp", webp), ("pics/cat.jpg", jpeg)]


def test_eet_entries_come_out_inflated_and_lz4_and_aliases_are_skipped():
    jpeg = b"\xff\xd8\xff\xe0 background" * 10
    blob = eet([("edje/images/0", jpeg, 0), ("edje/images/1", zlib.compress(jpeg[:50]), containers.EET_ZLIB),
                ("edje_sources", b"lz4 stream", containers.EET_ZLIB | 1 << 3),
                ("edje/images/2", b"edje/images/0", containers.EET_ALIAS)])
    assert list(containers.eet_members(blob)) == [("edje/images/0", jpeg), ("edje/images/1", jpeg[:50])]


def test_damaged_or_foreign_containers_raise_one_clear_error():
    with pytest.raises(containers.ContainerError, match="qres"):
        list(containers.rcc_members(b"PK\x03\x04 a zip"))
    with pytest.raises(containers.ContainerError, match="damaged Qt resource"):
        list(containers.rcc_members(rcc({"a.webp": (b"RIFF", False)})[:40]))
    with pytest.raises(containers.ContainerError, match="Eet"):
        list(containers.eet_members(b"\0" * 16))


def _photo_bytes(quality: int, size=(96, 64)) -> bytes:
    rng = np.random.default_rng(0)
    return codec.encode(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "jpeg", quality=quality)


def test_downscale_factor_follows_the_bit_rate():
    noisy_q95 = _photo_bytes(95)  # random pixels: many bits per pixel
    assert training_data.downscale_factor(noisy_q95, 96, 64) == 1
    assert training_data.downscale_factor(b"\x89PNG\r\n\x1a\n" + b"\0" * 10, 4000, 3000) == 1  # lossless: never
    tiny_jpeg = b"\xff\xd8\xff" + b"\0" * 997  # 1000 bytes for 0.1 MP: 0.08 bits per pixel -> about 3.5
    assert training_data.downscale_factor(tiny_jpeg, 400, 250) == 4


def _package(tmp_path: Path, files: dict[str, bytes]) -> Path:
    """An already unpacked package ``pkg`` (and its .deb's name), so nothing is downloaded."""
    work = tmp_path / "work"
    (work / "debs").mkdir(parents=True)
    (work / "debs" / "pkg_1.0_all.deb").write_bytes(b"")
    for path, data in files.items():
        (work / "unpacked" / "pkg" / path).parent.mkdir(parents=True, exist_ok=True)
        (work / "unpacked" / "pkg" / path).write_bytes(data)
    return work


def _row(path: str, data: bytes, downscale: int = 1, package: str = "pkg") -> Photo:
    return Photo(package, "1.0", path, hashlib.sha256(data).hexdigest(), len(data), downscale, "GPL-2+")


def test_extract_verifies_checksums_reads_containers_and_downscales(tmp_path):
    photo, webp = _photo_bytes(90, (64, 48)), codec.encode(np.zeros((8, 8, 3), np.uint8), "webp")
    work = _package(tmp_path, {"usr/share/a.jpg": photo, "usr/share/res.rcc": rcc({"b.webp": (webp, True)})})
    out = training_data.extract([_row("usr/share/a.jpg", photo), _row("usr/share/res.rcc:pics/b.webp", webp)], work)
    assert out == [work / "photos" / "pkg__usr__share__a.jpg", work / "photos" / "pkg__usr__share__res.rcc__pics__b.webp"]
    assert sorted(p.name for p in (work / "photos").iterdir()) == [p.name for p in out]
    assert out[0].read_bytes() == photo  # as extracted, byte for byte

    work = _package(tmp_path / "downscaled", {"usr/share/a.jpg": photo})
    (small,) = training_data.extract([_row("usr/share/a.jpg", photo, downscale=2)], work)
    assert small == work / "photos" / "pkg__usr__share__a.png"
    assert Image.open(io.BytesIO(small.read_bytes())).size == (32, 24)


def test_a_changed_package_or_a_reserved_one_stops_the_run(tmp_path):
    photo = _photo_bytes(90)
    work = _package(tmp_path, {"usr/share/a.jpg": photo})
    wrong = _row("usr/share/a.jpg", photo + b"x")
    with pytest.raises(ManifestError, match="usr/share/a.jpg: sha256 .* the package changed"):
        training_data.extract([wrong], work)
    manifest = tmp_path / "manifest.csv"
    training_data.write_manifest([_row("usr/share/backgrounds/x.jpg", photo, package="mate-backgrounds")], manifest)
    with pytest.raises(ManifestError, match="reserved for evaluation"):
        training_data.read_manifest(manifest)


def test_the_committed_manifest_is_well_formed():
    photos = training_data.read_manifest()
    assert len(photos) >= 150 and len({p.sha256 for p in photos}) == len(photos)
    assert all(len(p.sha256) == 64 and p.size > 0 and p.downscale >= 1 and p.licence for p in photos)
    assert len({(p.package, p.version) for p in photos}) == len({p.package for p in photos})  # one pin each


def test_a_real_deb_unpacks_into_a_fresh_work_folder(tmp_path):
    """dpkg-deb creates its target folder but not that folder's parent: on a fresh machine ``unpacked/`` does
    not exist yet when the first package is unpacked."""
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text("Package: pkg\nVersion: 1.0\nArchitecture: all\n"
                                            "Maintainer: t <t@t>\nDescription: t\n")
    (root / "usr" / "share").mkdir(parents=True)
    (root / "usr" / "share" / "a.jpg").write_bytes(b"photo")
    deb = tmp_path / "pkg_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--build", "-Zgzip", str(root), str(deb)], check=True, capture_output=True)
    target = training_data.unpack(deb, tmp_path / "work" / "unpacked")
    assert target == tmp_path / "work" / "unpacked" / "pkg"
    assert (target / "usr" / "share" / "a.jpg").read_bytes() == b"photo"
