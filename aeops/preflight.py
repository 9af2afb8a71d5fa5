"""Checks run once before a job starts, so that a wrong model or a wrong schema is one line, not a dataset.

Without them a model with another signature, or shards that keep the image under another feature name,
fail record by record inside the pipeline: every record becomes a dead letter and an empty version is
written. Each check reads a little (one probe call, the first records of one shard) and raises a
:class:`~aeops.errors.UsageError` (exit 2) saying what was found instead of what CONTRACT §3/§5 want.
"""

from __future__ import annotations

import itertools
from typing import NoReturn

import numpy as np

from aeops import schema, storage, tfrecord
from aeops.errors import UsageError
from aeops.example_proto import Example
from aeops.inference import error_line, local_copy

INPUT, OUTPUT = "images", "reconstruction"
WANTED = f"serving_default: {INPUT} uint8 [batch, height, width, 3] -> {OUTPUT} uint8, same shape"
PROBE_SHAPE = (2, 9, 13, 3)  # odd sizes near the 8-pixel minimum: the model must pad and crop inside
SCHEMA_RECORDS = 16
SCHEMA_FIX = ("; name the feature that holds the image bytes with --set schema.image=NAME "
              "(or --set schema.preset=tfds for TFDS shards)")


def check_model(model_dir: str, command: str = "augment", precision: str = "float32"):
    """Load ``model_dir`` and call it once on :data:`PROBE_SHAPE`; raise unless it honours CONTRACT §5.

    Returns the loaded serving function, so that a caller that runs the model in this process need not load
    it again (:func:`aeops.inference.handed_over`); hence ``precision``, the one the pipeline will serve in.
    """
    import tensorflow as tf

    from aeops.model import load

    serve, _ = load(local_copy(model_dir), precision)
    _, inputs = serve.structured_input_signature
    spec = inputs.get(INPUT)
    if set(inputs) != {INPUT} or spec.dtype != tf.uint8 or not _any_size(spec.shape):
        _fail(command, model_dir, "takes " + ", ".join(f"{name} {_describe(s)}" for name, s in sorted(inputs.items())))
    outputs = serve.structured_outputs
    if set(outputs) != {OUTPUT}:
        _fail(command, model_dir, "returns " + ", ".join(f"{name} {_describe(s)}" for name, s in sorted(outputs.items())))
    probe = np.random.default_rng(0).integers(0, 256, PROBE_SHAPE, dtype=np.uint8)
    try:
        result = serve(**{INPUT: tf.constant(probe)})[OUTPUT]
    except (tf.errors.OpError, ValueError, TypeError) as exc:
        _fail(command, model_dir, f"fails on a {_shape(PROBE_SHAPE)} uint8 probe: {error_line(exc)}")
    if result.dtype != tf.uint8 or tuple(result.shape) != PROBE_SHAPE:
        _fail(command, model_dir, f"returns {result.dtype.name} {_shape(result.shape)} for a {_shape(PROBE_SHAPE)} probe")
    return serve


def check_schema(shard: str, image_feature: str = schema.IMAGE, command: str = "augment", hint: str = SCHEMA_FIX) -> None:
    """Raise when none of the first records of ``shard`` that parse as Examples holds ``image_feature``.

    Damaged frames and records that are not Examples prove nothing either way (the pipeline dead-letters
    them one by one), so only records that parse are looked at; a shard with none passes.
    """
    seen: set[str] = set()
    examples = 0
    with storage.open_read(shard) as stream:
        for frame in itertools.islice(tfrecord.read_frames(stream, tfrecord.is_gzip(shard)), SCHEMA_RECORDS):
            if frame.error:
                break
            try:
                features = Example.FromString(frame.data).features.feature
            except Exception:  # noqa: BLE001 - not an Example: the pipeline's decode stage says so per record
                continue
            if image_feature in features:
                return
            examples += 1
            seen.update(features)
    if examples:
        found = ", ".join(sorted(seen)) or "no features at all"
        raise UsageError(f"{command}: none of the first {examples} records of {shard} has the image feature "
                         f"{image_feature!r}; they have: {found}{hint}")


def _any_size(shape) -> bool:
    """[batch, height, width, 3] with height and width left open, as CONTRACT §5 promises any size."""
    dims = shape.as_list() if shape.rank is not None else []
    return len(dims) == 4 and dims[1] is None and dims[2] is None and dims[3] in (3, None)


def _describe(spec) -> str:
    return f"{spec.dtype.name} {_shape(spec.shape)}"


def _shape(shape) -> str:
    dims = shape.as_list() if hasattr(shape, "as_list") else list(shape)
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _fail(command: str, model_dir: str, found: str) -> NoReturn:
    raise UsageError(f"{command}: model {model_dir!r} {found}; aeops needs {WANTED}")
