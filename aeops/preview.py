"""``aeops preview``: a captioned grid of images and their augmented variants, to tune a config by eye.

    aeops preview --config configs/all-ops.yaml --images 'photos/*.jpg' --variants 8 --output preview.png

One row per image: the source, then variants 1..N exactly as ``aeops augment`` draws them (same seed,
same key = SHA-256 of the file's bytes, as ``aeops ingest`` assigns it), each captioned with the ops
that fired and their drawn parameters. A TFRecord shard (``*.tfrecord[.gz]``) among the images gives its
first ``--records`` records, read by the config's ``schema:``, with their spatial targets (boxes,
keypoints, mask) drawn over the source and over every variant as the output record keeps them.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from aeops import codec, config, ops, schema, spatial, storage, tfrecord
from aeops.config import SchemaConfig
from aeops.draw import draw
from aeops.errors import DecodeError, RecordError, UsageError

TILE = 256
FONT_SIZE = 13
LINE = FONT_SIZE + 3
PAD = 6
SETTINGS = ("interpolation", "border_mode", "fill", "output_size", "seed", "per_channel")


def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.variants < 1:
        raise UsageError(f"--variants {args.variants}: must be at least 1")
    cfg = config.load(config.PipelineConfig, args.config, args.set)
    pipeline = ops.build(cfg.augment.ops)
    paths = _expand(args.images)
    sources = [source for path in paths for source in _sources(path, cfg.schema, args.records, cfg.decode.max_pixels)]
    rows = [_row(source, pipeline, cfg.seed, args.variants, cfg.schema.min_box_visibility) for source in sources]
    sheet = render(rows, args.tile)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.output)
    print(f"preview: {len(sources)} image(s) x {args.variants} variant(s) -> {args.output}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aeops preview", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="pipeline YAML; its augment.ops and seed are used")
    parser.add_argument("--images", nargs="+", required=True, metavar="GLOB", help="image files or globs")
    parser.add_argument("--variants", type=int, default=8, help="augmented variants per image (default 8)")
    parser.add_argument("--output", default="preview.png", help="PNG to write (default preview.png)")
    parser.add_argument("--records", type=int, default=8, metavar="N",
                        help="records shown from each TFRecord shard among the images (default 8)")
    parser.add_argument("--tile", type=int, default=TILE, help=f"longest side of each thumbnail (default {TILE})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    return parser


def _expand(patterns: list[str]) -> list[str]:
    paths: list[str] = []
    for pattern in patterns:
        found = sorted(p for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not found:
            raise UsageError(f"--images {pattern!r}: no file matches; pass image files or a glob such as 'photos/*.jpg'")
        paths += [p for p in found if p not in paths]
    return paths


def _sources(path: str, layout: SchemaConfig, records: int, max_pixels: int):
    """(name, image, key, targets) of an image file, or of the first ``records`` records of a shard."""
    if not path.endswith((".tfrecord", ".tfrecord.gz")):
        data = Path(path).read_bytes()
        try:
            yield Path(path).name, codec.decode(data, max_pixels), schema.image_key(data), None
        except DecodeError as exc:
            raise UsageError(f"--images: {path}: {exc}") from None
        return
    with storage.open_read(path) as stream:
        for index, serialized in enumerate(tfrecord.read_records(stream, tfrecord.is_gzip(path))):
            if index == records:
                return
            try:
                record = schema.parse(serialized, layout.image, layout.key)
                image = codec.decode(record.image, max_pixels)
                targets = spatial.read(record.example, layout, image.shape)
            except (RecordError, DecodeError) as exc:
                raise UsageError(f"--images: {path} record {index}: {exc}") from None
            label = schema.feature_value(record.example, layout.label) if layout.label else None
            name = f"{Path(path).name}#{index}" + ("" if label is None else f" label={_number(label)}")
            yield name, image, record.key, targets


def _row(source, pipeline: ops.Pipeline, seed: int, variants: int, min_box_visibility: float):
    """[(image, caption)] for one source: itself, then each variant with the ops it applied, targets drawn."""
    name, image, key, targets = source
    row = [(draw(image, targets), f"{name} {image.shape[1]}x{image.shape[0]}")]
    for variant in range(1, variants + 1):
        if targets is None:
            out, lineage = ops.augment(pipeline, image, seed, key, variant)
        else:
            out, lineage, moved = ops.augment(pipeline, image, seed, key, variant, targets)
            out = draw(out, moved, moved.kept(min_box_visibility))
        row.append((out, f"#{variant} " + (" · ".join(caption(entry) for entry in lineage) or "(no op fired)")))
    return row


def caption(entry: dict) -> str:
    """``rotate(angle=-7.21)``: the op and its drawn numbers; fixed settings and seeds are left out."""
    shown = [f"{k}={_number(v)}" for k, v in entry["params"].items() if k not in SETTINGS]
    return f"{entry['op']}({', '.join(shown)})" if shown else entry["op"]


def _number(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def render(rows: list[list[tuple[np.ndarray, str]]], tile: int = TILE) -> Image.Image:
    """Thumbnails (aspect kept, at most ``tile`` a side) in a grid, each over its caption wrapped to the tile;
    cells are as tall as the longest caption, so no op list is cut."""
    font = ImageFont.load_default(size=FONT_SIZE)
    captions = [[wrap(text, font, tile) for _, text in row] for row in rows]
    lines = max(len(c) for row in captions for c in row)
    cell_w, cell_h = tile + 2 * PAD, tile + lines * LINE + 2 * PAD
    columns = max(len(row) for row in rows)
    sheet = Image.new("RGB", (columns * cell_w, len(rows) * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        for c, (image, _) in enumerate(row):
            thumb = Image.fromarray(image)
            thumb.thumbnail((tile, tile), Image.Resampling.LANCZOS)
            x, y = c * cell_w + PAD, r * cell_h + PAD
            sheet.paste(thumb, (x + (tile - thumb.width) // 2, y + (tile - thumb.height) // 2))
            for i, line in enumerate(captions[r][c]):
                draw.text((x, y + tile + 2 + i * LINE), line, fill="black", font=font)
    return sheet


def wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy word wrap by rendered width; a word wider than the line is split."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}".strip()
        if font.getlength(candidate) <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
        while font.getlength(current) > width and len(current) > 1:
            cut = max(1, int(len(current) * width / font.getlength(current)))
            lines.append(current[:cut])
            current = current[cut:]
    lines.append(current)
    return lines
