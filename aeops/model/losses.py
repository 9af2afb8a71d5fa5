"""Training losses on float images in [0, 1]: the seed's MSE, a noise-balanced log-MSE, and L1 / SSIM options.

Computed in float32 even under mixed precision: squared errors of 8-bit-scale residuals underflow in
float16.
"""

from __future__ import annotations

import tensorflow as tf

LOG_MSE_FLOOR = (2.0 / 255.0) ** 2


def _error(clean, restored):
    return tf.cast(clean, tf.float32) - tf.cast(restored, tf.float32)


def mse(clean, restored):
    return tf.reduce_mean(tf.square(_error(clean, restored)))


def log_mse(clean, restored):
    """The mean over images of ``10 log10(1 + MSE / floor)``: each image's error in dB above 2 grey levels.

    A blind network trained with the batch MSE spends itself on its heaviest-noise samples: at sigma 50 an
    image's error is 3-4x that of sigma 15, and so is its share of the gradient, while the targets are stated
    per noise level in dB. The log gives each image's error the weight ``1 / (MSE + floor)``, so a dB gained at
    sigma 15 counts about as much as one at sigma 50; the floor stops clean samples, which a residual net
    restores almost exactly, from taking over. Zero for a perfect restoration, like the others.
    """
    per_image = tf.reduce_mean(tf.square(_error(clean, restored)), axis=[1, 2, 3])
    return tf.reduce_mean(10.0 * tf.math.log(1.0 + per_image / LOG_MSE_FLOOR) / tf.math.log(10.0))


def l1(clean, restored):
    return tf.reduce_mean(tf.abs(_error(clean, restored)))


def ssim(clean, restored):
    """1 - SSIM, so lower is better like the others; SSIM alone can shift colour, hence ``mse+ssim``."""
    restored = tf.clip_by_value(tf.cast(restored, tf.float32), 0.0, 1.0)
    return 1.0 - tf.reduce_mean(tf.image.ssim(tf.cast(clean, tf.float32), restored, max_val=1.0))


def mse_ssim(clean, restored):
    """MSE for fidelity plus a small SSIM term for structure; 0.01 keeps MSE (hence PSNR) dominant."""
    return mse(clean, restored) + 0.01 * ssim(clean, restored)


LOSSES = {"mse": mse, "log-mse": log_mse, "l1": l1, "ssim": ssim, "mse+ssim": mse_ssim}


def get(name: str):
    return LOSSES[name]


def psnr(clean, restored):
    """PSNR in dB per image, for progress lines and validation: the number the targets are stated in.

    Per image, not a batch mean: Keras averages a metric's per-sample values itself, and a scalar would
    be weighted wrongly.
    """
    restored = tf.clip_by_value(tf.cast(restored, tf.float32), 0.0, 1.0)
    return tf.image.psnr(tf.cast(clean, tf.float32), restored, max_val=1.0)
