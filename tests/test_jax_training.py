"""The JAX path: the Keras 3 network trained on the JAX backend without TensorFlow, continued, then exported
into the SavedModel here; the export computes what the JAX network computes.

Runs with a Python that has keras and jax: ``AEOPS_JAX_PYTHON`` (e.g. a venv with keras, jax, numpy and
aeops' data readers, no TensorFlow), else this interpreter when jax is importable; skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

REPO = Path(__file__).resolve().parents[1]
JAX_PYTHON = os.environ.get("AEOPS_JAX_PYTHON") or (sys.executable if importlib.util.find_spec("jax") else None)

pytestmark = pytest.mark.skipif(JAX_PYTHON is None, reason="no jax: set AEOPS_JAX_PYTHON to a Python with keras and "
                                "jax (docs: README, 'Training on JAX')")

TINY = ["--set", "model.width=8", "--set", "model.depth=2", "--set", "model.blocks=1", "--set", "crop_size=32",
        "--set", "batch_size=4", "--set", "validation_fraction=0.26"]
PROBE = """
import sys, numpy as np, keras
from aeops.model.architecture import build_autoencoder, estimate_noise
network = build_autoencoder(width=8, depth=2, blocks=1, residual=True)
network.load_weights(sys.argv[1])
probe = np.load(sys.argv[2]).astype("float32") / 255.0
np.save(sys.argv[3], np.asarray(network([probe, np.asarray(estimate_noise(probe))])))
"""


def jax_run(*args: str) -> str:
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO)}
    done = subprocess.run([JAX_PYTHON, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_jax_training_continues_and_exports_the_same_network(tmp_path):
    from aeops.model import data
    from aeops.model.jax_training import export_run

    shard = data.pack_sample(str(tmp_path / "sample-00000-of-00001.tfrecord"))
    run = tmp_path / "run"
    jax_run("-m", "aeops.model.jax_training", "train", "--config", "configs/train.yaml", "--data", shard,
            "--out", str(run), "--steps", "3", *TINY)
    assert "5 steps in all" in jax_run("-m", "aeops.model.jax_training", "train", "--config", "configs/train.yaml",
                                       "--data", shard, "--out", str(run), "--steps", "2", *TINY)
    record = json.loads((run / "training.json").read_text())
    assert record["steps_done"] == 5 and record["device"].startswith("jax")
    assert record["tensorflow_imported"] is False  # the path a TensorFlow-less machine takes imports none

    probe = np.random.default_rng(0).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)  # a multiple of 2**depth
    np.save(tmp_path / "probe.npy", probe)
    jax_run("-c", PROBE, str(run / "network.weights.h5"), str(tmp_path / "probe.npy"), str(tmp_path / "jax.npy"))
    export_run(run, str(tmp_path / "model"))

    serve = tf.saved_model.load(str(tmp_path / "model")).signatures["serving_default"]
    exported = serve(images=tf.constant(probe))["reconstruction"].numpy().astype(int)
    expected = np.clip(np.rint(np.load(tmp_path / "jax.npy") * 255.0), 0, 255).astype(int)
    assert np.abs(exported - expected).max() <= 1  # float kernels of two backends
    meta = json.loads((tmp_path / "model" / "aeops_model.json").read_text())
    assert meta["training"]["backend"] == "jax" and meta["training"]["steps_done"] == 5
    assert meta["architecture"]["width"] == 8
