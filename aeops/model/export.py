"""Export per CONTRACT §5: a SavedModel whose ``serving_default`` maps uint8 ``images`` to uint8
``reconstruction`` for any height and width, and ``aeops_model.json`` beside it.

The padding lives inside the graph, so no caller (the Beam handler, a user with plain
``tf.saved_model.load``) has to know the network's multiple. Padding mirrors the border (``SYMMETRIC``)
rather than adding zeros, which the network would read as a dark edge and "restore".
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from aeops.fingerprint import model_sha256
from aeops.model import METADATA, gate
from aeops.model.architecture import build_autoencoder, estimate_noise, multiple

FORMAT = "aeops-denoiser/1"
KNOWN_NOISE = "known_noise"  # the optional second signature: the noise level given, not estimated
MIN_SIDE, MAX_SIDE = 8, 4096
# Images above WHOLE_PIXELS are restored in TILE-pixel tiles that each see OVERLAP more pixels of context on
# every side: a 4096x4096 image in one pass would hold gigabytes of activations, more than a small worker has.
# OVERLAP exceeds the receptive radius of the shipped network (~50 px), so tiles join without seams, and it
# is a multiple of 64 so every tile keeps the strided layers' alignment for any depth up to 6.
WHOLE_PIXELS = 1024 * 1024
TILE, OVERLAP = 512, 64


def pad_to_multiple(images: tf.Tensor, m: int) -> tf.Tensor:
    """Mirror-pad ``(b, h, w, c)`` at the bottom and right up to multiples of ``m``.

    A mirror pad can add at most the current size, so it is applied in rounds (each at most doubling):
    an 8-pixel image still reaches a multiple of 64.
    """
    shape = tf.shape(images)
    need_h, need_w = (-shape[1]) % m, (-shape[2]) % m
    size_h, size_w = shape[1], shape[2]
    for _ in range(max(1, (m // MIN_SIDE).bit_length())):
        add_h, add_w = tf.minimum(need_h, size_h), tf.minimum(need_w, size_w)
        images = tf.pad(images, [[0, 0], [0, add_h], [0, add_w], [0, 0]], mode="SYMMETRIC")
        need_h, need_w, size_h, size_w = need_h - add_h, need_w - add_w, size_h + add_h, size_w + add_w
    return images


def to_unit(images: tf.Tensor) -> tf.Tensor:
    """uint8 -> float32 in [0, 1]: what the network takes."""
    return tf.cast(images, tf.float32) / 255.0


def to_uint8(restored: tf.Tensor) -> tf.Tensor:
    """The network's float output -> uint8, rounded and clipped."""
    return tf.cast(tf.round(tf.clip_by_value(tf.cast(restored, tf.float32), 0.0, 1.0) * 255.0), tf.uint8)


