"""Colour ops: brightness, contrast, saturation, hue, gamma, grayscale. All keep the image RGB."""

from __future__ import annotations

from aeops.ops import functional as F
from aeops.ops.params import Range
from aeops.ops.registry import Op, register


@register("brightness")
class Brightness(Op):
    """Add ``delta`` x 255 to every value (0 = unchanged)."""

    params = {"delta": Range((-0.2, 0.2), -1, 1)}
    apply = staticmethod(F.brightness)


@register("contrast")
class Contrast(Op):
    """Scale distances from the mean luminance by ``factor`` (1 = unchanged)."""

    params = {"factor": Range((0.8, 1.2), 0, 10)}
    apply = staticmethod(F.contrast)


@register("saturation")
class Saturation(Op):
    """Blend with the gray image: ``factor`` 0 = gray, 1 = unchanged."""

    params = {"factor": Range((0.8, 1.2), 0, 10)}
    apply = staticmethod(F.saturation)


@register("hue")
class Hue(Op):
    """Turn the hue by ``shift`` degrees (2-degree steps)."""

    params = {"shift": Range((-10, 10), -180, 180)}
    apply = staticmethod(F.hue)


@register("gamma")
class Gamma(Op):
    """``255 * (v / 255) ** gamma`` (1 = unchanged)."""

    params = {"gamma": Range((0.8, 1.25), 0.05, 20)}
    apply = staticmethod(F.gamma)


@register("grayscale")
class Grayscale(Op):
    """Luma on all three channels."""

    apply = staticmethod(F.grayscale)
