"""The corruption model used in training: what the autoencoder learns to undo.

Per sample, in this order (the order a camera pipeline applies them): an optional mild Gaussian blur
(lens softness), additive Gaussian noise with its own sigma drawn from ``sigma`` (on the 0-255 scale,
so one network is blind to the noise level), then optional JPEG re-compression of the noisy image,
then quantisation to 8 bits, as every image the model will ever see arrives as uint8.

A share ``gray_p`` of the samples is made grey first (:func:`to_gray`), and an image whose channels are
equal gets the same noise in each: how a grey photograph decoded as RGB is noisy. Colour-only training never
shows that, and a network that learnt to average independent channel noise leaves grey noise in.

A share ``clean_p`` of the samples gets no noise at all: a uniform sigma in [0, 55] almost never draws the
sigma-0 input a clean dataset is made of, and a model that never saw one smooths clean texture as if it
were noise. With ``jpeg_p`` some of those become the lightly compressed photographs most clean images are.

All randomness is stateless and driven by an explicit ``seed`` tensor of shape ``[2]``, so a training
run is reproducible and validation sees the same corruption every epoch.
"""

from __future__ import annotations

import tensorflow as tf

from aeops.config import CorruptionConfig

BLUR_RADIUS = 3  # a 7-tap kernel covers blur sigmas up to ~1.2 px without truncation artefacts
CLEAN_STREAM = 7  # folded into a sample's seed for the clean_p draw
GRAY_STREAM = 11  # folded into a sample's seed for the gray_p draw


def corrupt(clean: tf.Tensor, seed: tf.Tensor, config: CorruptionConfig) -> tf.Tensor:
    """One float RGB image ``(h, w, 3)`` in [0, 1] -> its corrupted version, same shape, on the 8-bit grid."""
    seeds = tf.random.experimental.stateless_split(seed, num=6)
    image = clean
    if config.blur_p > 0:
        blur_sigma = _uniform(seeds[0], config.blur_sigma)
        image = tf.cond(_chance(seeds[1], config.blur_p), lambda: gaussian_blur(image, blur_sigma), lambda: image)
    sigma = _uniform(seeds[2], config.sigma) / 255.0
    if config.clean_p > 0:  # its own seed, folded in, so the other draws stay what they were without it
        sigma = tf.where(_chance(tf.random.experimental.stateless_fold_in(seed, CLEAN_STREAM), config.clean_p),
                         0.0, sigma)
    noise = tf.random.stateless_normal(tf.shape(image), seeds[3])
    grey = tf.reduce_all(tf.equal(image, image[..., :1]))
    noise = tf.where(grey, tf.broadcast_to(noise[..., :1], tf.shape(image)), noise)  # grey images, grey noise
    image = image + sigma * noise
    image = tf.clip_by_value(image, 0.0, 1.0)
    if config.jpeg_p > 0:
        quality = tf.cast(tf.round(_uniform(seeds[4], config.jpeg_quality)), tf.int32)
        image = tf.cond(
            _chance(seeds[5], config.jpeg_p), lambda: tf.image.adjust_jpeg_quality(image, quality), lambda: image
        )
    return quantize(image)


def to_gray(image: tf.Tensor, seed: tf.Tensor, p: float) -> tf.Tensor:
    """With chance ``p`` (drawn from ``seed`` folded with its own stream), the image's mean over channels in
    all three: a grey photograph as the codec decodes it."""
    grey = tf.broadcast_to(tf.reduce_mean(image, axis=-1, keepdims=True), tf.shape(image))
    return tf.where(_chance(tf.random.experimental.stateless_fold_in(seed, GRAY_STREAM), p), grey, image)


def add_noise(clean: tf.Tensor, sigma: float, seed: tf.Tensor) -> tf.Tensor:
    """Gaussian noise of a fixed ``sigma`` (0-255 scale), clipped and quantised: the evaluation corruption."""
    noisy = clean + (sigma / 255.0) * tf.random.stateless_normal(tf.shape(clean), seed)
    return quantize(tf.clip_by_value(noisy, 0.0, 1.0))


def quantize(image: tf.Tensor) -> tf.Tensor:
    return tf.round(image * 255.0) / 255.0


def gaussian_blur(image: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
    """Separable Gaussian blur of an ``(h, w, 3)`` image, reflect-padded so borders do not darken."""
    taps = tf.range(-BLUR_RADIUS, BLUR_RADIUS + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * tf.square(taps / tf.maximum(sigma, 1e-3)))
    kernel = kernel / tf.reduce_sum(kernel)
    padded = tf.pad(image[None], [[0, 0], [BLUR_RADIUS] * 2, [BLUR_RADIUS] * 2, [0, 0]], mode="SYMMETRIC")
    rows = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, 3, 1])
    cols = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, 3, 1])
    out = tf.nn.depthwise_conv2d(padded, rows, [1, 1, 1, 1], "VALID")
    out = tf.nn.depthwise_conv2d(out, cols, [1, 1, 1, 1], "VALID")
    return out[0]


def _uniform(seed: tf.Tensor, bounds: tuple[float, float]) -> tf.Tensor:
    return tf.random.stateless_uniform([], seed, minval=bounds[0], maxval=bounds[1] + 1e-6)


def _chance(seed: tf.Tensor, p: float) -> tf.Tensor:
    return tf.random.stateless_uniform([], seed) < p
