"""A few-step denoiser, trained once per test session by the real ``aeops train`` code path.

Registered for every test module by ``tests/conftest.py``; the fixture is
session-scoped, so every module that uses it shares one training run (a few seconds on a CPU).
"""

from __future__ import annotations

import pytest

TINY_SETTINGS = {
    "model.width": 8,
    "model.depth": 2,
    "model.blocks": 1,
    "crop_size": 32,
    "batch_size": 4,
    "steps_per_epoch": 3,
    "epochs": 2,
    "validation_fraction": 0.26,  # exactly one sample image (coins.png) hashes below this
}


def tiny_args(model_dir, **extra) -> list[str]:
    """``aeops train`` arguments for the tiny model, with ``extra`` settings overriding."""
    settings = {**TINY_SETTINGS, **extra}
    args = ["--model-dir", str(model_dir)]
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    return args


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """Directory of a SavedModel (+ aeops_model.json) exported by a few-step training on the sample set."""
    from pipelines import train

    model_dir = tmp_path_factory.mktemp("tiny_model")
    assert train.run(tiny_args(model_dir)) == 0
    return str(model_dir)


REJECTED_HEIGHT = 32


@pytest.fixture(scope="session")
def one_size_rejecting_model(tmp_path_factory) -> str:
    """A real SavedModel that returns its input but fails (``InvalidArgumentError``) on batches
    :data:`REJECTED_HEIGHT` pixels high, the way a model with a size limit fails on one image."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve(images):
        tf.debugging.assert_none_equal(tf.shape(images)[1], REJECTED_HEIGHT,
                                       message=f"this model rejects images {REJECTED_HEIGHT} pixels high")
        return {"reconstruction": tf.identity(images)}

    module = tf.Module()
    module.serve = serve
    path = tmp_path_factory.mktemp("one_size_rejecting_model")
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})
    return str(path)
