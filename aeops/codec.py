"""Image bytes <-> RGB uint8 arrays. Pure functions; failures are typed :mod:`aeops.errors` with a reason.

Decoding uses Pillow, which reads the header first: the pixel-count limit is enforced from the header,
before a single pixel is decoded, so a decompression bomb costs microseconds. Encoding uses OpenCV,
which is several times faster than Pillow for JPEG/PNG/WebP here and deterministic for a given build.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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
    - Float samples (TIFF) are read by their range, as image tools read them: [0, 1] is black to white
      (scikit-image, OpenCV, TIFF viewers), [0, 255] and [0, 65535] are 8- and 16-bit levels; NaN,
      infinities or any other range cannot be read without guessing and raise :class:`CorruptImageError`.
    - Alpha is composited over white (:data:`ALPHA_BACKGROUND`), as a browser shows a transparent PNG,
      so transparent pixels never expose whatever colour happened to be stored under them.
    - Animated GIF/WebP and multi-page TIFF: the first frame.
    """
    with _open(data, max_pixels) as image:
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


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise EmptyImageError("empty image bytes")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise UnknownFormatError(
            f"not a JPEG, PNG, GIF, WebP, BMP or TIFF image ({len(data)} bytes starting {data[:8]!r})"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImageError(f"unreadable image header: {exc}") from None
    width, height = image.size
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
