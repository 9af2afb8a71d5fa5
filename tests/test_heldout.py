"""The held-out photographs of ``benchmarks/denoise.py``: the committed list, and its checks on an unpacked
package built here (nothing is downloaded)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aeops import codec, heldout, training_data
from aeops.training_data import ManifestError, Photo

WALLPAPER = "usr/share/wallpapers/Kite/contents/images/2560x1600.jpg"


def test_the_committed_list_is_reserved_for_evaluation_and_apart_from_training():
    photos = heldout.read_heldout()
    assert 12 <= len(photos) <= 20
    assert {p.package for p in photos} <= set(training_data.RESERVED)
    assert all(len(p.sha256) == 64 and p.size > 0 and p.downscale >= 1 and p.licence for p in photos)
    assert len({(p.package, p.version) for p in photos}) == len({p.package for p in photos})  # one pin each
    names = [heldout.heldout_name(p, "png") for p in photos]
    assert len(set(names)) == len(names)  # no photograph overwrites another in build/heldout/photos
    training = training_data.read_manifest()
    assert not {p.sha256 for p in photos} & {p.sha256 for p in training}
    assert not {p.package for p in photos} & {p.package for p in training}


def _package(work: Path, files: dict[str, bytes], package: str = "plasma-workspace-wallpapers") -> None:
    """An already unpacked ``package`` (and its .deb's name), so nothing is downloaded."""
    (work / "debs").mkdir(parents=True, exist_ok=True)
    (work / "debs" / f"{package}_1.0_all.deb").write_bytes(b"")
    for path, data in files.items():
        (work / "unpacked" / package / path).parent.mkdir(parents=True, exist_ok=True)
        (work / "unpacked" / package / path).write_bytes(data)


def _list(path: Path, rows: list[tuple[str, bytes, int]], package: str = "plasma-workspace-wallpapers") -> Path:
    training_data.write_manifest([Photo(package, "1.0", p, hashlib.sha256(data).hexdigest(), len(data), downscale,
                                        "GPL-2+") for p, data, downscale in rows], path)
    return path


def _jpeg(width: int, height: int) -> bytes:
    rng = np.random.default_rng(0)
    return codec.encode(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "jpeg", quality=90)


def test_fetch_verifies_each_file_downscales_and_names_it_by_the_photograph(tmp_path):
    wallpaper, flower = _jpeg(96, 60), _jpeg(40, 30)
    _package(tmp_path, {WALLPAPER: wallpaper, "usr/share/images/flower.jpg": flower})
    rows = _list(tmp_path / "heldout.csv", [(WALLPAPER, wallpaper, 3), ("usr/share/images/flower.jpg", flower, 1)])
    paths = heldout.fetch(tmp_path, rows)
    assert paths == [tmp_path / "photos" / "Kite.png", tmp_path / "photos" / "flower.jpg"]
    assert Image.open(io.BytesIO(paths[0].read_bytes())).size == (32, 20)  # 96x60 shrunk three times
    assert paths[1].read_bytes() == flower  # as extracted, byte for byte


def test_a_changed_file_stops_the_run_with_one_line(tmp_path, capsys):
    wallpaper = _jpeg(96, 60)
    _package(tmp_path, {WALLPAPER: wallpaper[:-3] + b"new"})  # same size, other bytes: only the sha256 tells
    rows = _list(tmp_path / "heldout.csv", [(WALLPAPER, wallpaper, 3)])
    assert heldout.main(["--list", str(rows), "--work", str(tmp_path)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("heldout: plasma-workspace-wallpapers 1.0 " + WALLPAPER) and "the package changed" in line
    assert not (tmp_path / "photos" / "Kite.png").exists()


def test_a_row_from_a_package_training_may_use_is_refused(tmp_path):
    rows = _list(tmp_path / "heldout.csv", [("usr/share/tuxpaint/a.jpg", b"photo", 1)], package="tuxpaint-data")
    with pytest.raises(ManifestError, match="a.jpg comes from tuxpaint-data, which is not reserved for evaluation"):
        heldout.read_heldout(rows)
