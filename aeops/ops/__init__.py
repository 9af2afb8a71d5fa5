"""Classical augmentation ops: a registry of named ops, composed from a config list, seeded per variant.

A config lists ``[{op: NAME, p: P, PARAM: [low, high], ...}]``; :func:`build` checks it all up front.
:func:`augment` draws one variant from (seed, key, variant) and returns the image with its lineage, the
JSON list of ``{"op", "params"}`` actually applied; :func:`replay` turns a lineage back into the same pixels.
Both take optional spatial :class:`Targets` (boxes, keypoints, a mask), which geometric ops move with the pixels.
Ops take and return ``uint8 (H, W, 3)`` RGB and keep the shape unless ``output_size: fit`` says otherwise.
Nothing here knows of Beam or TensorFlow.
"""

from aeops.ops import colour, degrade, erase, filters, geometric  # noqa: F401 - importing registers the ops
from aeops.ops.compose import GROUPS, Pipeline, augment, build, replay
from aeops.ops.registry import Op, names, register
from aeops.ops.targets import Targets

__all__ = ["GROUPS", "Op", "Pipeline", "Targets", "augment", "build", "names", "register", "replay"]
