"""``aeops ingest``: image files, folders or globs (local or ``gs://``) -> TFRecord shards.

Each image becomes one ``tf.train.Example`` (CONTRACT §3) with ``image/key`` = SHA-256 of its bytes, so
keys are stable across re-ingests, and lands in shard ``key mod N``: adding images never reshuffles the
others. The bytes are stored as they are (no re-encoding); only the header is read, to reject files that
are not images, which are reported on stderr and counted, never dropped silently. ``--boxes FILE.csv``
adds object boxes in the TF Object Detection API layout (:mod:`aeops.annotations`).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass

from argparse import Namespace

from aeops import annotations, codec, schema, storage, tfrecord
from aeops.cli import ArgumentParser
from aeops.errors import DecodeError, UsageError
from aeops.sample import sample_paths

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")
TARGET_SHARD_BYTES = 256 * 2**20
GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Source:
    path: str
    size: int
    label: str | None = None


def parse_args(argv: list[str] | None) -> Namespace:
    parser = ArgumentParser(prog="aeops ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="*", metavar="SRC", help="image files, folders or globs, local or gs://")
    parser.add_argument("--output", required=True, metavar="PREFIX", help="shards are PREFIX-SSSSS-of-NNNNN.tfrecord")
    parser.add_argument("--num-shards", type=int, default=0, metavar="N", help="default: one per 256 MiB")
    parser.add_argument("--label-from-dir", action="store_true", help="image/class/label from the parent folder")
    parser.add_argument("--boxes", metavar="FILE.csv", help=(
        "object boxes, one CSV row per box: filename,class,xmin,ymin,xmax,ymax in pixels (OD-API tutorial layout)"))
    parser.add_argument("--sample", action="store_true", help="the embedded sample set (scikit-image's photographs)")
    parser.add_argument("--gzip", action="store_true", help="GZIP-compress the shards (suffix .tfrecord.gz)")
    parser.add_argument("--max-pixels", type=int, default=codec.DEFAULT_MAX_PIXELS, metavar="N")
    args = parser.parse_args(argv)
    if args.sample == bool(args.sources):
        parser.error("give image sources or --sample, not both and not neither")
    if args.num_shards < 0:
        parser.error("--num-shards must be >= 0")
    return args


def expand(pattern: str) -> list[tuple[str, int]]:
    """The image files a SRC names: a file, a folder (recursively) or a glob."""
    is_glob = any(c in pattern for c in GLOB_CHARS)
    found = storage.match(pattern) if is_glob or storage.is_remote(pattern) or os.path.exists(pattern) else []
    if not found and storage.is_remote(pattern) and not is_glob:
        found = storage.match(pattern.rstrip("/") + "/**")
    if not is_glob and (storage.is_remote(pattern) or os.path.isdir(pattern)):
        found = [(p, s) for p, s in found if p.lower().endswith(IMAGE_SUFFIXES)]
    if not found:
        raise UsageError(f"ingest: {pattern!r} matches no image file; give existing files, folders or globs")
    return found


def collect(args: Namespace) -> list[Source]:
    if args.sample:
        return [Source(str(p), p.stat().st_size) for p in sample_paths()]
    seen: dict[str, Source] = {}
    for pattern in args.sources:
        for path, size in expand(pattern):
            label = os.path.basename(os.path.dirname(path)) if args.label_from_dir else None
            seen.setdefault(path, Source(path, size, label))
    return sorted(seen.values(), key=lambda s: s.path)


def shard_names(prefix: str, count: int, gzipped: bool) -> list[str]:
    suffix = ".tfrecord.gz" if gzipped else ".tfrecord"
    return [f"{prefix}-{i:05d}-of-{count:05d}{suffix}" for i in range(count)]


def to_example(source: Source, data: bytes, labels: dict[str, int], max_pixels: int,
               boxes: list[annotations.Box] | None = None, class_ids: dict[str, int] | None = None) -> tuple[bytes, bytes]:
    """(key, serialized Example) for one image file, with its ``boxes`` when annotations are given;
    raises DecodeError when it is not an image."""
    fmt, width, height = codec.probe(data, max_pixels)
    key = schema.image_key(data)
    features = schema.image_features(data, fmt, height, width)
    if boxes is not None:
        features.update(annotations.features(boxes, width, height, class_ids, source.path))
    features[schema.KEY] = schema.bytes_feature(key)
    features[schema.FILENAME] = schema.bytes_feature(os.path.basename(source.path).encode())
    if source.label is not None:
        features[schema.LABEL] = schema.int_feature(labels[source.label])
        features[schema.LABEL_TEXT] = schema.bytes_feature(source.label.encode())
    return key, schema.serialize(features)


def run(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sources = collect(args)
    total = sum(s.size for s in sources)
    count = args.num_shards or max(1, math.ceil(total / TARGET_SHARD_BYTES))
    labels = {name: i for i, name in enumerate(sorted({s.label for s in sources if s.label is not None}))}
    boxes = annotations.read(args.boxes) if args.boxes else None
    class_ids = annotations.class_ids(boxes) if boxes else {}
    if boxes:
        unknown = sorted(set(boxes) - {os.path.basename(s.path) for s in sources})
        if unknown:
            raise UsageError(f"ingest: --boxes names {unknown[0]!r}, which is not among the images "
                             f"({len(unknown)} such file name(s)); rows name images by file name")
    names = shard_names(args.output, count, args.gzip)
    shards: list[list[bytes]] = [[] for _ in names]
    written = skipped = 0
    for source in sources:
        data = storage.read_bytes(source.path)
        try:
            own = None if boxes is None else boxes.get(os.path.basename(source.path), [])
            key, example = to_example(source, data, labels, args.max_pixels, own, class_ids)
        except DecodeError as exc:
            skipped += 1
            print(f"ingest: skipped {source.path}: {exc.reason}: {exc}", file=sys.stderr)
            continue
        shards[int(key[:16], 16) % count].append(example)
        written += 1
        if sum(map(len, shards)) and written % 1000 == 0:
            print(f"ingest: {written} images read", file=sys.stderr)
    for name, records in zip(names, shards):
        with storage.open_write(name) as stream:
            tfrecord.write_records(stream, records, gzipped=args.gzip)
    pattern = f"{args.output}-*-of-{count:05d}" + (".tfrecord.gz" if args.gzip else ".tfrecord")
    label_note = f", {len(labels)} labels" if labels else ""
    if boxes is not None:
        label_note += f", {sum(map(len, boxes.values()))} boxes of {len(class_ids)} classes"
    print(f"ingest: {written} images -> {count} shard(s) {pattern} ({skipped} skipped{label_note})")
    return 0


if __name__ == "__main__":
    from aeops.cli import guarded

    sys.exit(guarded(run, sys.argv[1:]))
