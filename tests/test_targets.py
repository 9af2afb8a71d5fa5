"""Spatial targets follow the pixels through every geometric op: boxes, keypoints and masks are checked
against where each object's pixels actually went (found again by colour), never against the code's own
geometry. A test fails when a geometric op is registered but missing from the table."""

import json

import numpy as np
import pytest

from aeops import ops
from aeops.ops import Targets
from aeops.ops.registry import lookup
from tests import targets_scene as scene

CONSTANT = {"border_mode": "constant", "fill": 0}  # reflected borders copy objects: see test_reflect_border
GEOMETRIC = {
    "hflip": [{}],
    "vflip": [{}],
    "rotate": [{"angle": [-35, 35], **CONSTANT}, {"angle": [-35, 35], "output_size": "fit", **CONSTANT}],
    "translate": [{"x": [-0.3, 0.3], "y": [-0.3, 0.3], **CONSTANT}],
    "scale": [{"factor": [0.6, 1.6], **CONSTANT}, {"factor": [0.6, 1.6], "output_size": "fit", **CONSTANT}],
    "crop": [{"size": [0.5, 0.95]}, {"size": [0.5, 0.95], "output_size": "fit"}],
    "random_resized_crop": [{"scale": [0.3, 1.0]}, {"scale": [0.3, 1.0], "output_size": "fit"}],
}
COMPOSED = [
    {"op": "rotate", "angle": [-20, 20], **CONSTANT},
    {"op": "one_of", "ops": [{"op": "scale", "factor": [0.7, 1.3], **CONSTANT}, {"op": "random_resized_crop"}]},
    {"op": "hflip"},
    {"op": "brightness", "delta": [-0.1, 0.1]},
    {"op": "translate", "x": [-0.15, 0.15], "y": [-0.15, 0.15], **CONSTANT},
    {"op": "vflip"},
]
CASES = [([{"op": name, "p": 1.0, **cfg}], f"{name}-{i}") for name, cfgs in GEOMETRIC.items() for i, cfg in enumerate(cfgs)]
CASES.append((COMPOSED, "composed"))
MIN_VISIBILITY = 0.25


def source() -> Targets:
    return Targets.of((scene.HEIGHT, scene.WIDTH), scene.boxes(), scene.centres(), mask=scene.mask())


def variants(specs, count=10):
    pipeline = ops.build(specs)
    for variant in range(1, count + 1):
        yield ops.augment(pipeline, scene.image(), 5, b"scene", variant, source())


def test_every_geometric_op_is_in_the_table():
    geometric = sorted(name for name in ops.names() if lookup(name).affine is not None)
    assert sorted(GEOMETRIC) == geometric


@pytest.mark.parametrize("specs", [c for c, _ in CASES], ids=[i for _, i in CASES])
def test_boxes_are_where_the_objects_pixels_are(specs):
    for out, lineage, moved in variants(specs):
        axis_aligned = all(e["op"] != "rotate" for e in lineage)
        kept = set(moved.kept(MIN_VISIBILITY).tolist())
        height, width = out.shape[:2]
        tolerance = 1.5 / min(height, width)
        for index in range(len(scene.RECTS)):
            pixels = scene.found(out, index)
            if index not in kept:
                continue
            assert pixels is not None, (lineage, index)
            box = moved.boxes[index]
            # the box holds every pixel of its object that is still in the frame ...
            assert np.all(box[:2] <= pixels[:2] + tolerance) and np.all(box[2:] >= pixels[2:] - tolerance), (lineage, index)
            # ... and fits them tightly wherever the transform keeps boxes boxes (rotation grows them when cut)
            if axis_aligned or moved.visibility[index] > 0.999:
                assert scene.iou(box, pixels) >= 0.9, (lineage, index, box, pixels)


@pytest.mark.parametrize("specs", [c for c, _ in CASES], ids=[i for _, i in CASES])
def test_masks_agree_with_the_pixels(specs):
    for out, lineage, moved in variants(specs):
        assert moved.mask.shape == out.shape[:2] and moved.mask.dtype == np.uint8
        assert set(np.unique(moved.mask)) <= set(scene.CLASS_IDS.tolist()), lineage  # never blended
        agreement = np.mean(moved.mask == scene.mask_of(out))
        assert agreement >= 0.98, (lineage, agreement)


