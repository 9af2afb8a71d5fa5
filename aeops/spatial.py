"""Spatial targets in records (CONTRACT §3): read and check them by the configured schema, and write them
back after the ops moved them (:mod:`aeops.ops.targets` does the moving).

Per-object lists -- every feature under ``schema.objects`` (e.g. ``image/object/*``) -- hold a fixed number
of values per box: one for a label, four for a TFDS box, K for K keypoints. A box dropped because too
little of it is left in the frame takes its values out of every such list, so the lists stay aligned.
A malformed target raises :class:`~aeops.errors.RecordError` (reason ``bad_targets``) naming the feature:
nothing is guessed.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from aeops import example_proto as pb
from aeops import schema
from aeops.config import SchemaConfig
from aeops.errors import RecordError
from aeops.ops.targets import Targets

TOLERANCE = 1e-3  # normalised coordinates this far outside [0, 1] are rounding and are clipped
OD_API_BOX = ("xmin", "ymin", "xmax", "ymax")
TFDS_BOX = (1, 0, 3, 2)  # [ymin, xmin, ymax, xmax] -> [xmin, ymin, xmax, ymax]


def read(example: pb.Example, layout: SchemaConfig, shape: tuple[int, ...]) -> Targets | None:
    """The record's targets for its decoded image of ``shape``; None when it carries none."""
    features = example.features.feature
    boxes = _boxes(features, layout)
    keypoints, visible = _keypoints(features, layout, None if boxes is None else len(boxes))
    mask = _mask(features, layout, shape)
    if boxes is None and keypoints is None and mask is None:
        return None
    if boxes is not None:
        for name in per_object(features, layout):
            _values_per_object(features, name, len(boxes))
    return Targets.of(shape, () if boxes is None else boxes, () if keypoints is None else keypoints, visible, mask)


def write(example: pb.Example, layout: SchemaConfig, moved: Targets | None) -> dict[str, pb.Feature]:
    """The output's target features: ``moved`` targets (None = no geometric op ran, the input's stand) with
    the boxes under ``layout.min_box_visibility`` dropped, every per-object list filtered alike, and
    ``aeops/dropped_boxes`` when the record has boxes."""
    features = example.features.feature
    has_boxes = bool(layout.boxes) and any(name in features for name in box_names(layout))
    if moved is None:
        return {schema.DROPPED_BOXES: schema.int_feature(0)} if has_boxes else {}
    out: dict[str, pb.Feature] = {}
    objects = len(moved.boxes)
    kept = moved.kept(layout.min_box_visibility) if has_boxes else np.arange(objects)
    if has_boxes:
        boxes = moved.boxes[kept]
        if layout.box_format == "tfds":
            out[layout.boxes] = schema.float_feature(*boxes[:, TFDS_BOX].reshape(-1).tolist())
        else:
            out.update({f"{layout.boxes}/{side}": schema.float_feature(*boxes[:, i].tolist())
                        for i, side in enumerate(OD_API_BOX)})
        for name in per_object(features, layout):
            out[name] = _select(features[name], kept, objects)
        out[schema.DROPPED_BOXES] = schema.int_feature(objects - len(kept))
    if len(moved.keypoints):
        out.update(_write_keypoints(features, layout, moved, kept if has_boxes else None))
    if moved.mask is not None:
        out[layout.mask] = schema.bytes_feature(_png(moved.mask, features[layout.mask].bytes_list.value[0]))
    return out


def box_names(layout: SchemaConfig) -> tuple[str, ...]:
    if not layout.boxes:
        return ()
    return (layout.boxes,) if layout.box_format == "tfds" else tuple(f"{layout.boxes}/{s}" for s in OD_API_BOX)


def keypoint_names(layout: SchemaConfig) -> tuple[str, str, str]:
    return tuple(f"{layout.keypoints}/{axis}" for axis in ("x", "y", "visibility"))


def per_object(features, layout: SchemaConfig) -> list[str]:
    """The per-object lists filtered by index (the boxes and keypoints are rewritten whole instead)."""
    if not layout.objects:
        return []
    own = set(box_names(layout)) | (set(keypoint_names(layout)) if layout.keypoints else set())
    return sorted(name for name in features if name.startswith(layout.objects) and name not in own)


# --- reading and checking ------------------------------------------------------------------------


def _bad(name: str, problem: str) -> RecordError:
    return RecordError(f"{name}: {problem}", reason="bad_targets")


def _floats(features, name: str) -> np.ndarray:
    feature = features[name]
    kind = feature.WhichOneof("kind")
    if kind not in ("float_list", None):
        raise _bad(name, f"must be a float list, found {kind}")
    return np.array(feature.float_list.value, np.float64)


def _normalised(name: str, values: np.ndarray, missing_ok: bool = False) -> np.ndarray:
    """Values in [0, 1] up to :data:`TOLERANCE`, clipped; NaN only where ``missing_ok``."""
    nan = np.isnan(values)
    if nan.any() and not missing_ok:
        raise _bad(name, "holds NaN")
    real = values[~nan]
    if len(real) and (real.min() < -TOLERANCE or real.max() > 1 + TOLERANCE):
        worst = real[np.argmax(np.maximum(-real, real - 1))]
        raise _bad(name, f"value {worst:g} is outside [0, 1] (coordinates are normalised to the image)")
    return np.clip(values, 0.0, 1.0)


