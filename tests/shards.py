"""Input shards for pipeline tests: good images, every kind of bad record, and damaged files."""

from __future__ import annotations

import numpy as np
from PIL import Image

from aeops import schema, tfrecord
from tests.images import gradient, pil_bytes, png_header_claiming


def example(image: bytes | None, **extra) -> bytes:
    features = {} if image is None else {schema.IMAGE: schema.bytes_feature(image)}
    for name, value in extra.items():
        key = name.replace("__", "/")
        features[key] = schema.int_feature(value) if isinstance(value, int) else schema.bytes_feature(value)
    return schema.serialize(features)


def good_images() -> list[bytes]:
    """Three PNGs of different sizes, one of them grayscale."""
    rng = np.random.default_rng(0)
    noisy = np.clip(gradient(30, 40).astype(int) + rng.integers(-20, 20, (30, 40, 3)), 0, 255).astype(np.uint8)
    return [
        pil_bytes(Image.fromarray(noisy), "PNG"),
        pil_bytes(Image.fromarray(gradient(47, 33)), "PNG"),
        pil_bytes(Image.fromarray(gradient(64, 64)[:, :, 0], "L"), "PNG"),
    ]


def bad_records() -> dict[str, bytes]:
    """One record per dead-letter reason of the decode stage, keyed by that reason."""
    truncated = pil_bytes(Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), np.uint8)), "PNG")
    return {
        "unknown_format": example(b"garbage bytes, not an image" * 3),
        "truncated": example(truncated[: len(truncated) // 2]),
        "empty": example(b""),
        "missing_image": example(None, image__class__label=3),
        "too_many_pixels": example(png_header_claiming(30_000, 30_000)),
        "not_an_example": b"\x08\x96\x01 definitely not a tf.train.Example \xff\xff",
    }


def write(path, records: list[bytes]) -> None:
    with open(path, "wb") as stream:
        tfrecord.write_records(stream, records)


def write_damaged(path, records: list[bytes], bad_crc_at: int) -> None:
    """``records`` framed, the data CRC of record ``bad_crc_at`` broken, and the file cut inside its last record."""
    frames = [bytearray(tfrecord.frame(r)) for r in records]
    frames[bad_crc_at][-1] ^= 0xFF
    data = b"".join(frames)
    path.write_bytes(data[: len(data) - 7])