def restore(network: keras.Model, images: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
    """The network on a padded uint8 batch -> uint8: in one pass when small, else in overlapping tiles."""
    pixels = tf.shape(images)[1] * tf.shape(images)[2]
    return tf.cond(pixels <= WHOLE_PIXELS, lambda: to_uint8(network([to_unit(images), noise], training=False)),
                   lambda: tiled(network, images, noise))


def tiled(network: keras.Model, images: tf.Tensor, noise: tf.Tensor, tile: int = TILE,
          overlap: int = OVERLAP) -> tf.Tensor:
    """The network applied tile by tile to a uint8 batch -> uint8; each tile's output keeps only its own
    ``tile`` x ``tile`` centre. Every tile is given the noise level of the whole image, so tiles agree on
    how much to smooth.

    Memory is what bounds this path: tiles run one at a time (``parallel_iterations=1``: the loops'
    default of 10 let a many-core machine hold the activations of ten tiles at once), and only a tile is
    ever in float; the image, the strips and the result stay uint8, a quarter of float32's bytes.
    Tiles are joined with ``TensorArray.concat``, which joins along the first axis, hence the transposes.
    """
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    rows, cols = (height + tile - 1) // tile, (width + tile - 1) // tile
    strips = tf.TensorArray(tf.uint8, size=rows, infer_shape=False)
    for r in tf.range(rows):
        tf.autograph.experimental.set_loop_options(parallel_iterations=1)
        y0 = r * tile
        top, bottom = tf.maximum(0, y0 - overlap), tf.minimum(height, y0 + tile + overlap)
        tiles = tf.TensorArray(tf.uint8, size=cols, infer_shape=False)
        for c in tf.range(cols):
            tf.autograph.experimental.set_loop_options(parallel_iterations=1)
            x0 = c * tile
            left, right = tf.maximum(0, x0 - overlap), tf.minimum(width, x0 + tile + overlap)
            out = network([to_unit(images[:, top:bottom, left:right]), noise], training=False)
            out = out[:, y0 - top : tf.minimum(height, y0 + tile) - top, x0 - left : tf.minimum(width, x0 + tile) - left]
            tiles = tiles.write(c, tf.transpose(to_uint8(out), [2, 0, 1, 3]))  # (w, b, h, c)
        strip = tf.transpose(tiles.concat(), [2, 1, 0, 3])  # (h, b, w, c)
        strips = strips.write(r, strip)
    return tf.transpose(strips.concat(), [1, 0, 2, 3])


class Denoiser(tf.Module):
    """What is saved: the Keras network and the uint8 serving function around it."""

    def __init__(self, network: keras.Model, m: int):
        super().__init__(name="aeops_denoiser")
        self.network = network
        self.m = m

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve(self, images):
        """CONTRACT §5: blind, the noise level estimated from each whole image."""
        return self._restore(images, estimate_noise(to_unit(images)))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images"),
                                  tf.TensorSpec([None], tf.float32, name="sigma")])
    def serve_known_noise(self, images, sigma):
        """The second signature, ``known_noise``: told each image's Gaussian sigma (0-255 scale) instead of
        estimating it - when the pipeline added the noise itself, its lineage holds the exact value, and
        ``sigma = 0`` says "no Gaussian noise", which the estimate misreads on dense texture. JPEG is read from
        the pixels in both signatures (:func:`aeops.model.gate.network_noise`)."""
        return self._restore(images, sigma[:, None] / 255.0)

    def _restore(self, images, noise):
        """The network's restoration, told the noise level and given the share :mod:`aeops.model.gate` reads.

        Only the images whose share is above 0 go through the network: the others come back as they are
        whatever it would say, and a clean dataset, most of what flows through the pipeline, then costs the
        gate's readings (a few ms) instead of the network's (~90 ms per 256x256 image on one thread).
        """
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        seams = gate.seam_profile(images)
        share = gate.shares(noise, seams)
        acted = tf.where(share > 0.0)[:, 0]

        def through_network():
            told = tf.gather(gate.network_noise(noise, seams), acted)
            out = restore(self.network, pad_to_multiple(tf.gather(images, acted), self.m), told)
            return tf.tensor_scatter_nd_update(images, acted[:, None], out[:, :height, :width, :])

        restored = tf.cond(tf.size(acted) > 0, through_network, lambda: images)
        return {"reconstruction": gate.blend(images, restored, share)}


def float32_copy(network: keras.Model, architecture: dict[str, Any]) -> keras.Model:
    """The same weights in a float32 network: a mixed-precision model would serve float16 on a CPU, slowly."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        copy = build_autoencoder(**architecture)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    copy.set_weights(network.get_weights())
    return copy


def export(network: keras.Model, architecture: dict[str, Any], model_dir: str, metadata: dict[str, Any]) -> str:
    """Write the SavedModel and ``aeops_model.json`` into ``model_dir``; returns the model's sha256."""
    network = float32_copy(network, architecture)
    module = Denoiser(network, multiple(architecture["depth"]))
    tf.saved_model.save(module, model_dir, signatures={"serving_default": module.serve,
                                                       KNOWN_NOISE: module.serve_known_noise})
    digest = model_sha256(model_dir)
    full = {
        "format": FORMAT,
        "signature": {"name": "serving_default", "input": "images", "output": "reconstruction",
                      "dtype": "uint8", "min_side": MIN_SIDE, "max_side": MAX_SIDE,
                      "also": {KNOWN_NOISE: "images uint8 + sigma float32 [batch], 0-255 scale"}},
        "gate": gate.describe(),
        "architecture": {"builder": "aeops.model.architecture.build_autoencoder", **architecture,
                         "multiple": multiple(architecture["depth"]), "parameters": int(network.count_params())},
        **metadata,
        "sha256": digest,
    }
    tmp = os.path.join(model_dir, METADATA + ".tmp")
    Path(tmp).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, os.path.join(model_dir, METADATA))
    return digest
