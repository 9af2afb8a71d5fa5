"""The export's do-no-harm gate (aeops.model.gate): what it reads; a served model leaves a clean photograph alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from aeops import codec
from aeops.evaluate import add_noise
from aeops.model import gate
from aeops.model.export import Denoiser
from aeops.sample import data_dir

PHOTO = codec.decode((data_dir() / "chelsea.png").read_bytes())[:128, :128]  # 128x128 of a clean PNG photograph


def seams(*images: np.ndarray) -> tf.Tensor:
    return gate.seam_profile(tf.constant(np.stack(images)))


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    return codec.decode(codec.encode(image, "jpeg", quality=quality))


def test_blockiness_reads_jpeg_seams_wherever_the_grid_lies():
    q20 = jpeg(PHOTO, 20)
    clean, compressed, moved = (float(gate.blockiness(seams(x))[0]) for x in (PHOTO, q20, q20[3:, 5:]))
    assert clean < 1.2 and compressed > 1.6 and moved > 1.6  # moved: a crop shifted the 8x8 grid
    assert float(gate.blockiness(seams(np.full((16, 16, 3), 90, np.uint8)))[0]) == 0.0  # flat: no steps at all
    smallest = tf.random.uniform((1, 8, 8, 3), maxval=256, dtype=tf.int32)  # the smallest signature input
    assert np.isfinite(gate.blockiness(gate.seam_profile(smallest))).all()


def test_the_seam_step_grows_with_compression_in_grey_levels():
    steps = [float(gate.seam_step(seams(x))[0]) for x in (PHOTO, jpeg(PHOTO, 90), jpeg(PHOTO, 50), jpeg(PHOTO, 20))]
    assert steps == sorted(steps) and steps[0] < gate.PHOTO_SEAM_STEP < steps[2]


def test_the_share_is_zero_for_a_clean_photograph_and_rises_with_noise_or_blocks():
    profile = seams(PHOTO, PHOTO, PHOTO, jpeg(PHOTO, 20))
    sigma = tf.constant([[0.0], [2.0], [25.0], [0.0]]) / 255.0
    assert gate.shares(sigma, profile).numpy().tolist() == [0.0, 0.5, 1.0, 1.0]


def test_the_network_is_told_the_jpeg_strength_only_where_no_noise_shows():
    profile = seams(PHOTO, jpeg(PHOTO, 20), jpeg(PHOTO, 20), add_noise(PHOTO, 25, 0, 0))
    sigma = tf.constant([[0.0], [0.0], [25.0], [25.0]]) / 255.0
    told = gate.network_noise(sigma, profile).numpy()[:, 0] * 255.0
    np.testing.assert_allclose(told, [0.0, gate.MAX_JPEG_SIGMA, 25.0, 25.0], atol=1e-4)


def test_blend_is_the_input_at_zero_and_the_restoration_at_one():
    images, restored = PHOTO[None], 255 - PHOTO[None]
    np.testing.assert_array_equal(gate.blend(images, restored, tf.constant([0.0])).numpy(), images)
    np.testing.assert_array_equal(gate.blend(images, restored, tf.constant([1.0])).numpy(), restored)


def test_a_served_model_returns_a_clean_photograph_bit_for_bit_and_restores_a_noisy_one(tiny_model_dir):  # noqa: F811
    loaded = tf.saved_model.load(tiny_model_dir)
    blind, known = loaded.signatures["serving_default"], loaded.signatures["known_noise"]
    noisy = add_noise(PHOTO, 25, 0, 0)
    out = blind(images=tf.constant(np.stack([PHOTO, noisy])))["reconstruction"].numpy()
    np.testing.assert_array_equal(out[0], PHOTO)
    assert np.abs(out[1].astype(int) - noisy).mean() > 1  # the few-step network, let through
    told = known(images=tf.constant(PHOTO[None]), sigma=tf.constant([0.0]))["reconstruction"].numpy()[0]
    np.testing.assert_array_equal(told, PHOTO)
    assert json.loads((Path(tiny_model_dir) / "aeops_model.json").read_text())["gate"] == gate.describe()


def test_a_served_model_tells_its_network_the_strength_of_the_jpeg_it_sees(tiny_model_dir):  # noqa: F811
    loaded = tf.saved_model.load(tiny_model_dir)
    q20 = tf.constant(jpeg(PHOTO, 20)[None])
    blind = loaded.signatures["serving_default"](images=q20)["reconstruction"].numpy()
    told = loaded.signatures["known_noise"](images=q20, sigma=tf.constant([gate.MAX_JPEG_SIGMA]))
    np.testing.assert_array_equal(blind, told["reconstruction"].numpy())


class CountingNetwork(tf.Module):
    """An identity "network" that counts the images it is given."""

    def __init__(self):
        super().__init__()
        self.seen = tf.Variable(0, dtype=tf.int32)

    def __call__(self, inputs, training=False):
        self.seen.assign_add(tf.shape(inputs[0])[0])
        return inputs[0]


def test_only_the_images_the_gate_lets_through_reach_the_network():
    network = CountingNetwork()
    module = Denoiser(network, 8)
    noisy = add_noise(PHOTO, 25, 0, 0)
    out = module.serve(tf.constant(np.stack([PHOTO, noisy, PHOTO[::-1]])))["reconstruction"].numpy()
    assert int(network.seen) == 1
    np.testing.assert_array_equal(out, np.stack([PHOTO, noisy, PHOTO[::-1]]))
    module.serve(tf.constant(np.stack([PHOTO, PHOTO[::-1]])))
    assert int(network.seen) == 1  # a clean batch: the network never runs
