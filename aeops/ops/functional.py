"""The pure pixel kernels: ``uint8 (H, W, 3)`` in, ``uint8`` out, no randomness.

Every argument is a concrete JSON scalar (or a short list for a fill colour), exactly what lineage records,
so :func:`aeops.ops.replay` is a plain call. A kernel never mutates its input; at neutral parameters
(angle 0, sigma 0, factor 1) it returns the input itself without touching a pixel.

OpenCV does the work: its SIMD kernels beat numpy and Pillow for warps, filters and colour conversions.
Point operations on 8-bit values are built as 256-entry look-up tables, one read per pixel whatever the
formula, applied with stringzilla's SIMD byte translation: 12x faster than ``cv2.LUT`` (OpenCV 5.0) on a
1024x768 image here, which is what albumentations (through albucore) uses too.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import stringzilla

BORDERS = {"reflect": cv2.BORDER_REFLECT_101, "constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}
INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}
OUTPUT_SIZES = ("keep", "fit")
Fill = int | Sequence[int]
_LEVELS = np.arange(256, dtype=np.float64)


# --- geometry ------------------------------------------------------------------------------------
#
# Each geometric kernel has an ``*_affine`` twin taking the same geometric parameters: the one place its
# geometry is written. The pixel kernel warps (or slices and resizes) by it, and the spatial targets of
# :mod:`aeops.ops.targets` (boxes, keypoints, masks) move by the very same matrix.


@dataclass(frozen=True)
class Affine:
    """A 2x3 matrix from input to output pixel centres (OpenCV's ``warpAffine`` convention: pixel ``(c, r)``
    has its centre at ``(c, r)``) and the output's ``(height, width)``."""

    matrix: np.ndarray
    size: tuple[int, int]


def hflip_affine(shape: tuple[int, ...]) -> Affine:
    height, width = shape[:2]
    return Affine(np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]]), (height, width))


def hflip(image: np.ndarray) -> np.ndarray:
    return cv2.flip(image, 1)


def vflip_affine(shape: tuple[int, ...]) -> Affine:
    height, width = shape[:2]
    return Affine(np.array([[1.0, 0.0, 0.0], [0.0, -1.0, height - 1.0]]), (height, width))


def vflip(image: np.ndarray) -> np.ndarray:
    return cv2.flip(image, 0)


def rotate_affine(shape: tuple[int, ...], angle: float, output_size: str) -> Affine:
    """Counter-clockwise by ``angle`` degrees about the centre; ``"fit"`` grows the frame to the rotated
    image's bounding box."""
    height, width = shape[:2]
    centre = ((width - 1) / 2, (height - 1) / 2)
    matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
    if output_size == "fit":
        cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
        width, height = _ceil(width * cos + height * sin), _ceil(width * sin + height * cos)
        matrix[0, 2] += (width - 1) / 2 - centre[0]
        matrix[1, 2] += (height - 1) / 2 - centre[1]
    return Affine(matrix, (height, width))


def rotate(image, angle: float, interpolation: str, border_mode: str, fill: Fill, output_size: str) -> np.ndarray:
    """Rotate counter-clockwise by ``angle`` degrees about the centre.

    ``output_size="keep"`` keeps ``(H, W)`` (corners leave the frame, the border mode fills the gaps);
    ``"fit"`` grows the frame to the rotated image's bounding box.
    """
    if angle % 360 == 0:
        return image
    return _warp(image, rotate_affine(image.shape, angle, output_size), interpolation, border_mode, fill)


def translate_affine(shape: tuple[int, ...], x: float, y: float) -> Affine:
    height, width = shape[:2]
    return Affine(np.array([[1.0, 0.0, x * width], [0.0, 1.0, y * height]]), (height, width))


def translate(image, x: float, y: float, interpolation: str, border_mode: str, fill: Fill) -> np.ndarray:
    """Shift by ``x`` widths right and ``y`` heights down."""
    if x == 0 and y == 0:
        return image
    return _warp(image, translate_affine(image.shape, x, y), interpolation, border_mode, fill)


def scale_affine(shape: tuple[int, ...], factor: float, output_size: str) -> Affine:
    """Zoom about the centre (``"keep"``), or the whole image resized by ``factor`` (``"fit"``)."""
    height, width = shape[:2]
    if output_size == "fit":
        return _resize_affine((height, width), (max(1, round(height * factor)), max(1, round(width * factor))))
    cx, cy = (width - 1) / 2, (height - 1) / 2
    return Affine(np.array([[factor, 0.0, cx - factor * cx], [0.0, factor, cy - factor * cy]]), (height, width))


