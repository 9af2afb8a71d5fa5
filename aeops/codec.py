"""Image bytes <-> RGB uint8 arrays. Pure functions; failures are typed :mod:`aeops.errors` with a reason.

Decoding uses Pillow, which reads the header first: the pixel-count limit is enforced from the header,
before a single pixel is decoded, so a decompression bomb costs microseconds. The float TIFFs Pillow cannot
open (colour, or 64-bit samples) are decoded by OpenCV, their header read by Pillow's TIFF tag parser, so
the limit holds for them too. Encoding uses OpenCV, which is several times faster than Pillow for
JPEG/PNG/WebP here and deterministic for a given build.
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image, ImageOps, TiffImagePlugin, UnidentifiedImageError

from aeops import thread_warnings
from aeops.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageTooLargeError,
    TruncatedImageError,
    UnknownFormatError,
)

DEFAULT_MAX_PIXELS = 64_000_000
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
ENCODINGS = ("jpeg", "png", "webp")
ALPHA_BACKGROUND = (255, 255, 255)

# Pillow's own bomb guard is a process-wide constant that would pre-empt a configured limit above it;
# :func:`_open` enforces ``max_pixels`` itself, from the header, so Pillow's is switched off.
Image.MAX_IMAGE_PIXELS = None


def probe(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, int, int]:
    """(format, width, height) from the header alone; raises the same errors :func:`decode` would.

    Library warnings about the header (a damaged EXIF block) are not printed: whoever decodes the same
    bytes counts them (:func:`decode_quietly`), so a probe adds nothing to tell.
    """
    with thread_warnings.collected(), _open(data, max_pixels) as image:
        return image.format.lower(), image.width, image.height


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Bytes of a JPEG, PNG (8/16-bit), GIF, WebP, BMP or TIFF -> ``uint8`` array ``(H, W, 3)``, RGB.

    - EXIF orientation is applied, so the array is the image as a viewer shows it.
    - Grayscale is replicated to three channels; palette and CMYK are converted to RGB.
    - 16-bit samples are scaled to 8 bits (``v / 257``), not clipped.
    - Float samples (TIFF: grey, RGB or RGBA, 32 or 64 bits) are read by their range, as image tools read
      them: [0, 1] is black to white (scikit-image, OpenCV, TIFF viewers), [0, 255] and [0, 65535] are 8-
      and 16-bit levels; NaN, infinities or any other range cannot be read without guessing and raise
      :class:`CorruptImageError`. A TIFF sample layout neither reads raises :class:`UnknownFormatError`
      naming the layout.
    - Alpha is composited over white (:data:`ALPHA_BACKGROUND`), as a browser shows a transparent PNG,
      so transparent pixels never expose whatever colour happened to be stored under them.
    - Animated GIF/WebP and multi-page TIFF: the first frame.
    """
    with _open(data, max_pixels) as image:
        if isinstance(image, _FloatTiff):
            return _decode_float_tiff(data, image)
        try:
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
        except OSError as exc:
            message = str(exc)
            if "truncated" in message or "broken data stream" in message or "unrecognized data stream" in message:
                raise TruncatedImageError(f"truncated {image.format} image: {message}") from None
            raise CorruptImageError(f"corrupt {image.format} image: {message}") from None
        except (ValueError, SyntaxError, EOFError) as exc:
            raise CorruptImageError(f"corrupt {image.format} image: {exc}") from None


def decode_quietly(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, list[str]]:
    """:func:`decode`, and the category names of the warnings the image libraries raised while decoding.

    Pillow warns through :mod:`warnings` about damage it reads past ("Truncated File Read", "Corrupt
    EXIF data"); Python would print each with the library's source line, once per place, in the middle
    of a job's output. Callers count them instead. Collected per thread (:mod:`aeops.thread_warnings`):
    threads decoding at once each get their own.
    """
    with thread_warnings.collected() as warned:
        image = decode(data, max_pixels)
    return image, warned


def _open(data: bytes, max_pixels: int) -> Image.Image | _FloatTiff:
    if not data:
        raise EmptyImageError("empty image bytes")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        image = _float_tiff(data)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImageError(f"unreadable image header: {exc}") from None
    width, height = image.width, image.height
    if width * height > max_pixels:
        image.close()
        raise ImageTooLargeError(f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}")
    if width == 0 or height == 0:
        image.close()
        raise CorruptImageError(f"image has no pixels ({width}x{height})")
    return image


