"""Property-based: any op, any size (1x1, 3x2, 1x4000 included), colour or formerly grayscale images:
uint8 in and out, shape kept, replay exact, and the same (seed, key, variant) always the same pixels."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aeops import ops
from tests.test_ops import CASES

EDGE_SHAPES = [(1, 1), (3, 2), (2, 3), (1, 4000), (4000, 1)]


@st.composite
def images(draw):
    height, width = draw(st.one_of(st.sampled_from(EDGE_SHAPES), st.tuples(st.integers(1, 48), st.integers(1, 48))))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):  # an image that was grayscale: decoded to three equal channels
        return np.repeat(rng.integers(0, 256, (height, width, 1), dtype=np.uint8), 3, axis=2)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def any_op_on_any_image(image, name, seed, key, variant):
    """The property, run by the default test and by a slow one with 20x the examples."""
    pipeline = ops.build([{"op": name, "p": 1.0, **CASES[name][0]}])
    before = image.copy()
    out, lineage = ops.augment(pipeline, image, seed, key, variant)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.array_equal(image, before), "ops must not modify their input"
    again, same = ops.augment(pipeline, image, seed, key, variant)
    assert np.array_equal(again, out) and same == lineage
    assert np.array_equal(ops.replay(image, json.loads(json.dumps(lineage))), out)


def any_op_test(examples: int):
    strategies = dict(image=images(), name=st.sampled_from(sorted(CASES)), seed=st.integers(0, 2**63 - 1),
                      key=st.binary(max_size=40), variant=st.integers(1, 10**6))
    return settings(max_examples=examples, deadline=None)(given(**strategies)(any_op_on_any_image))


test_any_op_on_any_image = any_op_test(150)
test_any_op_on_any_image_thoroughly = pytest.mark.slow(any_op_test(3000))  # ~20 s: pytest -m slow


@settings(max_examples=40, deadline=None)
@given(image=images(), seed=st.integers(0, 2**32), variant=st.integers(1, 1000), fit=st.booleans())
def test_whole_pipeline_replays_with_any_output_size(image, seed, variant, fit):
    output = {"output_size": "fit" if fit else "keep"}
    specs = [{"op": name, "p": 0.6, **cfg, **(output if name in ("rotate", "scale", "crop") else {})}
             for name, (cfg, _) in CASES.items()]
    out, lineage = ops.augment(ops.build(specs), image, seed, b"k", variant)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert fit or out.shape == image.shape
    assert np.array_equal(ops.replay(image, json.loads(json.dumps(lineage))), out)