def scale(image, factor: float, interpolation: str, border_mode: str, fill: Fill, output_size: str) -> np.ndarray:
    """Zoom by ``factor`` about the centre; ``"fit"`` resizes the whole image instead of keeping the frame."""
    if factor == 1:
        return image
    affine = scale_affine(image.shape, factor, output_size)
    if output_size == "fit":
        return resize(image, *affine.size, interpolation)
    return _warp(image, affine, interpolation, border_mode, fill)


def crop_affine(shape: tuple[int, ...], top: float, left: float, height: float, width: float, output_size: str):
    """The cut (see :func:`crop`) moved to the origin, resized back to ``shape`` when ``"keep"``."""
    rows, cols = shape[:2]
    t, l, h, w = box(shape, top, left, height, width, minimum=1)
    out = (rows, cols) if output_size == "keep" else (h, w)
    resized = _resize_affine((h, w), out).matrix
    shift = np.array([[1.0, 0.0, -l], [0.0, 1.0, -t], [0.0, 0.0, 1.0]])
    return Affine(resized @ shift, out)


def crop(image, top: float, left: float, height: float, width: float, interpolation: str, output_size: str):
    """Cut a box ``height`` x ``width`` (fractions of the sides, at least one pixel) placed at ``top``/``left``
    (0 = first row/column, 1 = last possible); ``"keep"`` resizes it back to the input size."""
    rows, cols = image.shape[:2]
    t, l, h, w = box(image.shape, top, left, height, width, minimum=1)
    if (h, w) == (rows, cols):
        return image
    cut = image[t : t + h, l : l + w]
    return resize(cut, rows, cols, interpolation) if output_size == "keep" else np.ascontiguousarray(cut)


def resize(image: np.ndarray, height: int, width: int, interpolation: str) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    return _channels(cv2.resize(image, (width, height), interpolation=INTERPOLATIONS[interpolation]))


def _resize_affine(size: tuple[int, int], out: tuple[int, int]) -> Affine:
    """``cv2.resize`` from ``size`` to ``out``: pixel edges stay edges, so centre ``c`` maps to
    ``(c + 0.5) * s - 0.5``."""
    sy, sx = out[0] / size[0], out[1] / size[1]
    return Affine(np.array([[sx, 0.0, (sx - 1) / 2], [0.0, sy, (sy - 1) / 2]]), out)


def box(shape: tuple[int, ...], top: float, left: float, height: float, width: float, minimum: int = 0):
    """Fractions -> pixel box ``(t, l, h, w)``, clipped to the image: one rounding rule for crops and erasing."""
    rows, cols = shape[:2]
    h = min(rows, max(minimum, round(height * rows)))
    w = min(cols, max(minimum, round(width * cols)))
    return round(top * (rows - h)), round(left * (cols - w)), h, w


