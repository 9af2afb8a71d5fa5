"""Do no harm, and ask for the right strength: what each served image's pixels show decides how much of the
network's restoration it gets and which noise level the network is told.

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

JPEG strength (:func:`network_noise`): compression takes away the finest detail the noise estimate reads, so a
q 20 image reads as noise-free, and the network, told "no noise", only half undoes its blocks: on the training
crops q 20 came out 0.58 dB above its input told 0 and 0.92 dB told 12 grey levels. The best level grows with
the :func:`seam_step`, the grey levels by which the steps at the block seams exceed the others (correlation 0.63
over 776 crops of q 20-95, against 0.18 for the blockiness ratio, which flat crops inflate), so the network is
told at least ``SIGMA_PER_SEAM_STEP`` times what exceeds ``PHOTO_SEAM_STEP``, up to ``MAX_JPEG_SIGMA``. Set on
those crops: through the gate, +0.28 / +0.21 / +0.10 / +0.02 dB at q 20 / 30 / 50 / 75, and sigma 2 / 5 and
q 90 / 95 unchanged to the hundredth.
"""

from __future__ import annotations

import tensorflow as tf

SIGMA_RAMP = (1.5, 2.5)  # grey levels (0-255 scale)
BLOCKINESS_RAMP = (1.3, 1.6)
PHOTO_SEAM_STEP = 0.5  # grey levels of seam step that a crop reads without JPEG (or from its camera's JPEG)
SIGMA_PER_SEAM_STEP, MAX_JPEG_SIGMA = 6.0, 12.0  # grey levels told per grey level of seam step above it; the most
JPEG_BLOCK = 8


def seam_profile(images: tf.Tensor) -> tf.Tensor:
    """The mean absolute step between neighbouring pixels (grey, 0-255) at each of the eight column and row
    positions modulo 8 of a uint8 ``(b, h, w, c)`` batch -> ``(b, 2, 8)``: across, then down.

    JPEG's 8x8 blocks put larger steps on one of the eight phases, at the block seams; which one depends on
    where a crop put the grid, so the readings below take the largest phase rather than phase 7.
    """
    grey = tf.reduce_mean(tf.cast(images, tf.float32), axis=-1)
    across = tf.reduce_mean(tf.abs(grey[:, :, 1:] - grey[:, :, :-1]), axis=1)  # (b, w - 1)
    down = tf.reduce_mean(tf.abs(grey[:, 1:] - grey[:, :-1]), axis=2)  # (b, h - 1)
    return tf.stack([_phase_means(across), _phase_means(down)], axis=1)


def _phase_means(steps: tf.Tensor) -> tf.Tensor:
    """``(b, n)`` steps -> ``(b, 8)``: the mean at each position modulo 8 (0 when there is none)."""
    whole = tf.shape(steps)[1] // JPEG_BLOCK * JPEG_BLOCK
    blocks = tf.reshape(steps[:, :whole], (tf.shape(steps)[0], -1, JPEG_BLOCK))
    return tf.math.divide_no_nan(tf.reduce_sum(blocks, axis=1), tf.cast(tf.shape(blocks)[1], tf.float32))


def blockiness(profile: tf.Tensor) -> tf.Tensor:
    """The largest phase of a :func:`seam_profile` over the mean of all eight, across and down averaged ->
    ``(b,)``: about 1 for a photograph, growing with compression; 0 for a flat image."""
    ratio = tf.math.divide_no_nan(tf.reduce_max(profile, axis=2), tf.reduce_mean(profile, axis=2))
    return tf.reduce_mean(ratio, axis=1)


def seam_step(profile: tf.Tensor) -> tf.Tensor:
    """The grey levels by which the largest phase of a :func:`seam_profile` exceeds the mean of all eight,
    across and down averaged -> ``(b,)``: the size of the blocks' edges, which grows with JPEG's quantisation."""
    return tf.reduce_mean(tf.reduce_max(profile, axis=2) - tf.reduce_mean(profile, axis=2), axis=1)


def _ramp(value: tf.Tensor, bounds: tuple[float, float]) -> tf.Tensor:
    return tf.clip_by_value((value - bounds[0]) / (bounds[1] - bounds[0]), 0.0, 1.0)


def _noise_shows(sigma: tf.Tensor) -> tf.Tensor:
    """How plainly a noise level ``(b, 1)`` (0-1 scale) shows noise, ``(b,)`` in [0, 1], along ``SIGMA_RAMP``."""
    return _ramp(sigma[:, 0] * 255.0, SIGMA_RAMP)


def shares(sigma: tf.Tensor, profile: tf.Tensor) -> tf.Tensor:
    """Each image's share of the restoration, ``(b,)`` in [0, 1], from its noise level ``(b, 1)`` (0-1 scale)
    and its :func:`seam_profile`."""
    return tf.maximum(_noise_shows(sigma), _ramp(blockiness(profile), BLOCKINESS_RAMP))


def network_noise(sigma: tf.Tensor, profile: tf.Tensor) -> tf.Tensor:
    """The noise level ``(b, 1)`` (0-1 scale) the network is told: ``sigma``, or more where the
    :func:`seam_step` shows a JPEG strength that the noise estimate cannot see. Only in images that read as
    noise-free (fading out along ``SIGMA_RAMP``): compression leaves no fine noise, and in a noisy image the
    seams are the photograph's own camera JPEG, which the reference holds too."""
    jpeg = tf.clip_by_value(SIGMA_PER_SEAM_STEP * (seam_step(profile) - PHOTO_SEAM_STEP), 0.0, MAX_JPEG_SIGMA)
    return tf.maximum(sigma, ((1.0 - _noise_shows(sigma)) * jpeg)[:, None] / 255.0)


def blend(images: tf.Tensor, restored: tf.Tensor, share: tf.Tensor) -> tf.Tensor:
    """uint8 input and restoration -> uint8, each image ``share`` ``(b,)`` of the way from one to the other."""
    x, y = tf.cast(images, tf.float32), tf.cast(restored, tf.float32)
    return tf.cast(tf.round(x + share[:, None, None, None] * (y - x)), tf.uint8)


def describe() -> dict[str, list[float] | float]:
    """The gate as ``aeops_model.json`` records it."""
    return {"sigma_ramp": list(SIGMA_RAMP), "blockiness_ramp": list(BLOCKINESS_RAMP),
            "photo_seam_step": PHOTO_SEAM_STEP, "sigma_per_seam_step": SIGMA_PER_SEAM_STEP,
            "max_jpeg_sigma": MAX_JPEG_SIGMA}
