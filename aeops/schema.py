"""The record schema of CONTRACT §3-4: ``tf.train.Example`` <-> :class:`Record`, and output examples.

Feature names default to the ``od-api`` preset; the configured ``schema.image`` and ``schema.key`` are
passed in by the stages (spatial targets are read and written by :mod:`aeops.spatial`).

Serialisation is always ``deterministic=True`` (map keys sorted), so equal records are equal bytes on
every runner: the determinism promise of the contract rests on it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from google.protobuf.message import DecodeError as ProtoDecodeError
from aeops import example_proto as pb
from aeops.errors import RecordError

IMAGE = "image/encoded"
FORMAT = "image/format"
HEIGHT = "image/height"
WIDTH = "image/width"
CHANNELS = "image/channels"
KEY = "image/key"
FILENAME = "image/filename"
LABEL = "image/class/label"
LABEL_TEXT = "image/class/text"

SOURCE_KEY = "aeops/source_key"
DROPPED_BOXES = "aeops/dropped_boxes"
VARIANT = "aeops/variant"
OPS = "aeops/ops"
SEED = "aeops/seed"
MODEL = "aeops/model"

DEAD_RECORD = "dead/record"
DEAD_SOURCE = "dead/source"
DEAD_STAGE = "dead/stage"
DEAD_REASON = "dead/reason"
DEAD_VARIANTS = "dead/variants"

DEAD_FEATURES = (DEAD_RECORD, DEAD_SOURCE, DEAD_STAGE, DEAD_REASON, DEAD_VARIANTS)


@dataclass(frozen=True)
class Record:
    """A parsed input record: its stable key, the encoded image, and the whole Example for pass-through."""

    key: bytes
    image: bytes
    example: pb.Example


def image_key(image: bytes) -> bytes:
    """The id of a record without ``image/key``: SHA-256 of the image bytes, hex."""
    return hashlib.sha256(image).hexdigest().encode("ascii")


def parse(serialized: bytes, image_feature: str = IMAGE, key_feature: str | None = KEY) -> Record:
    """The record; its key from ``key_feature`` when present and not empty, else the image's SHA-256."""
    try:
        example = pb.Example.FromString(serialized)
    except (ProtoDecodeError, RuntimeWarning, ValueError) as exc:
        raise RecordError(f"not a tf.train.Example: {exc}", reason="not_an_example") from None
    features = example.features.feature
    if image_feature not in features:
        raise RecordError(f"missing {image_feature}", reason="missing_image")
    values = features[image_feature].bytes_list.value
    if len(values) != 1:
        raise RecordError(f"{image_feature} must hold exactly one bytes value, found {len(values)}",
                          reason="missing_image")
    image = values[0]
    keys = features[key_feature].bytes_list.value if key_feature and key_feature in features else []
    key = keys[0] if keys and keys[0] else image_key(image)
    return Record(key=key, image=image, example=example)


def bytes_feature(*values: bytes) -> pb.Feature:
    return pb.Feature(bytes_list=pb.BytesList(value=list(values)))


def int_feature(*values: int) -> pb.Feature:
    return pb.Feature(int64_list=pb.Int64List(value=list(values)))


def float_feature(*values: float) -> pb.Feature:
    return pb.Feature(float_list=pb.FloatList(value=list(values)))


def serialize(features: dict[str, pb.Feature], base: pb.Example | None = None) -> bytes:
    example = pb.Example()
    if base is not None:
        example.CopyFrom(base)
    for name, feature in features.items():
        example.features.feature[name].CopyFrom(feature)
    return example.SerializeToString(deterministic=True)


def image_features(image: bytes, fmt: str, height: int, width: int, name: str = IMAGE) -> dict[str, pb.Feature]:
    return {
        name: bytes_feature(image),
        FORMAT: bytes_feature(fmt.encode()),
        HEIGHT: int_feature(height),
        WIDTH: int_feature(width),
        CHANNELS: int_feature(3),
    }


def output_example(
    record: Record,
    image: bytes,
    fmt: str,
    height: int,
    width: int,
    variant: int,
    ops: list[dict],
    seed: int,
    model: str,
    image_feature: str = IMAGE,
    targets: dict[str, pb.Feature] | None = None,
) -> bytes:
    """The output record: pass-through features of the input, the new image under ``image_feature``, the
    moved spatial ``targets`` features (which replace the input's), and the ``aeops/*`` lineage."""
    features = {**(targets or {}), **image_features(image, fmt, height, width, image_feature)}
    features.update(
        {
            SOURCE_KEY: bytes_feature(record.key),
            VARIANT: int_feature(variant),
            OPS: bytes_feature(ops_json(ops).encode()),
            SEED: int_feature(seed),
            MODEL: bytes_feature(model.encode()),
        }
    )
    return serialize(features, base=record.example)


def ops_json(ops: list[dict]) -> str:
    return json.dumps(ops, sort_keys=True, separators=(",", ":"))


def dead_letter_example(record: bytes, source: str, stage: str, reason: str, variants: int) -> bytes:
    return serialize(
        {
            DEAD_RECORD: bytes_feature(record),
            DEAD_SOURCE: bytes_feature(source.encode()),
            DEAD_STAGE: bytes_feature(stage.encode()),
            DEAD_REASON: bytes_feature(reason.encode()),
            DEAD_VARIANTS: int_feature(variants),
        }
    )


def parse_dead_letter(serialized: bytes) -> dict:
    """A dead-letter entry as a dict: record, source, stage, reason, variants."""
    example = pb.Example.FromString(serialized)
    entry = {name.split("/", 1)[1]: feature_value(example, name) for name in DEAD_FEATURES}
    return {k: v.decode() if isinstance(v, bytes) and k != "record" else v for k, v in entry.items()}


def feature_value(example: pb.Example, name: str):
    """The first value of feature ``name`` (bytes, int or float), or None when absent."""
    if name not in example.features.feature:
        return None
    feature = example.features.feature[name]
    kind = feature.WhichOneof("kind")
    values = getattr(feature, kind).value if kind else []
    return values[0] if values else None
