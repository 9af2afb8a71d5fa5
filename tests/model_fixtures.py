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