def _boxes(features, layout: SchemaConfig) -> np.ndarray | None:
    names = box_names(layout)
    present = [name for name in names if name in features]
    if not present:
        return None
    if len(present) < len(names):
        missing = next(name for name in names if name not in features)
        raise _bad(missing, f"missing while {present[0]} is present")
    if layout.box_format == "tfds":
        values = _normalised(names[0], _floats(features, names[0]))
        if len(values) % 4:
            raise _bad(names[0], f"holds {len(values)} values; expected [ymin, xmin, ymax, xmax] per box")
        boxes = values.reshape(-1, 4)[:, TFDS_BOX]
    else:
        columns = [_normalised(name, _floats(features, name)) for name in names]
        lengths = {name: len(c) for name, c in zip(names, columns)}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{name} {n}" for name, n in lengths.items())
            raise _bad(names[0], f"box lists of unequal length: {shown}")
        boxes = np.stack(columns, 1)
    for axis, (low, high) in enumerate(((0, 2), (1, 3))):
        wrong = np.flatnonzero(boxes[:, low] > boxes[:, high])
        if len(wrong):
            first = wrong[0]
            side, other = ("xmax", "xmin") if axis == 0 else ("ymax", "ymin")
            name = names[0] if layout.box_format == "tfds" else f"{layout.boxes}/{side}"
            raise _bad(name, f"box {first} has {side} {boxes[first, high]:g} < {other} {boxes[first, low]:g}")
    return boxes


def _keypoints(features, layout: SchemaConfig, objects: int | None):
    if not layout.keypoints:
        return None, None
    x_name, y_name, visibility_name = keypoint_names(layout)
    if x_name not in features and y_name not in features:
        return None, None
    for name in (x_name, y_name):
        if name not in features:
            raise _bad(name, f"missing while {x_name if name == y_name else y_name} is present")
    x = _normalised(x_name, _floats(features, x_name), missing_ok=True)
    y = _normalised(y_name, _floats(features, y_name), missing_ok=True)
    if len(x) != len(y):
        raise _bad(y_name, f"holds {len(y)} values, {x_name} {len(x)}")
    if objects is not None:
        _values_per_object(features, x_name, objects)
    visible = ~(np.isnan(x) | np.isnan(y))
    if visibility_name in features:
        visibility = np.array(features[visibility_name].int64_list.value)
        if len(visibility) != len(x):
            raise _bad(visibility_name, f"holds {len(visibility)} values, {x_name} {len(x)}")
        visible &= visibility > 0
    return np.stack([x, y], 1), visible


def _values_per_object(features, name: str, objects: int) -> int:
    values = _length(features[name])
    if (objects == 0 and values) or (objects and values % objects):
        raise _bad(name, f"holds {values} values for {objects} boxes; per-object lists must stay aligned")
    return values // objects if objects else 0


def _length(feature: pb.Feature) -> int:
    kind = feature.WhichOneof("kind")
    return len(getattr(feature, kind).value) if kind else 0


def _mask(features, layout: SchemaConfig, shape: tuple[int, ...]) -> np.ndarray | None:
    if not layout.mask or layout.mask not in features:
        return None
    values = features[layout.mask].bytes_list.value
    if len(values) != 1:
        raise _bad(layout.mask, f"must hold one PNG, found {len(values)} values")
    try:
        with Image.open(io.BytesIO(values[0]), formats=("PNG",)) as image:
            mask = np.array(image.convert("L") if image.mode == "1" else image)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for bad bytes
        raise _bad(layout.mask, f"not a readable PNG: {exc}") from None
    if mask.shape[:2] != tuple(shape[:2]):
        raise _bad(layout.mask, f"is {mask.shape[1]}x{mask.shape[0]}, the image {shape[1]}x{shape[0]}")
    return mask


# --- writing -------------------------------------------------------------------------------------


def _select(feature: pb.Feature, kept: np.ndarray, objects: int) -> pb.Feature:
    """The values of the ``kept`` objects of a list holding the same number of values per object."""
    kind = feature.WhichOneof("kind")
    out = pb.Feature()
    if kind is None:
        out.CopyFrom(feature)
        return out
    values = list(getattr(feature, kind).value)
    per = len(values) // objects if objects else 0
    getattr(out, kind).value.extend([values[i * per + j] for i in kept.tolist() for j in range(per)])
    return out


def _write_keypoints(features, layout: SchemaConfig, moved: Targets, kept: np.ndarray | None) -> dict:
    """x, y and visibility of the kept objects' keypoints. With a visibility list, a keypoint that left the
    image gets 0 and its coordinates clamped to the edge; without one, NaN coordinates (OD-API's "missing")."""
    x_name, y_name, visibility_name = keypoint_names(layout)
    points, visible = np.clip(moved.keypoints, 0.0, 1.0), moved.visible.copy()
    visibility = np.array(features[visibility_name].int64_list.value) if visibility_name in features else None
    if kept is not None:
        per = len(points) // len(moved.boxes) if len(moved.boxes) else 0
        index = (kept[:, None] * per + np.arange(per)).reshape(-1)
        points, visible = points[index], visible[index]
        visibility = None if visibility is None else visibility[index]
    out = {}
    if visibility is None:
        points[~visible] = np.nan
    else:
        out[visibility_name] = schema.int_feature(*np.where(visible, visibility, 0).tolist())
    out[x_name] = schema.float_feature(*points[:, 0].tolist())
    out[y_name] = schema.float_feature(*points[:, 1].tolist())
    return out


def _png(mask: np.ndarray, original: bytes) -> bytes:
    """The mask as a PNG in the original's mode (and palette, for a palette PNG)."""
    with Image.open(io.BytesIO(original)) as source:
        palette = source.getpalette() if source.mode == "P" else None
    image = Image.fromarray(mask)
    if palette is not None:
        image.putpalette(palette)  # an "L" image with a palette becomes "P", its class ids untouched
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
