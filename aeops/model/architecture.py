"""The denoising autoencoder: a small U-Net with a residual output and a noise-level input, as a pure
parameterised builder, and the noise-level estimate it is given.

Fully convolutional, so one set of weights serves any height and width that is a multiple of
:func:`multiple` (the export pads to it). With ``residual`` the network predicts the corruption and
subtracts it from its input: at low noise the identity is the right answer, and a residual net starts
there instead of having to learn it, which is what makes a short CPU training run worth having.

The network is still blind (nobody tells it sigma), but it is handed :func:`estimate_noise` of the whole
image as a constant extra input plane. A purely local network cannot tell dense fine texture from noise
where it sees no flat patch within its receptive field, and smooths it away; the whole-image estimate,
taken from the image's smoothest parts, settles that, as in FFDNet, and costs a few milliseconds.
"""

from __future__ import annotations

import keras
from keras import layers, ops

NOISE_BLOCK, NOISE_QUANTILE = 4, 0.1  # estimate_noise: 4x4 Haar coefficients per block, the 10th percentile
NOISE_QUANTILE_OF_PURE_NOISE = 0.8654  # sqrt(chi2.ppf(0.1, 48) / 48): that percentile for pure noise, per sigma
NOISE_UNIT = 25.0 / 255.0  # the noise plane is sigma in units of 25 grey levels, so it is O(1) like the image


def multiple(depth: int) -> int:
    """Height and width must be multiples of this: one halving per level."""
    return 2**depth


def estimate_noise(images):
    """Gaussian noise std of each image of a float ``(b, h, w, c)`` batch in [0, 1] -> ``(b, 1)``, same scale.

    The finest diagonal Haar band holds little image structure and all of the noise, evenly. The band is cut
    into blocks of 4x4 coefficients (8x8 pixels, all channels: 48 values), each block's RMS is a noise
    estimate inflated by whatever texture or edge it holds, and the 10th percentile of the blocks, divided by
    that percentile of a pure-noise block's RMS, is the estimate: the smoothest tenth of the image decides.
    Donoho's median over the whole band read dense texture (foliage, gravel) as noise, so a clean photograph
    was "denoised" into a smudge; a low quantile of local estimates only needs a tenth of the image to be
    smooth. Written in ``keras.ops``, so the TensorFlow export, tf.data input and a JAX training run
    (:mod:`aeops.model.jax_training`) compute the same number. Sides of at least 8 pixels (``MIN_SIDE``).
    """
    images = ops.cast(images, "float32")
    shape = ops.shape(images)
    x = images[:, : shape[1] // 2 * 2, : shape[2] // 2 * 2]
    diagonal = (x[:, 0::2, 0::2] - x[:, 0::2, 1::2] - x[:, 1::2, 0::2] + x[:, 1::2, 1::2]) / 2.0
    power = ops.mean(ops.average_pool(ops.square(diagonal), NOISE_BLOCK, NOISE_BLOCK, padding="valid"), axis=-1)
    blocks = ops.sort(ops.reshape(power, (shape[0], -1)), axis=1)
    index = ops.cast(ops.cast(ops.shape(blocks)[1], "float32") * NOISE_QUANTILE, "int32")
    return ops.sqrt(blocks[:, index])[:, None] / NOISE_QUANTILE_OF_PURE_NOISE


class NoisePlane(layers.Layer):
    """Appends the per-image noise level ``(b, 1)`` to the images as a constant fourth channel."""

    def call(self, images, noise):
        shape = ops.shape(images)
        plane = ops.broadcast_to(ops.reshape(noise / NOISE_UNIT, (-1, 1, 1, 1)), (shape[0], shape[1], shape[2], 1))
        return ops.concatenate([images, ops.cast(plane, images.dtype)], axis=-1)


def build_autoencoder(width: int = 32, depth: int = 3, blocks: int = 2, residual: bool = True,
                      full_resolution_blocks: int | None = None) -> keras.Model:
    """``[images, noise]`` -> restored images: float RGB in [0, 1] ``(b, h, w, 3)`` and the noise std
    ``(b, 1)`` on the same scale (:func:`estimate_noise` of the whole image) -> float RGB, same shape.

    ``width`` channels at the first level, doubled per level up to 4x (the deep levels hold most of the
    parameters but little of the compute, and the shipped model must stay a few MB); ``depth`` halvings
    (strided convolutions down, transposed convolutions up, skip connections by addition, cheaper than
    concatenation at equal quality for a denoiser); ``blocks`` 3x3 convolutions per level.

    ``full_resolution_blocks`` (default ``blocks``) sets level 0's apart: each of its convolutions costs as
    much as all of a deeper level's, since every halving quarters the pixels while the channels double.
    """
    images = keras.Input(shape=(None, None, 3), name="images")
    noise = keras.Input(shape=(1,), name="noise")
    x = NoisePlane(name="noise_plane")(images, noise)
    x = layers.Conv2D(width, 3, padding="same", activation="relu", name="stem")(x)
    per_level = [blocks] * depth
    if full_resolution_blocks is not None:
        per_level[0] = full_resolution_blocks
    skips = []
    for level in range(depth):
        x = _convs(x, _channels(width, level), per_level[level], f"down{level}")
        skips.append(x)
        x = layers.Conv2D(_channels(width, level + 1), 2, strides=2, activation="relu", name=f"pool{level}")(x)
    x = _convs(x, _channels(width, depth), blocks, "bottom")
    for level in reversed(range(depth)):
        x = layers.Conv2DTranspose(_channels(width, level), 2, strides=2, activation="relu", name=f"unpool{level}")(x)
        x = layers.Add(name=f"skip{level}")([x, skips[level]])
        x = _convs(x, _channels(width, level), per_level[level], f"up{level}")
    x = layers.Conv2D(3, 3, padding="same", name="head", dtype="float32")(x)
    if residual:
        x = layers.Subtract(name="residual", dtype="float32")([images, x])
    full = "" if full_resolution_blocks is None else f"_f{full_resolution_blocks}"
    return keras.Model([images, noise], x, name=f"unet_w{width}_d{depth}_b{blocks}{full}{'_res' if residual else ''}")


def _channels(width: int, level: int) -> int:
    return width * min(2**level, 4)


def _convs(x, channels: int, blocks: int, name: str):
    for i in range(blocks):
        x = layers.Conv2D(channels, 3, padding="same", activation="relu", name=f"{name}_conv{i}")(x)
    return x


def flops_per_pixel(network: keras.Model, side: int = 256) -> float:
    """Floating-point operations per input pixel of one forward pass, counted by TensorFlow's profiler on
    the traced graph of a ``side`` x ``side`` image (convolutions, transposed ones, biases, activations)."""
    import tensorflow as tf

    spec = [tf.TensorSpec([1, side, side, 3]), tf.TensorSpec([1, 1])]
    forward = tf.function(lambda images, noise: network([images, noise], training=False))
    graph = forward.get_concrete_function(*spec).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph, options=options).total_float_ops / side**2
