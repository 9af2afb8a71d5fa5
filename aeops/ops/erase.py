"""Occlusion ops: cutout (several equal holes) and random erasing (one box of random area and aspect)."""

from __future__ import annotations

from aeops.ops import functional as F
from aeops.ops.geometric import area_box
from aeops.ops.params import Fill, Range
from aeops.ops.registry import Op, register
from aeops.seeding import noise_seed


@register("cutout")
class Cutout(Op):
    """``holes`` boxes of ``size`` of each side, painted with ``fill``; lineage records a placement seed."""

    params = {"holes": Range((1, 4), 0, 100, integer=True), "size": Range((0.05, 0.2), 0, 1), "fill": Fill(0)}
    apply = staticmethod(F.cutout)

    def draw(self, rng, shape):
        return {**super().draw(rng, shape), "seed": noise_seed(rng)}


@register("random_erasing")
class RandomErasing(Op):
    """One box covering ``scale`` of the area with aspect ``ratio`` (w/h), painted with ``fill``
    (torchvision's RandomErasing; when no box fits in 10 tries nothing is erased)."""

    params = {"scale": Range((0.02, 0.33), 0, 1), "ratio": Range((0.3, 3.3), 0.01, 100), "fill": Fill(0)}
    apply = staticmethod(F.erase)

    def draw(self, rng, shape):
        height, width = area_box(rng, shape, self.config["scale"], self.config["ratio"]) or (0.0, 0.0)
        top, left = rng.random(2).tolist()
        return {"top": top, "left": left, "height": height, "width": width, "fill": self.config["fill"]}
