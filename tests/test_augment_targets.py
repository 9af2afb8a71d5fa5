"""Spatial targets through the whole job on the DirectRunner: real OD-API, TFDS and segmentation shards,
outputs checked against where each object's pixels went, per-object lists checked for alignment after
drops, every output replayed from its lineage, malformed targets dead-lettered naming the feature."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aeops import codec, config, schema, spatial
from aeops.ops import replay
from tests import shards
from tests import targets_scene as scene
from tests.test_augment import read_version

CONSTANT = "border_mode: constant"
OPS = ("augment.ops=[{op: hflip, p: 0.5}, {op: vflip, p: 0.3}, "
       f"{{op: translate, p: 0.8, x: [-0.35, 0.35], y: [-0.35, 0.35], {CONSTANT}}}, "
       f"{{op: one_of, ops: [{{op: scale, factor: [0.6, 1.4], {CONSTANT}}}, {{op: scale, factor: [0.5, 1.5], output_size: fit}}, "
       f"{{op: rotate, angle: [-30, 30], {CONSTANT}}}, {{op: random_resized_crop, scale: [0.3, 1]}}, {{op: crop, output_size: fit}}]}}, "
       "{op: brightness, p: 0.5, delta: [-0.05, 0.05]}]")
COMMON = ("--set", OPS, "--set", "inference.enabled=false", "--set", "encode.format=png", "--set", "augment.variants=6")


def run(pattern, root, *flags):
    from pipelines import augment

    return augment.run(["--input", str(pattern), "--output", str(root), *COMMON, *flags])


def check_boxes_follow_pixels(example, layout, pixels, labels_feature, label_base):
    """Each output box, found by its label, frames its object's pixels; the per-object lists agree."""
    targets = spatial.read(example, layout, pixels.shape)
    labels = list(example.features.feature[labels_feature].int64_list.value)
    dropped = schema.feature_value(example, schema.DROPPED_BOXES)
    assert len(labels) == len(targets.boxes) == len(scene.RECTS) - dropped
    lineage = json.loads(schema.feature_value(example, schema.OPS))
    rotated = any(e["op"] == "rotate" for e in lineage)
    tolerance = 1.5 / min(pixels.shape[:2])
    for box, label in zip(targets.boxes, labels):
        found = scene.found(pixels, label - label_base)
        assert found is not None, (lineage, label)
        assert np.all(box[:2] <= found[:2] + tolerance) and np.all(box[2:] >= found[2:] - tolerance), (lineage, label)
        if not rotated:
            assert scene.iou(box, found) >= 0.9, (lineage, label, box, found)
    return targets, labels, dropped


def test_od_api_boxes_keypoints_masks_and_per_object_lists(tmp_path):
    shards.write(tmp_path / "od-00000-of-00001.tfrecord", [scene.od_api_record(f"scene-{i}".encode()) for i in range(4)])
    root = tmp_path / "out"
    assert run(tmp_path / "od-*.tfrecord", root) == 0
    _, manifest, outputs, dead = read_version(root)
    assert dead == [] and len(outputs) == manifest["records_out"] == 4 * 7
    layout = config.SchemaConfig()
    sources = {}
    dropped_total = 0
    for data in outputs:
        example = schema.parse(data).example
        pixels = codec.decode(schema.feature_value(example, schema.IMAGE))
        targets, labels, dropped = check_boxes_follow_pixels(example, layout, pixels, "image/object/class/label", 1)
        dropped_total += dropped
        feature = example.features.feature
        assert [scene.NAMES[label - 1] for label in labels] == list(feature["image/object/class/text"].bytes_list.value)
        assert [(label + 1) % 2 for label in labels] == list(feature["image/object/difficult"].int64_list.value)
        assert len(feature["image/object/area"].float_list.value) == len(labels)
        assert schema.feature_value(example, "image/class/label") == 9  # not per object: passed through
        # keypoints stay with their objects; those inside their object's pixels when visible
        visibility = list(feature["image/object/keypoint/visibility"].int64_list.value)
        assert len(visibility) == len(targets.keypoints) == len(labels)
        height, width = pixels.shape[:2]
        drawn = scene.labels(pixels)
        for (x, y), seen, label in zip(targets.keypoints, visibility, labels):
            if seen:
                row, col = min(int(y * height), height - 1), min(int(x * width), width - 1)
                assert drawn[max(row - 1, 0):row + 2, max(col - 1, 0):col + 2].max() == label
        # the mask follows the pixels
        assert np.mean(targets.mask == scene.mask_of(pixels)) >= 0.98
        # replay: the source and the lineage give the same pixels and targets
        key = schema.feature_value(example, schema.SOURCE_KEY)
        if key not in sources:
            source = schema.parse(scene.od_api_record(key))
            image = codec.decode(source.image)
            sources[key] = image, spatial.read(source.example, layout, image.shape)
        image, source_targets = sources[key]
        lineage = json.loads(schema.feature_value(example, schema.OPS))
        again, moved = replay(image, lineage, source_targets)
        np.testing.assert_array_equal(again, pixels)
        kept = moved.kept(layout.min_box_visibility)
        np.testing.assert_allclose(moved.boxes[kept], targets.boxes, atol=1e-6)
        np.testing.assert_array_equal(moved.mask, targets.mask)
        seen = np.array(visibility) > 0
        np.testing.assert_allclose(np.clip(moved.keypoints[kept], 0, 1)[seen], targets.keypoints[seen], atol=1e-6)
        assert np.array_equal(moved.visible[kept], seen)
    assert dropped_total > 0  # the translations push objects out: drops happened and lists stayed aligned


