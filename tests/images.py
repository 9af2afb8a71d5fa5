"""Small images in every format the codec accepts, made in memory for the tests."""

import io

import cv2
import numpy as np
from PIL import Image


def gradient(height: int = 24, width: int = 32) -> np.ndarray:
    """A smooth RGB test image whose three channels differ, so swaps and flips show."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], -1).astype(np.uint8)


def pil_bytes(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png16(array16: np.ndarray) -> bytes:
    """A 16-bit PNG (grey or RGB) from a uint16 array, written by OpenCV (Pillow cannot write 16-bit RGB)."""
    if array16.ndim == 3:
        array16 = cv2.cvtColor(array16, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", array16)
    assert ok
    return data.tobytes()


def with_exif_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return pil_bytes(image, "JPEG", quality=95, exif=exif.tobytes())


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height``: a decompression bomb in a few bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def float_tiff(values) -> bytes:
    """A one-channel 32-bit float TIFF (Pillow mode ``F``) holding ``values``."""
    return pil_bytes(Image.fromarray(np.asarray(values, np.float32), "F"), "TIFF")


def tiff(values: np.ndarray, **params) -> bytes:
    """A TIFF written by tifffile (scikit-image's TIFF writer, installed with it), so the samples can be of any type
    and layout, float RGB included, which Pillow cannot write or read; ``params`` go to ``tifffile.imwrite``."""
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, values, **params)
    return buffer.getvalue()


def jpeg_with_corrupt_exif(image: np.ndarray) -> bytes:
    """A JPEG whose EXIF names a 100-byte description where 10 bytes follow: Pillow warns while reading it."""
    import struct

    ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x010E, 2, 100, 26) + struct.pack("<I", 0) + b"short text"
    return pil_bytes(Image.fromarray(image), "JPEG", exif=b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd)
