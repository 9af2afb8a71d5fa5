"""Geometric ops: flips, rotation, translation, scaling, crops.

Warps state their interpolation (default bilinear), border mode (default reflect, so no black corners
teach the model a false edge) and fill for ``constant``. ``output_size`` is ``keep`` (the input's size,
the default) or ``fit`` (the transformed content's own size). Each moves the spatial targets by its
kernel's affine (:mod:`aeops.ops.targets`).
"""

from __future__ import annotations

import math

import numpy as np

from aeops.ops import functional as F
from aeops.ops.params import Choice, Fill, Range
from aeops.ops.registry import Op, register

INTERPOLATION = {"interpolation": Choice("linear", tuple(F.INTERPOLATIONS))}
BORDER = {"border_mode": Choice("reflect", tuple(F.BORDERS)), "fill": Fill(0)}
OUTPUT_SIZE = {"output_size": Choice("keep", F.OUTPUT_SIZES)}


@register("hflip")
class HorizontalFlip(Op):
    """Mirror left-right. ``p`` defaults to 0.5: a flip applied to every variant would be no augmentation."""

    default_p = 0.5
    apply = staticmethod(F.hflip)
    affine = staticmethod(F.hflip_affine)


@register("vflip")
class VerticalFlip(Op):
    """Mirror top-bottom; ``p`` defaults to 0.5."""

    default_p = 0.5
    apply = staticmethod(F.vflip)
    affine = staticmethod(F.vflip_affine)


@register("rotate")
class Rotate(Op):
    """Rotate by ``angle`` degrees, counter-clockwise, about the centre."""

    params = {"angle": Range((-15, 15), -360, 360), **INTERPOLATION, **BORDER, **OUTPUT_SIZE}
    apply = staticmethod(F.rotate)
    affine = staticmethod(F.rotate_affine)


@register("translate")
class Translate(Op):
    """Shift by ``x`` of the width and ``y`` of the height (fractions, positive = right/down)."""

    params = {"x": Range((-0.1, 0.1), -1, 1), "y": Range((-0.1, 0.1), -1, 1), **INTERPOLATION, **BORDER}
    apply = staticmethod(F.translate)
    affine = staticmethod(F.translate_affine)


@register("scale")
class Scale(Op):
    """Zoom about the centre by ``factor`` (< 1 shrinks, and the border mode fills the margin)."""

    params = {"factor": Range((0.9, 1.1), 0.01, 10), **INTERPOLATION, **BORDER, **OUTPUT_SIZE}
    apply = staticmethod(F.scale)
    affine = staticmethod(F.scale_affine)


@register("crop")
class Crop(Op):
    """A random crop of ``size`` of each side (aspect kept), anywhere in the image."""

    params = {"size": Range((0.8, 1.0), 0, 1), **INTERPOLATION, **OUTPUT_SIZE}
    apply = staticmethod(F.crop)
    affine = staticmethod(F.crop_affine)

    def draw(self, rng, shape):
        size = self.params["size"].draw(rng, self.config["size"])
        top, left = rng.random(2).tolist()
        return {"top": top, "left": left, "height": size, "width": size, **self._settings()}

    def _settings(self):
        return {name: self.config[name] for name in ("interpolation", "output_size")}


@register("random_resized_crop")
class RandomResizedCrop(Crop):
    """Inception-style crop: area ``scale`` of the image, aspect ``ratio`` (width/height, drawn log-uniform),
    resized back to the input size (torchvision's algorithm: 10 tries, then the whole image, ratio clamped)."""

    params = {"scale": Range((0.08, 1.0), 0, 1), "ratio": Range((3 / 4, 4 / 3), 0.01, 100), **INTERPOLATION, **OUTPUT_SIZE}

    def draw(self, rng, shape):
        box = area_box(rng, shape, self.config["scale"], self.config["ratio"]) or _clamped_whole(shape, self.config["ratio"])
        top, left = rng.random(2).tolist()
        return {"top": top, "left": left, "height": box[0], "width": box[1], **self._settings()}


def area_box(rng: np.random.Generator, shape, scale: tuple[float, float], ratio: tuple[float, float], tries: int = 10):
    """(height, width) as fractions of a box covering ``scale`` of the area with aspect ``ratio`` (w/h),
    or ``None`` when ``tries`` draws all fall outside the image."""
    rows, cols = shape[:2]
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(tries):
        area = rows * cols * float(rng.uniform(*scale))
        aspect = math.exp(float(rng.uniform(*log_ratio)))
        width, height = math.sqrt(area * aspect), math.sqrt(area / aspect)
        if 0 < width <= cols and 0 < height <= rows:
            return height / rows, width / cols
    return None


def _clamped_whole(shape, ratio: tuple[float, float]) -> tuple[float, float]:
    rows, cols = shape[:2]
    aspect = cols / rows
    if aspect < ratio[0]:
        return cols / ratio[0] / rows, 1.0
    if aspect > ratio[1]:
        return 1.0, rows * ratio[1] / cols
    return 1.0, 1.0
