"""tf.data input from TFRecord shards: parallel decode, a deterministic split, random rescaled crops, flips and
channel orders.

Records follow CONTRACT §3: the image under the config's ``schema.image`` (``image/encoded`` by default,
``image`` for TFDS) in any format :mod:`aeops.codec` reads, the key under ``schema.key`` optional (else
the SHA-256 hex of the image bytes). The train/validation split hashes that key with
SHA-256 — stable across runs, machines and Python versions, unlike ``hash()`` — so an image never moves
between the two sets when shards are re-cut or re-ordered.

Decoding goes through :func:`aeops.codec.decode` (EXIF orientation, alpha over white, 16-bit, WebP and
TIFF — what ``tf.io.decode_image`` does not all do), run in parallel by tf.data. A record that does not
decode is skipped and counted, never fatal: one bad photo must not stop an hours-long run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from aeops import codec, schema, storage, tfrecord
from aeops.config import TrainConfig
from aeops.errors import DecodeError, UsageError
from aeops.model.architecture import estimate_noise
from aeops.model.corruption import add_noise, corrupt, quantize
from aeops.model.split import split_fraction

log = logging.getLogger(__name__)

CACHE_BYTES = 256 << 20  # shards smaller than this are decoded once and kept in memory
VALIDATION_SIGMA = 25.0  # validation PSNR is reported at the sigma the targets are stated at
VALIDATION_CROP = 256
MIN_SCALE = 0.5  # training crops are drawn at 1x to 2x their size and downscaled; see rescaled_crop
SHUFFLE_IMAGES = 64  # whole decoded images; crops are drawn afresh each time an image comes round


@dataclass(frozen=True)
class Shards:
    """The training data: TFRecord files and a fingerprint of their contents."""

    paths: tuple[str, ...]
    total_bytes: int
    fingerprint: str


def resolve(data: str | None, workdir: str | None = None, image_feature: str = schema.IMAGE) -> Shards:
    """``data`` glob -> shards; ``None`` packs the embedded sample images into one shard in ``workdir``,
    each under ``image_feature``."""
    if data is None:
        workdir = workdir or tempfile.mkdtemp(prefix="aeops-sample-")
        data = pack_sample(os.path.join(workdir, "sample-00000-of-00001.tfrecord"), image_feature)
    matches = storage.match(data)
    if not matches:
        raise UsageError(f"--data {data!r} matches no files: pass a TFRecord glob such as 'shards/train-*.tfrecord'")
    digest = hashlib.sha256()
    for path, size in matches:
        digest.update(f"{os.path.basename(path)}\0{size}\0".encode())
        with storage.open_read(path) as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return Shards(tuple(p for p, _ in matches), sum(s for _, s in matches), digest.hexdigest())


def pack_sample(path: str, image_feature: str = schema.IMAGE) -> str:
    """The embedded sample photographs as one TFRecord shard (keys left out: the SHA-256 rule applies)."""
    from aeops.sample import sample_paths

    with open(path, "wb") as stream:
        tfrecord.write_records(stream, (schema.serialize({image_feature: schema.bytes_feature(p.read_bytes())})
                                        for p in sample_paths()))
    return path


def records(shards: Shards, image_feature: str = schema.IMAGE, key_feature: str | None = schema.KEY) -> tf.data.Dataset:
    """(key, image bytes) of every record; GZIP detected by suffix, per file, as the contract says.

    A record without ``image_feature`` stops the job with TensorFlow's error naming the feature: a wrong
    schema is not a bad photo to skip."""
    plain = [p for p in shards.paths if not tfrecord.is_gzip(p)]
    gzipped = [p for p in shards.paths if tfrecord.is_gzip(p)]
    parts = [tf.data.TFRecordDataset(group, compression_type=kind, num_parallel_reads=tf.data.AUTOTUNE)
             for group, kind in ((plain, ""), (gzipped, "GZIP")) if group]
    dataset = parts[0] if len(parts) == 1 else parts[0].concatenate(parts[1])
    spec = {image_feature: tf.io.FixedLenFeature([], tf.string)}
    if key_feature:
        spec[key_feature] = tf.io.FixedLenFeature([], tf.string, "")

    def parse(serialized):
        example = tf.io.parse_single_example(serialized, spec)
        image = example[image_feature]
        return _key(example[key_feature] if key_feature else tf.constant(""), image), image

    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def _key(key: tf.Tensor, image: tf.Tensor) -> tf.Tensor:
    fallback = tf.numpy_function(schema.image_key, [image], tf.string, stateful=False)
    return tf.where(tf.strings.length(key) > 0, key, tf.reshape(fallback, []))


def split(dataset: tf.data.Dataset, fraction: float, validation: bool) -> tf.data.Dataset:
    def place(key):
        return np.float64(split_fraction(key))

    def keep(key, _image):
        below = tf.reshape(tf.numpy_function(place, [key], tf.float64, stateful=False), []) < fraction
        return below if validation else tf.logical_not(below)

    return dataset.filter(keep)


def decoded(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """(key, bytes) -> uint8 RGB ``(h, w, 3)`` (kept as uint8 until cropped: a quarter of the memory in the
    cache and shuffle buffer); undecodable records are skipped with a warning."""

    def read(data: bytes) -> np.ndarray:
        try:
            return codec.decode(data)
        except DecodeError as exc:
            log.warning("skipping an undecodable training image: %s", exc)
            return np.zeros((0, 0, 3), np.uint8)

    def to_array(_key, data):
        image = tf.numpy_function(read, [data], tf.uint8, stateful=False)
        image.set_shape([None, None, 3])
        return image

    dataset = dataset.map(to_array, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.filter(lambda image: tf.reduce_prod(tf.shape(image)) > 0)


def training_dataset(shards: Shards, config: TrainConfig) -> tf.data.Dataset:
    """Endless batches of (corrupted, clean) crops, rescaled, flipped and channel-permuted at random,
    reproducible from ``config.seed``."""
    images = decoded(split(records(shards, config.schema.image, config.schema.key), config.validation_fraction,
                           validation=False))
    if shards.total_bytes <= CACHE_BYTES:
        images = images.cache()
    images = images.repeat().shuffle(SHUFFLE_IMAGES, seed=config.seed)
    seeds = tf.data.Dataset.random(seed=config.seed).batch(2)
    crop, corruption = config.crop_size, config.corruption

    def sample(image, seed):
        seed = tf.random.experimental.stateless_split(seed, num=6)
        image = rescaled_crop(tf.image.convert_image_dtype(image, tf.float32), crop, seed[0], seed[1])
        image = tf.image.stateless_random_flip_left_right(image, seed[2])
        image = tf.image.stateless_random_flip_up_down(image, seed[3])
        image = tf.gather(image, tf.argsort(tf.random.stateless_uniform([3], seed[4])), axis=-1)
        clean = quantize(image)  # resizing leaves the 8-bit grid; the target must be a real uint8 image
        return with_noise_level(corrupt(clean, seed[5], corruption)), clean

    pairs = tf.data.Dataset.zip(images, seeds).map(sample, num_parallel_calls=tf.data.AUTOTUNE)
    return pairs.batch(config.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def validation_dataset(shards: Shards, config: TrainConfig) -> tf.data.Dataset | None:
    """Centre crops of the validation images with fixed noise at sigma 25: the same numbers every epoch.

    ``None`` when no image falls in the validation share (a tiny data set or ``validation_fraction: 0``).
    """
    if config.validation_fraction <= 0:
        return None
    images = decoded(split(records(shards, config.schema.image, config.schema.key), config.validation_fraction,
                           validation=True))
    images = images.map(lambda image: tf.image.resize_with_crop_or_pad(
        tf.image.convert_image_dtype(image, tf.float32), VALIDATION_CROP, VALIDATION_CROP))
    images = images.cache()
    size = int(images.reduce(0, lambda n, _: n + 1))
    if not size:
        return None

    def noisy(index, image):
        seed = tf.stack([tf.constant(config.seed, tf.int64), index])
        return with_noise_level(add_noise(image, VALIDATION_SIGMA, seed)), image

    # A known length: Keras then neither warns that the set "ran out of data" nor probes past its end.
    return images.enumerate().map(noisy).apply(tf.data.experimental.assert_cardinality(size)).batch(4)


def with_noise_level(noisy: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The network's two inputs for one image: the image and its estimated noise std ``(1,)``."""
    return noisy, estimate_noise(noisy[None])[0]


def rescaled_crop(image: tf.Tensor, size: int, scale_seed: tf.Tensor, crop_seed: tf.Tensor) -> tf.Tensor:
    """A random square region of ``size / s`` pixels, ``s`` drawn in [MIN_SCALE, 1], resized to ``size``.

    Downscaling with an antialiasing filter does two things for a small training set: it packs finer
    detail into a crop (more of what must *not* be smoothed away), and it averages away the sensor noise
    and JPEG artefacts of the source photos, which would otherwise be taught as signal. An image smaller
    than ``size`` is upscaled, so every image yields a crop.
    """
    shape = tf.shape(image)
    short = tf.minimum(shape[0], shape[1])
    scale = tf.random.stateless_uniform([], scale_seed, MIN_SCALE, 1.0)
    region = tf.minimum(tf.cast(tf.math.ceil(size / scale), tf.int32), short)
    patch = tf.image.stateless_random_crop(image, tf.stack([region, region, 3]), crop_seed)
    return tf.image.resize(patch, [size, size], method="bilinear", antialias=True)
