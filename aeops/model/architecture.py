"""The denoising autoencoder: a small U-Net with a residual output, as a pure parameterised builder.

Fully convolutional, so one set of weights serves any height and width that is a multiple of
:func:`multiple` (the export pads to it). With ``residual`` the network predicts the corruption and
subtracts it from its input: at low noise the identity is the right answer, and a residual net starts
there instead of having to learn it, which is what makes a short CPU training run worth having.
"""

from __future__ import annotations

import keras
from keras import layers


def multiple(depth: int) -> int:
    """Height and width must be multiples of this: one halving per level."""
    return 2**depth


def build_autoencoder(width: int = 32, depth: int = 3, blocks: int = 2, residual: bool = True) -> keras.Model:
    """Float RGB in [0, 1] ``(b, h, w, 3)`` -> restored float RGB in [0, 1], same shape.

    ``width`` channels at the first level, doubled per level (capped at 4x: the deep levels hold most parameters but little of the compute, and the shipped model must stay a few MB);
    ``depth`` halvings (strided convolutions down, transposed convolutions up, skip connections by
    addition, which is cheaper than concatenation at equal quality for a denoiser); ``blocks``
    3x3 convolutions per level.
    """
    images = keras.Input(shape=(None, None, 3), name="images")
    x = layers.Conv2D(width, 3, padding="same", activation="relu", name="stem")(images)
    skips = []
    for level in range(depth):
        x = _convs(x, _channels(width, level), blocks, f"down{level}")
        skips.append(x)
        x = layers.Conv2D(_channels(width, level + 1), 2, strides=2, activation="relu", name=f"pool{level}")(x)
    x = _convs(x, _channels(width, depth), blocks, "bottom")
    for level in reversed(range(depth)):
        x = layers.Conv2DTranspose(_channels(width, level), 2, strides=2, activation="relu", name=f"unpool{level}")(x)
        x = layers.Add(name=f"skip{level}")([x, skips[level]])
        x = _convs(x, _channels(width, level), blocks, f"up{level}")
    x = layers.Conv2D(3, 3, padding="same", name="head", dtype="float32")(x)
    if residual:
        x = layers.Subtract(name="residual", dtype="float32")([images, x])
    return keras.Model(images, x, name=f"unet_w{width}_d{depth}_b{blocks}{'_res' if residual else ''}")


def _channels(width: int, level: int) -> int:
    return width * min(2**level, 4)


def _convs(x, channels: int, blocks: int, name: str):
    for i in range(blocks):
        x = layers.Conv2D(channels, 3, padding="same", activation="relu", name=f"{name}_conv{i}")(x)
    return x
