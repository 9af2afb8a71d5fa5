"""Spatial targets and how a geometric op moves them: by the :class:`~aeops.ops.functional.Affine` of its
pixel kernel, never by a second copy of the geometry (albumentations keeps ``bbox_utils`` beside its
kernels the same way).

Coordinates are normalised to the image, ``0`` = the left (top) edge of the first pixel, ``1`` = the right
(bottom) edge of the last, as the TF Object Detection API and TFDS store them. The rules:

- a box becomes the bounding box of its four transformed corners, clipped to the image; its ``visibility``
  (the share of the object still inside the frame) is multiplied by what each op leaves of it, and the
  record layer drops boxes whose visibility falls below ``schema.min_box_visibility``;
- a keypoint moves; one that leaves the image is marked invisible (``visible`` False) for good (its pixels
  are gone, even if a later op brings the spot back into the frame), never removed (OD-API keeps a
  visibility per keypoint); coordinates may leave [0, 1] here and are clamped when written;
- a mask warps with nearest-neighbour interpolation and a constant 0 border: never blended, and what
  comes in from outside the source (reflected or filled borders) is background.

Nothing here knows of records or features: :mod:`aeops.spatial` reads and writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from aeops.ops.functional import Affine, warp_nearest


@dataclass(frozen=True)
class Targets:
    """The spatial targets of one image of ``shape`` (H, W).

    ``boxes`` (N, 4) ``[xmin, ymin, xmax, ymax]`` with ``visibility`` (N,) (1 = untouched);
    ``keypoints`` (M, 2) ``[x, y]`` with ``visible`` (M,) bool (NaN coordinates = missing, left alone);
    ``mask`` a (H, W) or (H, W, C) uint8 label map, or None.
    """

    shape: tuple[int, int]
    boxes: np.ndarray
    visibility: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    mask: np.ndarray | None = None

    @classmethod
    def of(cls, shape, boxes=(), keypoints=(), visible=None, mask=None) -> "Targets":
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        keypoints = np.asarray(keypoints, np.float64).reshape(-1, 2)
        visible = np.ones(len(keypoints), bool) if visible is None else np.asarray(visible, bool).reshape(-1)
        return cls(tuple(shape[:2]), boxes, np.ones(len(boxes)), keypoints, visible, mask)

    def kept(self, min_visibility: float) -> np.ndarray:
        """Indices of the boxes to keep: visibility at least ``min_visibility``, and never a box wholly outside."""
        return np.flatnonzero((self.visibility >= min_visibility) & (self.visibility > 0))


def transform(targets: Targets, affine: Affine) -> Targets:
    """``targets`` moved by ``affine``, the matrix the pixels were warped with."""
    boxes, share = _boxes(targets.boxes, targets.shape, affine)
    keypoints, inside = _points(targets.keypoints, targets.shape, affine)
    mask = None if targets.mask is None else warp_nearest(targets.mask, affine)
    return replace(
        targets, shape=affine.size, boxes=boxes, visibility=targets.visibility * share,
        keypoints=keypoints, visible=targets.visible & inside, mask=mask,
    )


def _to_pixels(points: np.ndarray, shape: tuple[int, int], affine: Affine) -> np.ndarray:
    """Normalised (x, y) -> output pixel-centre coordinates -> normalised in the output frame."""
    height, width = shape
    centres = points * (width, height) - 0.5
    moved = centres @ affine.matrix[:, :2].T + affine.matrix[:, 2]
    out_height, out_width = affine.size
    return (moved + 0.5) / (out_width, out_height)


def _boxes(boxes: np.ndarray, shape, affine: Affine) -> tuple[np.ndarray, np.ndarray]:
    """(clipped boxes, share of each transformed box inside the frame) -- albumentations' "largest box"."""
    if not len(boxes):
        return boxes, np.ones(0)
    x0, y0, x1, y1 = boxes.T
    corners = np.stack([np.stack(c, -1) for c in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))], 1)  # (N, 4, 2)
    moved = _to_pixels(corners.reshape(-1, 2), shape, affine).reshape(-1, 4, 2)
    whole = np.concatenate([moved.min(1), moved.max(1)], 1)
    clipped = np.clip(whole, 0.0, 1.0)
    area = _area(whole, affine.size)
    share = np.divide(_area(clipped, affine.size), area, out=np.ones(len(boxes)), where=area > 0)
    outside = (whole[:, 0] > 1) | (whole[:, 1] > 1) | (whole[:, 2] < 0) | (whole[:, 3] < 0)
    share[outside] = 0.0
    return clipped, share


def _area(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Areas in output pixels, so a share does not depend on the frame's aspect."""
    return (boxes[:, 2] - boxes[:, 0]) * size[1] * (boxes[:, 3] - boxes[:, 1]) * size[0]


def _points(points: np.ndarray, shape, affine: Affine) -> tuple[np.ndarray, np.ndarray]:
    if not len(points):
        return points, np.ones(0, bool)
    moved = _to_pixels(points, shape, affine)
    inside = np.all((moved >= 0) & (moved <= 1), axis=1) | np.isnan(moved).any(axis=1)
    return moved, inside
