"""Spatial targets drawn over an image, so a user sees at a glance that they follow the pixels: a mask as a
translucent overlay, boxes as outlines and keypoints as dots, one colour per object (the same object keeps
its colour in every variant). Used by ``aeops preview`` and the report's samples.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from aeops.ops.targets import Targets

PALETTE = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)], np.uint8)
MASK_ALPHA = 0.45


def draw(image: np.ndarray, targets: Targets | None, kept: np.ndarray | None = None) -> np.ndarray:
    """A copy of ``image`` (any size: the targets are normalised) with ``targets`` drawn; only the boxes
    (and their keypoints) in ``kept`` when given, as the output record keeps them."""
    if targets is None:
        return image
    out = image.copy()
    if targets.mask is not None:
        out = _overlay(out, targets.mask)
    canvas = Image.fromarray(out)
    pen = ImageDraw.Draw(canvas)
    height, width = image.shape[:2]
    boxes = len(targets.boxes)
    objects = range(boxes) if kept is None else kept.tolist()
    line = max(1, round(min(height, width) / 150))
    for index in objects:
        x0, y0, x1, y1 = targets.boxes[index] * (width, height, width, height)
        pen.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=_colour(index), width=line)
    per = len(targets.keypoints) // boxes if boxes else 0
    for point, (x, y) in enumerate(targets.keypoints):
        owner = point // per if per else point
        if not targets.visible[point] or (per and owner not in objects):
            continue
        r = 1.5 * line + 1
        pen.ellipse((x * width - r, y * height - r, x * width + r, y * height + r), fill=_colour(owner), outline="white")
    return np.asarray(canvas)


def _overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    classes = mask if mask.ndim == 2 else mask[:, :, 0]
    if classes.shape != image.shape[:2]:  # a thumbnail: the mask at its size, nearest so no class is blended
        classes = np.asarray(Image.fromarray(classes).resize(image.shape[1::-1], Image.Resampling.NEAREST))
    colours = PALETTE[(classes.astype(np.int64) - 1) % len(PALETTE)]
    blended = np.rint(image * (1 - MASK_ALPHA) + colours * MASK_ALPHA).astype(np.uint8)
    return np.where((classes > 0)[:, :, None], blended, image)


def _colour(index: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in PALETTE[index % len(PALETTE)])
