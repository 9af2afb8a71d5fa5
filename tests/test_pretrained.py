"""The shipped model: present, small, described, and it actually denoises."""

from __future__ import annotations

import json

import numpy as np

from aeops import codec
from aeops.evaluate import add_noise
from aeops.metrics import psnr
from aeops.model import PRETRAINED, load
from aeops.fingerprint import model_sha256
from aeops.sample import data_dir

MAX_BYTES = 8 << 20


def test_shipped_model_is_small_and_described():
    size = sum(p.stat().st_size for p in PRETRAINED.rglob("*") if p.is_file())
    assert 0 < size < MAX_BYTES
    meta = json.loads((PRETRAINED / "aeops_model.json").read_text())
    assert meta["sha256"] == model_sha256(str(PRETRAINED))
    assert {"architecture", "training", "data", "metrics"} <= set(meta)
    assert meta["training"]["config"]["model"]["width"] == meta["architecture"]["width"]
    assert len(meta["data"]["fingerprint"]) == 64
    assert not (PRETRAINED / "checkpoints").exists()


def test_shipped_model_improves_psnr_on_a_noisy_sample():
    serve, _ = load()  # the default is the shipped model
    clean = codec.decode((data_dir() / "astronaut.png").read_bytes())[96:224, 160:300]  # 128x140: odd width
    noisy = add_noise(clean, 25, 0, 0)
    restored = serve(images=noisy[None])["reconstruction"].numpy()[0]
    assert restored.shape == clean.shape and restored.dtype == np.uint8
    assert psnr(clean, restored) > psnr(clean, noisy) + 6
