"""Image quality metrics on uint8 RGB arrays: PSNR and SSIM, numpy and OpenCV only (no TensorFlow),
so the Beam report, ``aeops evaluate`` and the tests all measure the same way.

The pipeline computes both for every restored output, so speed matters: SSIM's five Gaussian-weighted
moments are OpenCV blurs in float32 (4-8x faster than scikit-image's float64 filters, equal to 1e-6).
"""

from __future__ import annotations

import math

import cv2
import numpy as np


SSIM_MIN_SIDE = 7


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels, peak 255; ``inf`` for equal images.

    OpenCV's L2 norm sums the squared differences of the uint8 arrays as they are, exactly: no float
    copies of a 16-megapixel image (three of them, 600 MB, the way ``astype`` would go).
    """
    _check(a, b)
    mse = cv2.norm(a, b, cv2.NORM_L2SQR) / a.size
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over the channels, with the settings of Wang et al. 2004 (Gaussian window, sigma 1.5).

    That window spans 11 pixels; images of 7 to 10 pixels get scikit-image's default 7x7 uniform window.
    """
    _check(a, b)
    side = min(a.shape[0], a.shape[1])
    if side < SSIM_MIN_SIDE:
        raise ValueError(f"SSIM needs images of at least 7x7 pixels, got {a.shape[1]}x{a.shape[0]}")
    if side < 11:
        # Imported here: scikit-image pulls in SciPy (half a second of every Beam worker's start-up) for
        # images of 7 to 10 pixels a side, which most runs never see.
        from skimage.metrics import structural_similarity

        return float(structural_similarity(a, b, channel_axis=-1, data_range=255))
    return _gaussian_ssim(a, b)


_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
_RADIUS = 5  # an 11x11 window: scikit-image's truncate=3.5 at sigma 1.5


BAND_ROWS = 128  # SSIM is computed over bands of rows: its memory is that of a band, not of the image


def _gaussian_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al.'s SSIM map (population covariances), averaged away from the borders the window overhangs,
    as ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.

    The map is local (an 11-row window), so it is built band by band, each band read with the
    :data:`_RADIUS` rows of context its window needs: eleven float32 planes of a band instead of the whole
    image (2 GB for 16 megapixels), the same values.
    """
    height = a.shape[0]
    inner_rows = range(_RADIUS, height - _RADIUS)
    total = 0.0
    for start in range(inner_rows.start, inner_rows.stop, BAND_ROWS):
        stop = min(start + BAND_ROWS, inner_rows.stop)
        top, bottom = max(0, start - _RADIUS), min(height, stop + _RADIUS)
        ssim_map = _ssim_map(a[top:bottom], b[top:bottom])
        total += float(ssim_map[start - top : stop - top, _RADIUS:-_RADIUS].sum(dtype=np.float64))
    return total / (len(inner_rows) * (a.shape[1] - 2 * _RADIUS) * a.shape[2])


def _ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x, y = a.astype(np.float32), b.astype(np.float32)

    def blur(image):
        return cv2.GaussianBlur(image, (2 * _RADIUS + 1, 2 * _RADIUS + 1), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    return ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2)) / ((mu_x * mu_x + mu_y * mu_y + _C1) * (var_x + var_y + _C2))


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
