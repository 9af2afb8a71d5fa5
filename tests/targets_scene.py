"""A scene whose objects can be found again by colour: filled rectangles on black, with their boxes,
centre keypoints and a class-id mask, to check that targets land where the pixels went."""

from __future__ import annotations

import numpy as np

HEIGHT, WIDTH = 240, 320
# (x0, y0, x1, y1) in pixels, drawn on columns x0..x1-1 and rows y0..y1-1; the last one sits near a corner
RECTS = [(30, 20, 90, 70), (200, 40, 300, 100), (60, 140, 130, 220), (250, 170, 312, 236)]
COLOURS = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)], np.uint8)
CLASS_IDS = np.array([0, 10, 60, 130, 250], np.uint8)  # background, then each object: far apart, so a blend shows


def image() -> np.ndarray:
    out = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for (x0, y0, x1, y1), colour in zip(RECTS, COLOURS):
        out[y0:y1, x0:x1] = colour
    return out


def mask() -> np.ndarray:
    out = np.zeros((HEIGHT, WIDTH), np.uint8)
    for label, (x0, y0, x1, y1) in enumerate(RECTS, 1):
        out[y0:y1, x0:x1] = CLASS_IDS[label]
    return out


def mask_of(pixels: np.ndarray) -> np.ndarray:
    """The class-id mask the pixels show: what a moved mask should say."""
    return CLASS_IDS[labels(pixels)]


def boxes() -> np.ndarray:
    """Normalised [xmin, ymin, xmax, ymax]: the pixel edges of each rectangle."""
    return np.array(RECTS, np.float64) / (WIDTH, HEIGHT, WIDTH, HEIGHT)


def centres() -> np.ndarray:
    return np.array([((x0 + x1) / 2 / WIDTH, (y0 + y1) / 2 / HEIGHT) for x0, y0, x1, y1 in RECTS])


def labels(pixels: np.ndarray) -> np.ndarray:
    """Each pixel's object (1..N) by its nearest colour, 0 for background: what the mask should say."""
    palette = np.concatenate([[(0, 0, 0)], COLOURS]).astype(np.int32)
    distance = ((pixels[:, :, None, :].astype(np.int32) - palette) ** 2).sum(-1)
    return distance.argmin(-1).astype(np.uint8)


def found(pixels: np.ndarray, index: int) -> np.ndarray | None:
    """Object ``index``'s pixels (those close to its colour): normalised box of their pixel edges, or None."""
    close = ((pixels.astype(np.int32) - COLOURS[index].astype(np.int32)) ** 2).sum(-1) < 90**2
    rows, cols = np.nonzero(close)
    if len(rows) == 0:
        return None
    height, width = pixels.shape[:2]
    return np.array([cols.min() / width, rows.min() / height, (cols.max() + 1) / width, (rows.max() + 1) / height])


def centroid(pixels: np.ndarray, index: int) -> np.ndarray:
    close = ((pixels.astype(np.int32) - COLOURS[index].astype(np.int32)) ** 2).sum(-1) < 90**2
    rows, cols = np.nonzero(close)
    height, width = pixels.shape[:2]
    return np.array([(cols.mean() + 0.5) / width, (rows.mean() + 0.5) / height])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# --- records ---------------------------------------------------------------------------------------

NAMES = [b"red", b"green", b"blue", b"yellow"]


def png(array: np.ndarray) -> bytes:
    from tests.images import pil_bytes
    from PIL import Image

    return pil_bytes(Image.fromarray(array), "PNG")


def od_api_record(key: bytes, with_mask: bool = True, **replace) -> bytes:
    """The scene as a TF Object Detection API record: boxes, per-object lists, centre keypoints, a mask."""
    from aeops import schema

    b = boxes()
    features = {
        "image/encoded": schema.bytes_feature(png(image())),
        "image/key": schema.bytes_feature(key),
        "image/class/label": schema.int_feature(9),
        "image/object/bbox/xmin": schema.float_feature(*b[:, 0]),
        "image/object/bbox/ymin": schema.float_feature(*b[:, 1]),
        "image/object/bbox/xmax": schema.float_feature(*b[:, 2]),
        "image/object/bbox/ymax": schema.float_feature(*b[:, 3]),
        "image/object/class/label": schema.int_feature(1, 2, 3, 4),
        "image/object/class/text": schema.bytes_feature(*NAMES),
        "image/object/difficult": schema.int_feature(0, 1, 0, 1),
        "image/object/area": schema.float_feature(*[(x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in RECTS]),
        "image/object/keypoint/x": schema.float_feature(*centres()[:, 0]),
        "image/object/keypoint/y": schema.float_feature(*centres()[:, 1]),
        "image/object/keypoint/visibility": schema.int_feature(2, 2, 2, 2),
    }
    if with_mask:
        features["image/segmentation/class/encoded"] = schema.bytes_feature(png(mask()))
    features.update(replace)
    return schema.serialize(features)


def tfds_record(index: int, **replace) -> bytes:
    """The scene as TFDS writes a detection dataset: ``image``, ``label``, ``objects/bbox`` (yxyx), ``objects/label``."""
    from aeops import schema

    b = boxes()[:, [1, 0, 3, 2]]
    features = {
        "image": schema.bytes_feature(png(image())),
        "label": schema.int_feature(index),
        "objects/bbox": schema.float_feature(*b.reshape(-1)),
        "objects/label": schema.int_feature(0, 1, 2, 3),
    }
    features.update(replace)
    return schema.serialize(features)
