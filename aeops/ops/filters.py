"""Neighbourhood filters: blurring and sharpening."""

from __future__ import annotations

from aeops.ops import functional as F
from aeops.ops.params import Range
from aeops.ops.registry import Op, register


@register("gaussian_blur")
class GaussianBlur(Op):
    """Gaussian blur of std ``sigma`` pixels (0 = unchanged)."""

    params = {"sigma": Range((0.5, 1.5), 0, 50)}
    apply = staticmethod(F.gaussian_blur)


@register("sharpen")
class Sharpen(Op):
    """Laplacian sharpening of strength ``alpha`` (0 = unchanged, 1 = full)."""

    params = {"alpha": Range((0.2, 0.5), 0, 2)}
    apply = staticmethod(F.sharpen)
