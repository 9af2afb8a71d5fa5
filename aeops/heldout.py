"""The held-out photographs of ``benchmarks/denoise.py``: fetched, verified and downscaled like the training data.

    python -m aeops.heldout [--list configs/heldout.csv] [--work build/heldout]   # prints their paths

``configs/heldout.csv`` has the columns of the training manifest (``aeops.training_data``), and the same
functions fetch its packages (``apt-get download`` of a pinned version, ``dpkg-deb -x``, never installed), check
every file's sha256 and size, and shrink the rows whose ``downscale`` is above 1. Every row must come from a
package the training manifest refuses (``RESERVED``): no model trains, validates or tunes on these photographs.
``docs/heldout.md`` says which photographs these are, where from, under which licence, and why downscaled.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path, PurePosixPath

from aeops.training_data import RESERVED, ManifestError, Photo, extract, read_photos

HELDOUT = Path(__file__).resolve().parent.parent / "configs" / "heldout.csv"


def read_heldout(path: Path = HELDOUT) -> list[Photo]:
    """The held-out rows; one from a package training may use stops the run."""
    photos = read_photos(path)
    trainable = [p for p in photos if p.package not in RESERVED]
    if trainable:
        raise ManifestError(f"{path}: {trainable[0].path} comes from {trainable[0].package}, which is not reserved "
                            f"for evaluation (training may use it): add it to RESERVED or drop the row")
    return photos


def heldout_name(photo: Photo, kind: str) -> str:
    """The photograph's own short name, for the benchmark's tables: the file's stem, or for a Plasma
    wallpaper (``NAME/contents/images/WIDTHxHEIGHT.jpg``) the wallpaper's ``NAME``; then ``.kind``."""
    path = PurePosixPath(photo.path)
    stem = path.parts[path.parts.index("contents") - 1] if "contents" in path.parts else path.stem
    return f"{stem}.{kind}"


def fetch(work: Path, path: Path = HELDOUT) -> list[Path]:
    """Every held-out photograph in ``work/photos`` (downloaded and unpacked under ``work`` on first use)."""
    return extract(read_heldout(path), work, name=heldout_name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", type=Path, default=HELDOUT, help="the committed list of held-out photographs")
    parser.add_argument("--work", type=Path, default=Path("build/heldout"), help="downloads and output")
    args = parser.parse_args(argv)
    try:
        paths = fetch(args.work, args.list)
    except (ManifestError, subprocess.CalledProcessError, OSError) as exc:
        print(f"heldout: {exc}", file=sys.stderr)
        return 1
    print("\n".join(str(path) for path in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