def warp_nearest(array: np.ndarray, affine: Affine) -> np.ndarray:
    """Warp a label map (a mask of class ids): nearest neighbour, constant 0 border, so no value is blended
    and nothing outside the source is labelled."""
    out = cv2.warpAffine(array, affine.matrix, affine.size[::-1], flags=cv2.INTER_NEAREST,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape(*out.shape[:2], *array.shape[2:])


def _warp(image, affine: Affine, interpolation: str, border_mode: str, fill: Fill) -> np.ndarray:
    return _channels(
        cv2.warpAffine(
            image,
            affine.matrix,
            affine.size[::-1],
            flags=INTERPOLATIONS[interpolation],
            borderMode=BORDERS[border_mode],
            borderValue=_colour(fill),
        )
    )


def _ceil(value: float) -> int:
    """Ceiling that ignores float dust (a 90-degree turn of 4x3 is 3x4, not 4x5)."""
    return max(1, math.ceil(round(value, 6)))


def _colour(fill: Fill) -> tuple[int, int, int]:
    return (fill,) * 3 if isinstance(fill, int) else tuple(fill)


def _channels(image: np.ndarray) -> np.ndarray:
    """OpenCV drops a trailing axis of length 1 on some paths; images are always (H, W, 3)."""
    return image if image.ndim == 3 else image[:, :, None]


# --- colour --------------------------------------------------------------------------------------


def brightness(image: np.ndarray, delta: float) -> np.ndarray:
    """Add ``round(delta x 255)`` to every value, saturating."""
    shift = round(delta * 255)
    if shift == 0:
        return image
    return _lut(image, _LEVELS + shift)


def contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Stretch values away from (factor > 1) or towards (< 1) the image's mean luminance."""
    if factor == 1:
        return image
    mean = _luma(cv2.mean(image))
    return _lut(image, (_LEVELS - mean) * factor + mean)


def gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """``255 * (v / 255) ** gamma``: < 1 brightens the shadows, > 1 darkens them."""
    if gamma == 1:
        return image
    return _lut(image, 255 * (_LEVELS / 255) ** gamma)


def saturation(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the grayscale image (as PIL/torchvision do): 0 = gray, 1 = unchanged, > 1 = more vivid."""
    if factor == 1:
        return image
    return cv2.addWeighted(image, factor, grayscale(image), 1 - factor, 0)


def hue(image: np.ndarray, shift: float) -> np.ndarray:
    """Turn the hue by ``shift`` degrees, in OpenCV's 8-bit HSV, hence in steps of 2 degrees."""
    steps = round(shift / 2) % 180
    if steps == 0:
        return image
    table = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    table[:180, 0] = (np.arange(180) + steps) % 180
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    return cv2.cvtColor(cv2.LUT(hsv, table.reshape(256, 1, 3)), cv2.COLOR_HSV2RGB)


def grayscale(image: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma replicated to three channels: still RGB, as the data contract requires."""
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def _lut(image: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values[image]`` for a 256-entry table, rounded and clipped to uint8, on a copy."""
    table = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    out = np.array(image, order="C", copy=True)
    stringzilla.translate(memoryview(out.reshape(-1)), memoryview(table), inplace=True)
    return out


def _luma(mean_rgb: Sequence[float]) -> float:
    return 0.299 * mean_rgb[0] + 0.587 * mean_rgb[1] + 0.114 * mean_rgb[2]


# --- filters -------------------------------------------------------------------------------------


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of standard deviation ``sigma`` pixels (kernel 6 sigma + 1 wide), reflected borders."""
    if sigma <= 0:
        return image
    return _channels(cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101))


def sharpen(image: np.ndarray, alpha: float) -> np.ndarray:
    """Add ``alpha`` times the 8-neighbour Laplacian: 0 = unchanged, 1 = full sharpening; mean kept."""
    if alpha == 0:
        return image
    kernel = np.full((3, 3), -alpha, dtype=np.float32)
    kernel[1, 1] = 1 + 8 * alpha
    return _channels(cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101))


# --- noise and compression -----------------------------------------------------------------------

# Gaussian noise is drawn as 16-bit random indices into a table of the 2**16 normal quantiles: one cheap
# integer draw per sample instead of a float normal (several times faster), and the noise is rounded to
# integers before it is added, which changes nothing for uint8 images: round(v + n) == v + round(n) for
# integer v. The tails end at 4.3 sigma. numpy has no inverse error function, hence statistics.NormalDist.
@functools.cache
def _normal_quantiles() -> np.ndarray:
    inverse = statistics.NormalDist().inv_cdf
    return np.array([inverse((i + 0.5) / 65536) for i in range(65536)])


def gaussian_noise(image: np.ndarray, sigma: float, per_channel: bool, seed: int) -> np.ndarray:
    """Add zero-mean Gaussian noise of std ``sigma`` (0-255 scale), the same for all channels unless
    ``per_channel``; ``seed`` makes the noise itself, so lineage holds a number, not a noise map."""
    if sigma == 0:
        return image
    table = np.rint(_normal_quantiles() * sigma).astype(np.int16)
    shape = image.shape if per_channel else (*image.shape[:2], 1)
    noise = table[np.random.default_rng(seed).integers(0, 65536, size=shape, dtype=np.uint16)]
    if not per_channel:
        noise = np.repeat(noise, 3, axis=2)
    return _channels(cv2.add(image, noise, dtype=cv2.CV_8U))


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Re-compress as a baseline JPEG of ``quality`` (1-100) and decode again: real compression artefacts.

    Converted to BGR first so that libjpeg's YCbCr weights land on the right channels."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"OpenCV could not JPEG-encode a {image.shape} image")
    return _channels(cv2.imdecode(data, cv2.IMREAD_COLOR_RGB))


# --- erasing -------------------------------------------------------------------------------------


def erase(image: np.ndarray, top: float, left: float, height: float, width: float, fill: Fill) -> np.ndarray:
    """Paint one box (fractions as in :func:`box`) with ``fill``; an empty box leaves the image as it is."""
    t, l, h, w = box(image.shape, top, left, height, width)
    if h == 0 or w == 0:
        return image
    out = image.copy()
    _paint(out, t, l, h, w, fill)
    return out


def cutout(image: np.ndarray, holes: int, size: float, fill: Fill, seed: int) -> np.ndarray:
    """Paint ``holes`` boxes, each ``size`` of the height by ``size`` of the width, placed by ``seed``."""
    if holes == 0 or size == 0:
        return image
    out = image.copy()
    for top, left in np.random.default_rng(seed).random((holes, 2)).tolist():
        _paint(out, *box(image.shape, top, left, size, size), fill)
    return out


def _paint(image: np.ndarray, t: int, l: int, h: int, w: int, fill: Fill) -> None:
    """Fill a box in place; OpenCV's fill is ~30x faster than numpy broadcasting a colour over pixels."""
    if h and w:
        cv2.rectangle(image, (l, t), (l + w - 1, t + h - 1), _colour(fill), thickness=-1)
