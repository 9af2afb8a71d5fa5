"""tf.data input from TFRecord shards: parallel decode, a deterministic split, random rescaled crops, flips and
channel orders.

Records follow CONTRACT §3: the image under the config's ``schema.image`` (``image/encoded`` by default,
``image`` for TFDS) in any format :mod:`aeops.codec` reads, the key under ``schema.key`` optional (else
the SHA-256 hex of the image bytes). The train/validation split hashes that key with
SHA-256 — stable across runs, machines and Python versions, unlike ``hash()`` — so an image never moves
between the two sets when shards are re-cut or re-ordered.

Records are framed by :mod:`aeops.tfrecord`, as the augment job reads them: tf.data's own reader fails
on a damaged record (``DataLossError``) and its ``ignore_errors`` drops the rest of the file. Decoding
goes through :func:`aeops.codec.decode` (EXIF orientation, alpha over white, 16-bit, WebP and TIFF — what
``tf.io.decode_image`` does not all do), run in parallel by tf.data. A damaged record, a record without
the image, or an image that does not decode is skipped and counted (:class:`Skipped`), never fatal: one
bad photo must not stop an hours-long run.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from aeops import codec, preflight, schema, storage, tfrecord
from aeops.config import TrainConfig
from aeops.errors import DecodeError, RecordError, UsageError
from aeops.model.architecture import estimate_noise
from aeops.model.corruption import add_noise, corrupt, quantize, to_gray
from aeops.model.split import split_fraction

CACHE_BYTES = 256 << 20  # shards smaller than this are decoded once and kept in memory
VALIDATION_SIGMA = 25.0  # validation PSNR is reported at the sigma the targets are stated at
VALIDATION_CROP = 256
MIN_SCALE = 0.5  # training crops are drawn at 1x to 2x their size and downscaled; see rescaled_crop
SHUFFLE_IMAGES = 64  # whole decoded images; crops are drawn afresh each time an image comes round


class Skipped:
    """The records training could not use, by kind, each counted once however many epochs meet it, and the
    images decoded despite library warnings (counted, not printed)."""

    KINDS = {"damaged": "damaged record(s)", "missing_image": "record(s) without the image feature",
             "not_an_example": "record(s) that are not a tf.train.Example", "undecodable": "undecodable image(s)"}

    def __init__(self):
        self.seen: dict[str, set] = {kind: set() for kind in (*self.KINDS, "warnings")}

    def add(self, kind: str, what) -> None:
        self.seen[kind].add(what)

    def summary(self) -> str | None:
        """One line for the end of the run, or None when every record was used without a warning."""
        parts = [f"{len(self.seen[kind])} {text}" for kind, text in self.KINDS.items() if self.seen[kind]]
        line = "skipped " + ", ".join(parts) if parts else ""
        if self.seen["warnings"]:
            line += ("; " if line else "") + f"{len(self.seen['warnings'])} image(s) decoded with library warnings"
        return f"train: {line}" if line else None


@dataclass(frozen=True)
class Shards:
    """The training data: TFRecord files, a fingerprint of their contents, and what reading them skipped."""

    paths: tuple[str, ...]
    total_bytes: int
    fingerprint: str
    skipped: Skipped = field(default_factory=Skipped, compare=False)


def resolve(data: str | None, workdir: str | None = None, image_feature: str = schema.IMAGE) -> Shards:
    """``data`` glob (or a folder: its shards) -> shards; ``None`` packs the embedded sample images into one
    shard in ``workdir``, each under ``image_feature``. Records of the first shard that lack the image
    feature are a usage error here, before TensorFlow builds anything."""
    if data is None:
        workdir = workdir or tempfile.mkdtemp(prefix="aeops-sample-")
        data = pack_sample(os.path.join(workdir, "sample-00000-of-00001.tfrecord"), image_feature)
    matches = storage.match(storage.shard_pattern(data))
    if not matches:
        raise UsageError(f"--data {data!r} matches no files: pass a TFRecord glob such as 'shards/train-*.tfrecord' "
                         "or a folder holding *.tfrecord shards")
    preflight.check_schema(matches[0][0], image_feature, "train", preflight.SCHEMA_FIX)
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
    """(key, image bytes) of every usable record, the shards read in parallel; GZIP by suffix, per file.

    Framing and parsing are :mod:`aeops.tfrecord` and :func:`aeops.schema.parse`, the augment job's own,
    so both jobs accept and skip the same records. A wrong schema is not a bad photo to skip: it is
    caught before this, by :func:`resolve`.
    """
    skipped = shards.skipped

    def read(path: bytes):
        path = path.decode()
        with storage.open_read(path) as stream:
            for frame in tfrecord.read_frames(stream, tfrecord.is_gzip(path)):
                if frame.error:
                    skipped.add("damaged", (path, frame.offset))
                    continue
                try:
                    record = schema.parse(frame.data, image_feature, key_feature)
                except RecordError as error:
                    skipped.add(error.reason, (path, frame.offset))
                    continue
                yield record.key, record.image

    signature = (tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.string))
    return tf.data.Dataset.from_tensor_slices(list(shards.paths)).interleave(
        lambda path: tf.data.Dataset.from_generator(read, output_signature=signature, args=(path,)),
        cycle_length=min(len(shards.paths), 4), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def split(dataset: tf.data.Dataset, fraction: float, validation: bool) -> tf.data.Dataset:
    def place(key):
        return np.float64(split_fraction(key))

    def keep(key, _image):
        below = tf.reshape(tf.numpy_function(place, [key], tf.float64, stateful=False), []) < fraction
        return below if validation else tf.logical_not(below)

    return dataset.filter(keep)


def decoded(dataset: tf.data.Dataset, skipped: Skipped) -> tf.data.Dataset:
    """(key, bytes) -> uint8 RGB ``(h, w, 3)`` (kept as uint8 until cropped: a quarter of the memory in the
    cache and shuffle buffer); undecodable records are skipped and counted."""

    def read(key: bytes, data: bytes) -> np.ndarray:
        try:
            image, warned = codec.decode_quietly(data)
        except DecodeError:
            skipped.add("undecodable", key)
            return np.zeros((0, 0, 3), np.uint8)
        if warned:
            skipped.add("warnings", key)
        return image

    def to_array(key, data):
        image = tf.numpy_function(read, [key, data], tf.uint8, stateful=False)
        image.set_shape([None, None, 3])
        return image

    dataset = dataset.map(to_array, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.filter(lambda image: tf.reduce_prod(tf.shape(image)) > 0)


def training_dataset(shards: Shards, config: TrainConfig) -> tf.data.Dataset:
    """Endless batches of (corrupted, clean) crops, rescaled, flipped and channel-permuted at random,
    reproducible from ``config.seed``."""
    images = decoded(split(records(shards, config.schema.image, config.schema.key), config.validation_fraction,
                           validation=False), shards.skipped)
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
        if corruption.gray_p > 0:  # its own stream, so the other draws stay what they were without it
            image = to_gray(image, seed[4], corruption.gray_p)
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
                           validation=True), shards.skipped)
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
