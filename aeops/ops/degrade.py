"""Degradations: Gaussian noise and JPEG re-compression, what a restoration model is trained to undo."""

from __future__ import annotations

from aeops.ops import functional as F
from aeops.ops.params import Flag, Range
from aeops.ops.registry import Op, register
from aeops.seeding import noise_seed


@register("gaussian_noise")
class GaussianNoise(Op):
    """Zero-mean Gaussian noise of std ``sigma`` on the 0-255 scale; lineage records sigma and a noise seed."""

    params = {"sigma": Range((5, 25), 0, 255), "per_channel": Flag(True)}
    apply = staticmethod(F.gaussian_noise)

    def draw(self, rng, shape):
        return {**super().draw(rng, shape), "seed": noise_seed(rng)}


@register("jpeg")
class Jpeg(Op):
    """Re-compress as JPEG of ``quality`` (integers 1-100)."""

    params = {"quality": Range((50, 95), 1, 100, integer=True)}
    apply = staticmethod(F.jpeg)
