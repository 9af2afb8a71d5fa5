"""Box annotations for ``aeops ingest --boxes FILE.csv``: one CSV row per box, as the TF Object Detection
API tutorials write them (``filename,width,height,class,xmin,ymin,xmax,ymax``, coordinates in pixels of the
image as stored). Only ``filename``, ``class`` and the four coordinates are read; other columns are
ignored. Rows name images by file name (no folders). Class ids are 1..K in the sorted order of the class
names, as an OD-API label map numbers them.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from aeops import schema, storage
from aeops import example_proto as pb
from aeops.errors import UsageError

COLUMNS = ("filename", "class", "xmin", "ymin", "xmax", "ymax")
PREFIX = "image/object"


@dataclass(frozen=True)
class Box:
    label: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    line: int


def read(path: str) -> dict[str, list[Box]]:
    """File name -> its boxes, in file order; a bad row is a usage error naming its line."""
    try:
        text = storage.read_bytes(path).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"ingest: --boxes {path!r}: cannot read it as UTF-8 text: {exc}") from None
    rows = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (rows.fieldnames or [])]
    if missing:
        raise UsageError(f"ingest: --boxes {path!r}: no column {missing[0]!r}; the header must name "
                         f"{', '.join(COLUMNS)} (pixels)")
    boxes: dict[str, list[Box]] = {}
    for row in rows:
        line = rows.line_num
        try:
            box = Box(row["class"].strip(), *(float(row[c]) for c in COLUMNS[2:]), line)
        except (TypeError, ValueError):
            raise UsageError(f"ingest: --boxes {path!r} line {line}: xmin, ymin, xmax, ymax must be numbers") from None
        if not box.label or box.xmin > box.xmax or box.ymin > box.ymax:
            raise UsageError(f"ingest: --boxes {path!r} line {line}: needs a class and xmin <= xmax, ymin <= ymax")
        boxes.setdefault(row["filename"].strip(), []).append(box)
    return boxes


def class_ids(boxes: dict[str, list[Box]]) -> dict[str, int]:
    return {name: i for i, name in enumerate(sorted({b.label for bs in boxes.values() for b in bs}), 1)}


def features(boxes: list[Box], width: int, height: int, ids: dict[str, int], source: str) -> dict[str, pb.Feature]:
    """The OD-API object features of one image (empty lists when it has no box)."""
    for box in boxes:
        if box.xmin < 0 or box.ymin < 0 or box.xmax > width or box.ymax > height:
            raise UsageError(f"ingest: --boxes line {box.line}: box ({box.xmin:g}, {box.ymin:g}, {box.xmax:g}, "
                             f"{box.ymax:g}) lies outside {source} ({width}x{height} pixels)")
    return {
        f"{PREFIX}/bbox/xmin": schema.float_feature(*(b.xmin / width for b in boxes)),
        f"{PREFIX}/bbox/ymin": schema.float_feature(*(b.ymin / height for b in boxes)),
        f"{PREFIX}/bbox/xmax": schema.float_feature(*(b.xmax / width for b in boxes)),
        f"{PREFIX}/bbox/ymax": schema.float_feature(*(b.ymax / height for b in boxes)),
        f"{PREFIX}/class/text": schema.bytes_feature(*(b.label.encode() for b in boxes)),
        f"{PREFIX}/class/label": schema.int_feature(*(ids[b.label] for b in boxes)),
    }
