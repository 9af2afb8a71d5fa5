"""The model package piece by piece: builder, corruption, losses, data input, padding, metrics."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest
import tensorflow as tf

from aeops import codec, schema, tfrecord
from aeops.config import CorruptionConfig, TrainConfig, load
from aeops.metrics import psnr, ssim
from aeops.model import corruption, data, losses
from aeops.model.architecture import build_autoencoder, estimate_noise, flops_per_pixel, multiple
from aeops.model.export import pad_to_multiple, tiled, to_uint8, to_unit
from tests.images import gradient


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("full_resolution_blocks", [None, 0])
def test_builder_is_fully_convolutional(depth, full_resolution_blocks):
    net = build_autoencoder(width=4, depth=depth, blocks=1, full_resolution_blocks=full_resolution_blocks)
    for h, w in [(multiple(depth), multiple(depth)), (8 * multiple(depth), 3 * multiple(depth))]:
        assert net([tf.zeros((2, h, w, 3)), tf.zeros((2, 1))]).shape == (2, h, w, 3)


def test_width_and_depth_change_the_size():
    small = build_autoencoder(width=4, depth=2, blocks=1).count_params()
    assert build_autoencoder(width=8, depth=2, blocks=1).count_params() > small
    assert build_autoencoder(width=4, depth=3, blocks=1).count_params() > small
    assert build_autoencoder(width=4, depth=2, blocks=2).count_params() > small


def test_full_resolution_blocks_set_level_0_apart_and_each_one_less_saves_a_full_resolution_convolution():
    full = build_autoencoder(width=8, depth=3, blocks=2)
    fast = build_autoencoder(width=8, depth=3, blocks=2, full_resolution_blocks=1)
    names = {layer.name for layer in full.layers if layer.weights}
    assert names - {layer.name for layer in fast.layers if layer.weights} == {"down0_conv1", "up0_conv1"}
    two_convolutions = 2 * (2 * 9 * 8 * 8 + 8)  # two 8->8 3x3 convolutions: multiply-adds and biases
    assert flops_per_pixel(full) - flops_per_pixel(fast) == pytest.approx(two_convolutions, rel=0.01)


def test_residual_output_starts_near_the_input():
    net = build_autoencoder(width=4, depth=2, blocks=1, residual=True)
    net.get_layer("head").set_weights([np.zeros_like(w) for w in net.get_layer("head").get_weights()])
    x = tf.random.uniform((1, 16, 16, 3), seed=1)
    np.testing.assert_allclose(net([x, tf.constant([[0.1]])]).numpy(), x.numpy(), atol=1e-6)


def test_noise_estimate_follows_sigma_and_ignores_smooth_structure():
    clean = tf.constant(gradient(128, 96)[None], tf.float32) / 255.0
    assert float(estimate_noise(clean)[0, 0]) * 255 < 1.0
    for sigma in (5.0, 25.0):
        noisy = corruption.add_noise(clean[0], sigma, tf.constant([0, 1], tf.int64))[None]
        assert abs(float(estimate_noise(noisy)[0, 0]) * 255 - sigma) < 0.12 * sigma + 0.5
    batch = tf.concat([clean, noisy], 0)
    assert estimate_noise(batch).shape == (2, 1) and float(estimate_noise(tf.zeros((1, 9, 13, 3)))[0, 0]) == 0.0


def test_noise_estimate_reads_dense_texture_as_texture_not_noise():
    """Four fifths fine clean texture, one fifth smooth: the smooth part decides, so the clean image reads as
    clean (the whole-image median read 57 grey levels of noise here) and the noisy one as its sigma."""
    texture = np.random.default_rng(5).integers(0, 256, (128, 32, 3))  # as fine as noise, but clean
    smooth = gradient(128, 32)
    image = np.concatenate([texture, texture, texture, texture, smooth], axis=1)
    clean = tf.constant(image[None], tf.float32) / 255.0
    assert float(estimate_noise(clean)[0, 0]) * 255 < 1.0
    noisy = corruption.add_noise(tf.constant(gradient(128, 160), tf.float32) / 255.0, 25.0, tf.constant([0, 2], tf.int64))
    textured = tf.concat([clean[:, :, :128], noisy[None, :, 128:]], axis=2)  # the smooth fifth, noisy
    assert abs(float(estimate_noise(textured)[0, 0]) * 255 - 25.0) < 4.0


@pytest.mark.parametrize("h,w,m", [(8, 8, 64), (9, 13, 8), (16, 16, 16), (257, 301, 16)])
def test_padding_reaches_the_multiple_and_keeps_the_image(h, w, m):
    image = tf.constant(gradient(h, w)[None], tf.float32)
    padded = pad_to_multiple(image, m)
    assert padded.shape[1] % m == 0 and padded.shape[2] % m == 0
    assert padded.shape[1] - h < m and padded.shape[2] - w < m
    np.testing.assert_array_equal(padded[:, :h, :w].numpy(), image.numpy())


def test_tiles_join_without_seams():
    net = build_autoencoder(width=4, depth=2, blocks=1)
    images = tf.random.stateless_uniform((2, 100, 72, 3), [0, 3], maxval=256, dtype=tf.int32)
    images = tf.cast(images, tf.uint8)
    noise = tf.constant([[0.05], [0.2]])
    joined = tf.function(lambda x, n: tiled(net, x, n, tile=32, overlap=64))(images, noise)
    whole = net([to_unit(images), noise])
    # The same floats up to kernel rounding (1e-5): after rounding to uint8 a value may flip by one level.
    difference = np.abs(joined.numpy().astype(int) - to_uint8(whole).numpy())
    assert joined.dtype == tf.uint8 and difference.max() <= 1 and difference.mean() < 1e-3


def _clean(h=48, w=40):
    return tf.constant(gradient(h, w), tf.float32) / 255.0


def test_corruption_is_seeded_and_on_the_8_bit_grid():
    config = CorruptionConfig(sigma=(10, 50), jpeg_p=0.5, blur_p=0.5)
    seed = tf.constant([3, 4], tf.int64)
    a, b = corruption.corrupt(_clean(), seed, config), corruption.corrupt(_clean(), seed, config)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), corruption.corrupt(_clean(), seed + 1, config).numpy())
    np.testing.assert_allclose(a.numpy() * 255, np.round(a.numpy() * 255), atol=1e-3)
    assert a.shape == _clean().shape and 0 <= a.numpy().min() and a.numpy().max() <= 1


def test_clean_share_leaves_samples_without_noise_and_the_rest_as_before():
    seeds = [tf.constant([5, i], tf.int64) for i in range(40)]
    noisy_only = CorruptionConfig(sigma=(20, 40), jpeg_p=0, blur_p=0)
    with_clean = CorruptionConfig(sigma=(20, 40), jpeg_p=0, blur_p=0, clean_p=0.5)
    clean = _clean()
    kept = [np.array_equal(corruption.corrupt(clean, s, with_clean).numpy(), corruption.quantize(clean).numpy())
            for s in seeds]
    assert 10 <= sum(kept) <= 30  # about half, drawn per sample
    for s, untouched in zip(seeds, kept):
        if not untouched:  # the noisy ones are exactly what they were without clean_p
            np.testing.assert_array_equal(corruption.corrupt(clean, s, with_clean).numpy(),
                                          corruption.corrupt(clean, s, noisy_only).numpy())
    assert not any(np.array_equal(corruption.corrupt(clean, s, noisy_only).numpy(), corruption.quantize(clean).numpy())
                   for s in seeds)


def test_grey_images_get_grey_noise_and_gray_p_makes_a_share_of_samples_grey():
    """A grey photograph decoded as RGB carries the same noise in every channel; a colour one independent noise."""
    config = CorruptionConfig(sigma=(25, 25), jpeg_p=0, blur_p=0)
    seed = tf.constant([7, 1], tf.int64)
    grey = tf.repeat(_clean()[..., :1], 3, axis=-1)
    noisy = corruption.corrupt(grey, seed, config).numpy()
    assert not np.array_equal(noisy, corruption.quantize(grey).numpy())
    np.testing.assert_array_equal(noisy[..., 0], noisy[..., 1])
    np.testing.assert_array_equal(noisy[..., 0], noisy[..., 2])
    colour = corruption.corrupt(_clean(), seed, config).numpy()
    assert np.abs(colour[..., 0] - colour[..., 1]).mean() * 255 > 10
    seeds = [tf.constant([9, i], tf.int64) for i in range(40)]
    made = [corruption.to_gray(_clean(), s, 0.5).numpy() for s in seeds]
    greyed = [np.array_equal(m[..., 0], m[..., 1]) and np.array_equal(m[..., 0], m[..., 2]) for m in made]
    assert 10 <= sum(greyed) <= 30  # about half, drawn per sample
    np.testing.assert_allclose(made[greyed.index(True)][..., 0], _clean().numpy().mean(axis=-1), atol=1e-6)
    np.testing.assert_array_equal(made[greyed.index(False)], _clean().numpy())
    assert all(np.array_equal(corruption.to_gray(_clean(), s, 0.0).numpy(), _clean().numpy()) for s in seeds[:5])


def test_noise_level_follows_sigma():
    clean = tf.fill((128, 128, 3), 0.5)
    noisy = corruption.corrupt(clean, tf.constant([1, 2], tf.int64), CorruptionConfig(sigma=(25, 25), jpeg_p=0, blur_p=0))
    assert abs(float(tf.math.reduce_std(noisy - clean)) * 255 - 25) < 1.0
    zero = corruption.corrupt(_clean(), tf.constant([1, 2], tf.int64), CorruptionConfig(sigma=(0, 0), jpeg_p=0, blur_p=0))
    np.testing.assert_allclose(zero.numpy(), _clean().numpy(), atol=1e-6)


def test_blur_smooths_and_keeps_the_mean():
    noisy = tf.random.stateless_uniform((32, 32, 3), [0, 1])
    blurred = corruption.gaussian_blur(noisy, tf.constant(1.0))
    assert blurred.shape == noisy.shape
    assert float(tf.math.reduce_std(blurred)) < 0.5 * float(tf.math.reduce_std(noisy))
    assert abs(float(tf.reduce_mean(blurred)) - float(tf.reduce_mean(noisy))) < 0.02


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_losses_are_zero_for_a_perfect_restoration(name):
    clean = tf.random.stateless_uniform((2, 32, 32, 3), [0, 2])
    assert float(losses.get(name)(clean, clean)) == pytest.approx(0.0, abs=1e-5)
    assert float(losses.get(name)(clean, 1 - clean)) > 0.01


def test_log_mse_counts_a_db_at_low_noise_like_one_at_high_noise():
    """Halving the error of a lightly noisy image is worth about as much as halving a heavily noisy one's
    (a dB each), where the batch MSE values it a hundredth as much."""
    clean = tf.fill((2, 16, 16, 3), 0.5)
    signs = tf.sign(tf.random.stateless_normal((2, 16, 16, 3), [0, 3]))
    restored = clean + signs * tf.reshape([15.0 / 255, 150.0 / 255], (2, 1, 1, 1))
    halved = [clean + signs * tf.reshape(scales, (2, 1, 1, 1)) / 255
              for scales in ([15.0 / 2**0.5, 150.0], [15.0, 150.0 / 2**0.5])]
    gains = {name: [float(losses.get(name)(clean, restored) - losses.get(name)(clean, h)) for h in halved]
             for name in ("mse", "log-mse")}
    assert gains["mse"][0] == pytest.approx(gains["mse"][1] / 100, rel=1e-3)
    assert 0.85 * gains["log-mse"][1] < gains["log-mse"][0] <= gains["log-mse"][1]


def test_split_hash_is_stable_and_not_pythons_hash():
    assert data.split_fraction(b"astronaut") == data.split_fraction(b"astronaut")
    assert data.split_fraction(b"abc") == int("ba7816bf8f01cfea", 16) / 2**64  # the first 8 bytes of sha256("abc")


def _shards(tmp_path):
    """Two shards, one GZIP: keyed and unkeyed records, plus one record whose image does not decode."""
    images = [codec.encode(gradient(40 + 8 * i, 56), "png") for i in range(6)]
    keyed = [schema.serialize({schema.IMAGE: schema.bytes_feature(img), schema.KEY: schema.bytes_feature(b"k%d" % i)})
             for i, img in enumerate(images[:3])]
    unkeyed = [schema.serialize({schema.IMAGE: schema.bytes_feature(img)}) for img in images[3:]]
    unkeyed.append(schema.serialize({schema.IMAGE: schema.bytes_feature(b"not an image")}))
    with open(tmp_path / "d-00000-of-00002.tfrecord", "wb") as stream:
        tfrecord.write_records(stream, keyed)
    buffer = io.BytesIO()
    tfrecord.write_records(buffer, unkeyed, gzipped=True)
    (tmp_path / "d-00001-of-00002.tfrecord.gz").write_bytes(buffer.getvalue())
    assert gzip.decompress(buffer.getvalue())
    return data.resolve(str(tmp_path / "d-*"))


def test_split_is_disjoint_and_complete(tmp_path):
    shards = _shards(tmp_path)
    keys = lambda validation: {k.numpy() for k, _ in data.split(data.records(shards), 0.5, validation)}  # noqa: E731
    train, val = keys(False), keys(True)
    assert not train & val and len(train | val) == 7
    assert {b"k0", b"k1", b"k2"} <= train | val  # image/key is used when present
    assert all(len(k) == 64 for k in (train | val) - {b"k0", b"k1", b"k2"})  # else SHA-256 hex of the bytes


def test_training_batches_from_shards_skip_bad_records(tmp_path):
    shards = _shards(tmp_path)
    assert len(shards.fingerprint) == 64 and len(shards.paths) == 2
    config = load(TrainConfig, None, ["crop_size=32", "batch_size=3", "validation_fraction=0"])
    (noisy, noise), clean = next(iter(data.training_dataset(shards, config)))
    assert noisy.shape == clean.shape == (3, 32, 32, 3) and noise.shape == (3, 1)
    assert data.validation_dataset(shards, config) is None


def test_small_images_are_upscaled_to_the_crop(tmp_path):
    record = schema.serialize({schema.IMAGE: schema.bytes_feature(codec.encode(gradient(10, 12), "png"))})
    with open(tmp_path / "s.tfrecord", "wb") as stream:
        tfrecord.write_records(stream, [record])
    config = load(TrainConfig, None, ["crop_size=24", "batch_size=2", "validation_fraction=0"])
    (noisy, _), _ = next(iter(data.training_dataset(data.resolve(str(tmp_path / "s.tfrecord")), config)))
    assert noisy.shape == (2, 24, 24, 3)


def test_metrics_known_values():
    a = gradient(32, 32)
    b = a.copy()
    b[..., 0] ^= 1  # off by one in a third of the values
    assert psnr(a, a) == float("inf") and ssim(a, a) == pytest.approx(1.0)
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 * 3), abs=1e-6)
    assert 0.9 < ssim(a, b) < 1.0
    assert ssim(a[:8, :8], b[:8, :8]) <= 1.0
    with pytest.raises(ValueError):
        psnr(a, b[:16])


def test_the_training_reader_skips_undecodable_records_and_keeps_every_good_one(tmp_path):
    shards = _shards(tmp_path)
    skipped = data.Skipped()
    images = list(data.decoded(data.records(shards), skipped).as_numpy_iterator())
    assert sorted(image.shape for image in images) == [(40 + 8 * i, 56, 3) for i in range(6)]
    assert skipped.summary() == "train: skipped 1 undecodable image(s)"
    # Two passes over the whole set in one batch: every record, the bad one included, reaches the crops.
    config = load(TrainConfig, None, ["crop_size=32", "batch_size=14", "validation_fraction=0"])
    (noisy, _), clean = next(iter(data.training_dataset(shards, config)))
    assert noisy.shape == clean.shape == (14, 32, 32, 3)


def _local_mean(inputs, training=False):
    """A probe 'network' whose every output pixel is the mean of all it was given: shows the region each call saw."""
    images, _ = inputs
    return tf.broadcast_to(tf.reduce_mean(images, axis=[1, 2], keepdims=True), tf.shape(images))


def test_large_images_are_served_in_overlapping_tiles_and_small_ones_whole():
    from aeops.model.export import OVERLAP, TILE, WHOLE_PIXELS, Denoiser

    module = Denoiser(_local_mean, 8)  # held: the tf.function keeps only a weak reference to it

    def serve(images):  # told sigma 25, so the do-no-harm gate passes the probe's output whole
        return module.serve_known_noise(images, tf.fill([images.shape[0]], 25.0))
    height, width = 1031, 1100  # above WHOLE_PIXELS: 3 x 3 tiles
    assert height * width > WHOLE_PIXELS
    ramp = np.broadcast_to(np.linspace(0, 255, width, dtype=np.float32), (height, width))
    images = np.repeat(np.rint(ramp)[None, :, :, None], 3, axis=3).astype(np.uint8)
    out = serve(images=tf.constant(images))["reconstruction"].numpy()[0, :, :, 0].astype(int)
    padded_width = -(-width // 8) * 8  # the probe sees the mirror-padded image, as a real network would
    padded = tf.cast(pad_to_multiple(tf.constant(images, tf.float32) / 255.0, 8), tf.float32).numpy()[0, 0, :, 0]
    for col in range(3):
        x0 = col * TILE
        left, right = max(0, x0 - OVERLAP), min(padded_width, x0 + TILE + OVERLAP)
        expected = round(float(padded[left:right].mean()) * 255)
        assert abs(out[0, x0] - expected) <= 1 and abs(out[-1, min(x0 + TILE, width) - 1] - expected) <= 1
    assert len(np.unique(out[0])) == 3  # one value per tile column, not one for the whole image
    small = images[:, :1024, :1024]  # exactly WHOLE_PIXELS: one pass, one mean
    assert len(np.unique(serve(images=tf.constant(small))["reconstruction"].numpy())) == 1