@pytest.mark.parametrize("specs", [c for c, _ in CASES], ids=[i for _, i in CASES])
def test_keypoints_follow_the_pixels_and_are_marked_invisible_when_they_leave(specs):
    for out, lineage, moved in variants(specs):
        height, width = out.shape[:2]
        for index in range(len(scene.RECTS)):
            if moved.visibility[index] > 0.999:  # the whole object in frame: its centre is its centroid
                assert moved.visible[index]
                error = np.abs(moved.keypoints[index] - scene.centroid(out, index)) * (width, height)
                assert np.all(error < 1.5), (lineage, index, error)
        inside = np.all((moved.keypoints >= 0) & (moved.keypoints <= 1), axis=1)
        assert np.all(inside[moved.visible]), lineage  # visible = in the frame after every op
        assert not np.all(moved.visible) or np.all(inside)


@pytest.mark.parametrize("specs", [c for c, _ in CASES], ids=[i for _, i in CASES])
def test_replay_gives_the_same_pixels_and_targets(specs):
    for out, lineage, moved in variants(specs, count=4):
        pixels, replayed = ops.replay(scene.image(), json.loads(json.dumps(lineage)), source())
        np.testing.assert_array_equal(pixels, out)
        np.testing.assert_array_equal(replayed.boxes, moved.boxes)
        np.testing.assert_array_equal(replayed.visibility, moved.visibility)
        np.testing.assert_array_equal(replayed.keypoints, moved.keypoints)
        np.testing.assert_array_equal(replayed.mask, moved.mask)


def test_a_box_pushed_out_of_the_frame_is_dropped_by_its_visible_share():
    """The corner object (62 px wide at x=250..312 of 320) shifted right: 48 px leaves 22/62 = 35% of it
    (kept at 0.25), 64 px leaves 6/62 = 10% (dropped); the pixels agree with the share."""
    for shift, expected in ((0.15, 22 / 62), (0.2, 6 / 62)):
        pipeline = ops.build([{"op": "translate", "x": [shift, shift], "y": [0, 0], **CONSTANT}])
        out, _, moved = ops.augment(pipeline, scene.image(), 0, b"k", 1, source())
        share = moved.visibility[3]
        assert share == pytest.approx(expected, abs=0.01)
        pixels = np.sum(scene.labels(out) == 4) / np.sum(scene.labels(scene.image()) == 4)
        assert pixels == pytest.approx(share, abs=0.03)
        assert (3 in moved.kept(MIN_VISIBILITY)) == (share >= MIN_VISIBILITY)


def test_pixel_only_ops_leave_targets_alone():
    targets = source()
    for name in ops.names():
        if lookup(name).affine is None:
            _, _, moved = ops.augment(ops.build([{"op": name, "p": 1.0}]), scene.image(), 0, b"k", 1, targets)
            assert moved is targets, name


def test_reflect_border_copies_are_not_labelled():
    """A reflected border mirrors objects into the frame; the mask keeps them background and no box is
    added for them (the README says so, and recommends border_mode: constant for detection data)."""
    pipeline = ops.build([{"op": "translate", "x": [0.25, 0.25], "y": [0, 0], "border_mode": "reflect"}])
    out, _, moved = ops.augment(pipeline, scene.image(), 0, b"k", 1, source())
    mirrored = scene.labels(out)[:, : int(0.25 * scene.WIDTH)] > 0
    assert mirrored.any() and not moved.mask[:, : int(0.25 * scene.WIDTH)].any()
    assert len(moved.boxes) == len(scene.RECTS)


def test_keypoint_visibility_is_read_as_given():
    targets = Targets.of((10, 20), keypoints=[[0.5, 0.5], [0.2, 0.2]], visible=[[1], [0]])
    assert targets.visible.tolist() == [True, False]
