"""Do no harm: how much of the network's restoration each served image gets, from what its pixels show.

A clean photograph has nothing to restore, and every change the network makes to it is harm: on 97 crops of
the training photographs the shipped network, always on, left clean crops at 45.3 dB of themselves and JPEG q 95
/ q 90 ones 1.9 / 0.9 dB further from their originals than they came. So the export blends
``input + share * (restored - input)`` per image, the share rising from 0 to 1 with the evidence of a corruption
the network was trained to undo:

- Gaussian noise: the noise estimate (:func:`aeops.model.architecture.estimate_noise`, or the sigma the
  ``known_noise`` signature is told), from ``SIGMA_RAMP[0]`` to ``SIGMA_RAMP[1]`` grey levels;
- JPEG blocks: :func:`blockiness`, from ``BLOCKINESS_RAMP[0]`` to ``BLOCKINESS_RAMP[1]``.

An image that shows neither comes back bit for bit; one that shows either gets all of the network. The
ramps were set on those training crops (never the held-out ones): clean crops read a median 0.5 grey levels
of noise and blockiness 1.1; sigma 2 noise reads 2.0 or more in 95% of them, sigma 3 about 3.0; JPEG q 20
reads blockiness 1.38 or more in 95% of them. A ramp rather than a step keeps the output continuous in the input.
"""

from __future__ import annotations

import tensorflow as tf

SIGMA_RAMP = (1.5, 2.5)  # grey levels (0-255 scale)
BLOCKINESS_RAMP = (1.3, 1.6)
JPEG_BLOCK = 8


def blockiness(images: tf.Tensor) -> tf.Tensor:
    """JPEG blockiness of each image of a float ``(b, h, w, c)`` batch -> ``(b,)``; 1 = none, 0 = flat image.

    The mean absolute step between neighbouring pixels (grey), taken per column (and per row) position
    modulo 8: JPEG's 8x8 blocks put larger steps on one of the eight phases, at the block seams, so the
    largest phase over the mean of all eight is about 1 for a photograph and grows with compression. The
    largest phase rather than phase 7, so a crop that moved the grid reads the same. Horizontal and
    vertical averaged.
    """
    grey = tf.reduce_mean(tf.cast(images, tf.float32), axis=-1)
    across = tf.reduce_mean(tf.abs(grey[:, :, 1:] - grey[:, :, :-1]), axis=1)  # (b, w - 1)
    down = tf.reduce_mean(tf.abs(grey[:, 1:] - grey[:, :-1]), axis=2)  # (b, h - 1)
    return (_seam_ratio(across) + _seam_ratio(down)) / 2.0


def _seam_ratio(steps: tf.Tensor) -> tf.Tensor:
    """``(b, n)`` steps -> the largest of the eight phase means over their mean (0 when there is none)."""
    whole = tf.shape(steps)[1] // JPEG_BLOCK * JPEG_BLOCK
    blocks = tf.reshape(steps[:, :whole], (tf.shape(steps)[0], -1, JPEG_BLOCK))
    count = tf.cast(tf.shape(blocks)[1], tf.float32)
    phases = tf.math.divide_no_nan(tf.reduce_sum(blocks, axis=1), count)  # (b, 8)
    return tf.math.divide_no_nan(tf.reduce_max(phases, axis=1), tf.reduce_mean(phases, axis=1))


def _ramp(value: tf.Tensor, bounds: tuple[float, float]) -> tf.Tensor:
    return tf.clip_by_value((value - bounds[0]) / (bounds[1] - bounds[0]), 0.0, 1.0)


def shares(images: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
    """Each image's share of the restoration, ``(b,)`` in [0, 1]: float images in [0, 1] and their noise
    level ``(b, 1)`` on the same scale."""
    return tf.maximum(_ramp(sigma[:, 0] * 255.0, SIGMA_RAMP), _ramp(blockiness(images), BLOCKINESS_RAMP))


def blend(images: tf.Tensor, restored: tf.Tensor, share: tf.Tensor) -> tf.Tensor:
    """uint8 input and restoration -> uint8, each image ``share`` ``(b,)`` of the way from one to the other."""
    x, y = tf.cast(images, tf.float32), tf.cast(restored, tf.float32)
    return tf.cast(tf.round(x + share[:, None, None, None] * (y - x)), tf.uint8)


def describe() -> dict[str, list[float]]:
    """The gate as ``aeops_model.json`` records it."""
    return {"sigma_ramp": list(SIGMA_RAMP), "blockiness_ramp": list(BLOCKINESS_RAMP)}