def _to_rgb(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode == "F":
            scale = _float_scale(values)
        else:
            scale = 257.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 1.0
        gray = np.clip(np.rint(values / scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, ALPHA_BACKGROUND + (255,))
        image = Image.alpha_composite(background, image)
    array = np.asarray(image.convert("RGB") if image.mode != "RGB" else image, dtype=np.uint8)
    return np.ascontiguousarray(array)


def _float_scale(values: np.ndarray) -> float:
    """The divisor that maps float samples to 8 bits: by the range they lie in (see :func:`decode`)."""
    if not np.isfinite(values).all():
        raise CorruptImageError("float TIFF holds NaN or infinite samples: no brightness can be read from them")
    low, high = float(values.min()), float(values.max())
    for top, scale in ((1.0, 1 / 255), (255.0, 1.0), (65535.0, 257.0)):
        if low >= 0 and high <= top:
            return scale
    raise CorruptImageError(f"float TIFF samples span [{low:g}, {high:g}], not [0, 1], [0, 255] or [0, 65535]: "
                            "convert it to 8 or 16 bits, or to floats in [0, 1]")


class _FloatTiff(NamedTuple):
    """The header of a float TIFF Pillow cannot open, with the few attributes of a Pillow image that
    :func:`_open`'s callers read; :func:`_decode_float_tiff` decodes its pixels with OpenCV."""

    width: int
    height: int
    mode: str  # the Pillow mode its samples make once scaled to 8 bits: L, RGB, RGBA, RGBa (premultiplied), RGBX
    samples_end: int  # the byte just after its last strip or tile: beyond the data, the file was cut
    format: str = "TIFF"

    def close(self) -> None:
        """Nothing is held open: the header was read from the bytes."""

    def __enter__(self) -> _FloatTiff:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# TIFF tags: ImageWidth, ImageLength, BitsPerSample, PhotometricInterpretation, StripOffsets, SamplesPerPixel,
# StripByteCounts, PlanarConfiguration, TileOffsets, TileByteCounts, ExtraSamples, SampleFormat.
_WIDTH, _HEIGHT, _BITS, _PHOTOMETRIC, _STRIPS, _SAMPLES, _STRIP_BYTES = 256, 257, 258, 262, 273, 277, 279
_PLANAR, _TILES, _TILE_BYTES, _EXTRA_SAMPLES, _SAMPLE_FORMAT = 284, 324, 325, 338, 339
_SAMPLE_KINDS = {1: "unsigned integer", 2: "signed integer", 3: "float", 4: "untyped"}
# (samples per pixel, photometric, ExtraSamples) of the float TIFFs OpenCV decodes -> their mode (see _FloatTiff).
# An extra sample of unspecified meaning is ignored, as Pillow does for 8-bit RGBX.
_FLOAT_MODES = {(1, 1, None): "L", (3, 2, None): "RGB", (4, 2, 0): "RGBX", (4, 2, 1): "RGBa", (4, 2, 2): "RGBA"}


def _float_tiff(data: bytes) -> _FloatTiff:
    """The header of bytes Pillow could not identify, when they are a float TIFF OpenCV decodes (32- or 64-bit
    grey, RGB or RGBA, samples interleaved); :class:`UnknownFormatError` otherwise, naming the TIFF's sample
    layout when it is one (Pillow's own words, "cannot identify image file", would say it is no image at all).
    OpenCV 5.0 reads planar float colour (one plane per channel) with its samples mixed up, without an error."""
    tags = _tiff_tags(data)
    if tags is None:
        raise UnknownFormatError(
            f"not a JPEG, PNG, GIF, WebP, BMP or TIFF image ({len(data)} bytes starting {data[:8]!r})")
    samples, bits, photometric = tags.get(_SAMPLES, 1), tags.get(_BITS, (1,)), tags.get(_PHOTOMETRIC)
    kinds = set(tags.get(_SAMPLE_FORMAT) or (1,))
    extra = tags.get(_EXTRA_SAMPLES)
    planar = samples > 1 and tags.get(_PLANAR) == 2
    mode = _FLOAT_MODES.get((samples, photometric, extra[0] if extra else None))
    if kinds != {3} or len(set(bits)) != 1 or bits[0] not in (32, 64) or mode is None or planar:
        kind = " and ".join(sorted(_SAMPLE_KINDS.get(k, f"format-{k}") for k in kinds))
        depth = "/".join(dict.fromkeys(map(str, bits)))
        raise UnknownFormatError(
            f"unsupported TIFF sample layout: {samples} x {depth}-bit {kind} per pixel, photometric {photometric}"
            f"{', planar' if planar else ''} (aeops reads what Pillow opens, and float grey, RGB or RGBA of 32 or "
            "64 bits, interleaved)")
    offsets = tags.get(_STRIPS) or tags.get(_TILES) or (0,)
    counts = tags.get(_STRIP_BYTES) or tags.get(_TILE_BYTES) or (0,)
    return _FloatTiff(tags.get(_WIDTH, 0), tags.get(_HEIGHT, 0), mode, max(o + c for o, c in zip(offsets, counts)))


def _tiff_tags(data: bytes) -> TiffImagePlugin.ImageFileDirectory_v2 | None:
    """The first image's tags, read with Pillow's TIFF tag parser (the header only); None when not a TIFF."""
    if data[:4] not in TiffImagePlugin.PREFIXES:
        return None
    stream = io.BytesIO(data)
    header = stream.read(8)
    if 43 in header[2:4]:  # BigTIFF: a 16-byte header
        header += stream.read(8)
    try:
        tags = TiffImagePlugin.ImageFileDirectory_v2(header)
        stream.seek(tags.next)
        tags.load(stream)
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise CorruptImageError(f"unreadable TIFF header: {exc}") from None
    return tags


def _decode_float_tiff(data: bytes, tiff: _FloatTiff) -> np.ndarray:
    """OpenCV's float samples (orientation tag applied, as Pillow's exif_transpose does), scaled by their range."""
    if tiff.samples_end > len(data):
        raise TruncatedImageError(f"truncated TIFF image: its samples end at byte {tiff.samples_end}, the data at "
                                  f"{len(data)}")
    with _opencv_silenced():
        values = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if values is None:
        raise CorruptImageError(f"corrupt TIFF image: OpenCV could not decode its {tiff.mode} float samples")
    levels = np.clip(np.rint(values / _float_scale(values)), 0, 255).astype(np.uint8)
    if tiff.mode == "L":
        return np.repeat(levels[:, :, None], 3, axis=2)
    rgb = np.ascontiguousarray(levels[:, :, 2::-1])  # OpenCV's BGR(A)
    if tiff.mode in ("RGB", "RGBX"):
        return rgb
    rgba = np.dstack([rgb, levels[:, :, 3]])
    return _to_rgb(Image.frombytes(tiff.mode, (rgba.shape[1], rgba.shape[0]), rgba.tobytes()))


class _OpenCVSilence:
    """OpenCV prints libtiff's complaints about a damaged file to stderr; the caller raises a typed error instead.
    The log level is process-wide: another thread's OpenCV messages in the meantime are not printed either.
    Threads decoding at once share one silence: the first block in saves the level, the last one out puts it
    back (each block restoring what it found would leave OpenCV silent for good when two blocks overlap)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._blocks = 0
        self._level = None

    @contextlib.contextmanager
    def __call__(self):
        with self._lock:
            if not self._blocks:
                self._level = cv2.utils.logging.getLogLevel()
                cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
            self._blocks += 1
        try:
            yield
        finally:
            with self._lock:
                self._blocks -= 1
                if not self._blocks:
                    cv2.utils.logging.setLogLevel(self._level)


_opencv_silenced = _OpenCVSilence()


def encode(image: np.ndarray, fmt: str = "jpeg", quality: int = 95) -> bytes:
    """``uint8`` ``(H, W, 3)`` RGB -> JPEG, PNG or WebP bytes. ``quality`` (1-100) applies to JPEG and WebP."""
    fmt = fmt.lower()
    if fmt not in ENCODINGS:
        raise ValueError(f"cannot encode to {fmt!r}; choose one of {', '.join(ENCODINGS)}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected uint8 (H, W, 3), got {image.dtype} {image.shape}")
    params = {
        "jpeg": [cv2.IMWRITE_JPEG_QUALITY, int(quality)],
        "png": [cv2.IMWRITE_PNG_COMPRESSION, 6],
        "webp": [cv2.IMWRITE_WEBP_QUALITY, int(quality)],
    }[fmt]
    ok, buffer = cv2.imencode("." + fmt, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {fmt}")
    return buffer.tobytes()