def test_tfds_preset_reads_image_and_moves_yxyx_boxes(tmp_path):
    shards.write(tmp_path / "tfds-00000-of-00001.tfrecord", [scene.tfds_record(i) for i in range(3)])
    root = tmp_path / "out"
    assert run(tmp_path / "tfds-*.tfrecord", root, "--set", "schema.preset=tfds") == 0
    _, manifest, outputs, dead = read_version(root)
    assert dead == [] and len(outputs) == 3 * 7
    layout = config.SchemaConfig(preset="tfds")
    for data in outputs:
        example = schema.parse(data, "image", None).example
        assert "image/encoded" not in example.features.feature  # the output keeps the input's names
        pixels = codec.decode(schema.feature_value(example, "image"))
        assert len(example.features.feature["objects/bbox"].float_list.value) % 4 == 0
        check_boxes_follow_pixels(example, layout, pixels, "objects/label", 0)


def test_segmentation_only_records(tmp_path):
    mask_only = schema.serialize({"image/encoded": schema.bytes_feature(scene.png(scene.image())),
                                  "image/segmentation/class/encoded": schema.bytes_feature(scene.png(scene.mask()))})
    shards.write(tmp_path / "seg-00000-of-00001.tfrecord", [mask_only])
    root = tmp_path / "out"
    assert run(tmp_path / "seg-*.tfrecord", root) == 0
    _, _, outputs, dead = read_version(root)
    assert dead == [] and len(outputs) == 7
    for data in outputs:
        example = schema.parse(data).example
        pixels = codec.decode(schema.feature_value(example, schema.IMAGE))
        mask = codec.decode(schema.feature_value(example, "image/segmentation/class/encoded"))[:, :, 0]
        assert mask.shape == pixels.shape[:2] and set(np.unique(mask)) <= set(scene.CLASS_IDS.tolist())
        assert np.mean(mask == scene.mask_of(pixels)) >= 0.98
        assert schema.DROPPED_BOXES not in example.features.feature


MALFORMED = {
    "image/object/bbox/xmax": {"image/object/bbox/xmax": schema.float_feature(0.05, 0.9, 0.9, 0.9)},  # xmin > xmax
    "image/object/class/text": {"image/object/class/text": schema.bytes_feature(b"a", b"b", b"c")},  # 3 for 4 boxes
    "image/object/bbox/ymin": {"image/object/bbox/ymin": schema.float_feature(0.1, 0.2, 1.5, 0.3)},  # outside [0, 1]
    "image/object/keypoint/y": {"image/object/keypoint/y": schema.float_feature(0.5)},
    "image/segmentation/class/encoded": {"image/segmentation/class/encoded": schema.bytes_feature(scene.png(scene.mask()[:100]))},
}


def test_malformed_targets_are_dead_letters_naming_the_feature(tmp_path):
    records = [scene.od_api_record(f"bad-{i}".encode(), **change) for i, change in enumerate(MALFORMED.values())]
    good = [scene.od_api_record(f"good-{i}".encode(), with_mask=False) for i in range(6)]
    shards.write(tmp_path / "bad-00000-of-00001.tfrecord", [*good, *records])
    root = tmp_path / "out"
    assert run(tmp_path / "bad-*.tfrecord", root, "--set", "augment.variants=1") == 0
    _, manifest, outputs, dead = read_version(root)
    entries = [schema.parse_dead_letter(d) for d in dead]
    assert len(outputs) == 6 * 2 and len(entries) == len(MALFORMED)
    by_record = {e["record"]: e for e in entries}
    for record, feature in zip(records, MALFORMED):
        entry = by_record[record]
        assert entry["stage"] == "decode" and entry["reason"].startswith(f"bad_targets: {feature}:"), entry["reason"]
        assert entry["variants"] == 2


def test_report_samples_draw_the_moved_boxes():
    """The report's sample of a flipped variant shows the red object's box outline where the object went."""
    import apache_beam  # noqa: F401 - stages imports Beam
    from aeops import stages
    from aeops.accounting import Stats
    from aeops.draw import PALETTE
    from aeops.ops import augment, build

    image = scene.image()
    source = scene.od_api_record(b"k", with_mask=False)
    targets = spatial.read(schema.parse(source).example, config.SchemaConfig(), image.shape)
    flipped, lineage, moved = augment(build([{"op": "hflip", "p": 1.0}]), image, 0, b"k", 1, targets)
    variant = stages.Variant("s", source, b"k", 1, tuple(lineage), False, image, moved, True)
    sample = stages.sample_of(variant, flipped, None, Stats.of(flipped, None, 32), 0.25)
    thumb = sample["augmented"].astype(int)  # 256 px wide: the scene at 0.8
    left_edge = round((scene.WIDTH - 90) * 0.8)  # the red box (x 30..90) flipped to 230..290
    column = thumb[round(25 * 0.8):round(65 * 0.8), left_edge]
    assert np.abs(column - PALETTE[0]).sum(-1).max() < 60
