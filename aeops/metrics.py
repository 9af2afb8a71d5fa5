"""Image quality metrics on uint8 RGB arrays: PSNR and SSIM, numpy and scikit-image only (no TensorFlow),
so the Beam report, ``aeops evaluate`` and the tests all measure the same way.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels, peak 255; ``inf`` for equal images."""
    _check(a, b)
    mse = float(np.mean(np.square(a.astype(np.float32) - b.astype(np.float32)), dtype=np.float64))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over the channels, with the settings of Wang et al. 2004 (Gaussian window, sigma 1.5).

    That window spans 11 pixels; images of 7 to 10 pixels get scikit-image's default 7x7 uniform window.
    """
    _check(a, b)
    side = min(a.shape[0], a.shape[1])
    if side < 7:
        raise ValueError(f"SSIM needs images of at least 7x7 pixels, got {a.shape[1]}x{a.shape[0]}")
    if side < 11:
        return float(structural_similarity(a, b, channel_axis=-1, data_range=255))
    return float(structural_similarity(a, b, channel_axis=-1, data_range=255, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False))


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
