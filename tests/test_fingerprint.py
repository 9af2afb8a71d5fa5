"""The model hash names the same files the same way wherever the model lives (gs:// prefixes of any length)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aeops import storage
from aeops.fingerprint import model_sha256

FILES = {"saved_model.pb": b"graph", "fingerprint.pb": b"fp", "variables/variables.index": b"idx",
         "variables/variables.data-00000-of-00001": b"data", "aeops_model.json": b"{}"}


@pytest.mark.parametrize("prefix", ["m", "mm", "models/abc", "models/abcd"])  # odd and even lengths of the base
def test_model_sha256_on_gcs_equals_the_local_copy(tmp_path, gcs_emulator, prefix):
    for rel, data in FILES.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
        storage.write_bytes(f"gs://{gcs_emulator}/{prefix}/{rel}", data)
    assert model_sha256(f"gs://{gcs_emulator}/{prefix}") == model_sha256(str(tmp_path))


SAVE_A_MODULE = """
import sys, tensorflow as tf
module = tf.Module()
module.weights = tf.Variable([1.0, 2.0])
module.double = tf.function(lambda x: 2.0 * x * module.weights, input_signature=[tf.TensorSpec([2])])
tf.saved_model.save(module, sys.argv[1])
"""


def test_the_same_model_saved_twice_hashes_the_same(tmp_path):
    """Two processes saving the same module write the same graph and variables but different fingerprint.pb
    (a random UUID in it); the model hash must not tell them apart, as a re-export changes nothing."""
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-c", SAVE_A_MODULE, str(tmp_path / name)], check=True, capture_output=True)
    assert (tmp_path / "a" / "fingerprint.pb").read_bytes() != (tmp_path / "b" / "fingerprint.pb").read_bytes()
    assert model_sha256(str(tmp_path / "a")) == model_sha256(str(tmp_path / "b"))
