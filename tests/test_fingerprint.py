"""The model hash names the same files the same way wherever the model lives (gs:// prefixes of any length)."""

from __future__ import annotations

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
