"""The shipped model: present, small, described, and it actually denoises."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from aeops import codec, schema
from aeops.config import TrainConfig
from aeops.config import load as load_config
from aeops.evaluate import add_noise
from aeops.metrics import psnr
from aeops.model import PRETRAINED, load
from aeops.fingerprint import model_sha256
from aeops.model.data import split_fraction
from aeops.sample import data_dir

MAX_BYTES = 8 << 20
ROOT = Path(__file__).resolve().parents[1]


def test_shipped_model_is_small_and_described():
    size = sum(p.stat().st_size for p in PRETRAINED.rglob("*") if p.is_file())
    assert 0 < size < MAX_BYTES
    meta = json.loads((PRETRAINED / "aeops_model.json").read_text())
    assert meta["sha256"] == model_sha256(str(PRETRAINED))
    assert {"architecture", "training", "data", "metrics"} <= set(meta)
    assert meta["training"]["config"]["model"]["width"] == meta["architecture"]["width"]
    assert len(meta["data"]["fingerprint"]) == 64
    assert not (PRETRAINED / "checkpoints").exists()


def held_out_photograph() -> np.ndarray:
    """coins.png, never trained on (grayscale): the one sample image in the validation split of stage 1
    (configs/pretrained.yaml, the embedded sample set), and stage 2 trained on other photographs."""
    data = (data_dir() / "coins.png").read_bytes()
    stage1 = load_config(TrainConfig, ROOT / "configs" / "pretrained.yaml")
    assert stage1.data is None and split_fraction(schema.image_key(data)) < stage1.validation_fraction
    stage2 = json.loads((PRETRAINED / "aeops_model.json").read_text())
    assert stage2["training"]["continued_from"] and "training-data" in stage2["data"]["source"]
    return codec.decode(data)[60:188, 100:241]  # 128x141: an odd width


def test_shipped_model_improves_psnr_on_a_held_out_photograph():
    serve, _ = load()  # the default is the shipped model
    clean = held_out_photograph()
    noisy = add_noise(clean, 25, 0, 0)
    restored = serve(images=noisy[None])["reconstruction"].numpy()[0]
    assert restored.shape == clean.shape and restored.dtype == np.uint8
    assert psnr(clean, restored) > psnr(clean, noisy) + 6  # measured +9.5 dB


def test_grayscale_fed_as_rgb_is_restored_in_every_channel():
    """A gray image with gray noise, fed as three equal channels (as the codec decodes it): each channel is
    restored, and they stay (nearly) equal, so the output is still a gray image."""
    serve, _ = load()
    clean = held_out_photograph()[..., :1]
    noisy = np.repeat(add_noise(clean, 25, 0, 0), 3, axis=2)
    restored = serve(images=noisy[None])["reconstruction"].numpy()[0]
    for channel in range(3):
        assert psnr(clean, restored[..., channel : channel + 1]) > psnr(clean, noisy[..., :1]) + 4  # measured +5.7 dB
    channels = restored.astype(int)
    assert np.abs(channels[..., 0] - channels[..., 1]).mean() < 2 and np.abs(channels[..., 0] - channels[..., 2]).mean() < 2
