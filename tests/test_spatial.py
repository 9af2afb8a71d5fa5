"""Reading, checking and writing spatial targets of records (aeops/spatial.py), one rule at a time."""

import numpy as np
import pytest

from aeops import schema, spatial
from aeops.config import SchemaConfig
from aeops.errors import RecordError
from aeops.ops import Targets
from tests import targets_scene as scene

OD_API = SchemaConfig()
SHAPE = (scene.HEIGHT, scene.WIDTH)


def example(**features):
    return schema.parse(scene.od_api_record(b"k", with_mask=False, **features)).example


@pytest.mark.parametrize("features, message", [
    ({"image/object/bbox/ymax": schema.float_feature(0.5, 0.5, 0.5)}, "image/object/bbox/xmin: box lists of unequal length"),
    ({"image/object/bbox/ymin": schema.float_feature(0.1, float("nan"), 0.2, 0.3)}, "image/object/bbox/ymin: holds NaN"),
    ({"image/object/bbox/xmin": schema.bytes_feature(b"a")}, "image/object/bbox/xmin: must be a float list"),
    ({"image/object/bbox/xmin": schema.float_feature(-0.01, 0.1, 0.1, 0.1)}, "value -0.01 is outside [0, 1]"),
    ({"image/object/difficult": schema.int_feature(0, 0, 0, 0, 0)}, "image/object/difficult: holds 5 values for 4 boxes"),
    ({"image/object/keypoint/visibility": schema.int_feature(1)}, "image/object/keypoint/visibility: holds 1 values"),
])
def test_malformed_targets_name_the_feature(features, message):
    with pytest.raises(RecordError) as info:
        spatial.read(example(**features), OD_API, SHAPE)
    assert info.value.reason == "bad_targets" and message in str(info.value)


def test_a_missing_box_side_and_a_bad_tfds_length():
    record = scene.od_api_record(b"k", with_mask=False)
    parsed = schema.parse(record).example
    del parsed.features.feature["image/object/bbox/ymax"]
    with pytest.raises(RecordError, match="image/object/bbox/ymax: missing while image/object/bbox/xmin is present"):
        spatial.read(parsed, OD_API, SHAPE)
    tfds = schema.parse(scene.tfds_record(0, **{"objects/bbox": schema.float_feature(0.1, 0.2, 0.3)}), "image", None)
    with pytest.raises(RecordError, match=r"objects/bbox: holds 3 values; expected \[ymin, xmin, ymax, xmax\]"):
        spatial.read(tfds.example, SchemaConfig(preset="tfds"), SHAPE)


def test_rounding_outside_the_unit_square_is_clipped_and_classification_records_have_no_targets():
    targets = spatial.read(example(**{"image/object/bbox/xmax": schema.float_feature(0.3, 0.95, 0.5, 1.0004)}), OD_API, SHAPE)
    assert targets.boxes[3, 2] == 1.0
    plain = schema.parse(schema.serialize({"image/encoded": schema.bytes_feature(b"x")})).example
    assert spatial.read(plain, OD_API, SHAPE) is None and spatial.write(plain, OD_API, None) == {}


def test_drops_keep_every_per_object_list_aligned_and_count():
    parsed = example()
    moved = spatial.read(parsed, OD_API, SHAPE)
    visibility = np.array([1.0, 0.1, 0.9, 0.0])  # objects 1 and 3 fell out of the frame
    out = spatial.write(parsed, OD_API, Targets(moved.shape, moved.boxes, visibility, moved.keypoints, moved.visible))
    assert list(out["image/object/class/text"].bytes_list.value) == [scene.NAMES[0], scene.NAMES[2]]
    assert list(out["image/object/class/label"].int64_list.value) == [1, 3]
    assert list(out["image/object/difficult"].int64_list.value) == [0, 0]
    assert len(out["image/object/area"].float_list.value) == 2
    assert len(out["image/object/bbox/ymax"].float_list.value) == len(out["image/object/keypoint/x"].float_list.value) == 2
    assert out[schema.DROPPED_BOXES].int64_list.value[0] == 2
    assert "image/class/label" not in out  # not per object: passed through by the output record


def test_keypoints_that_left_become_invisible_or_nan_without_a_visibility_list():
    moved = Targets.of(SHAPE, scene.boxes(), [[1.2, 0.5], [0.5, 0.5], [0.2, 0.2], [0.3, 0.3]],
                       visible=[False, True, True, True])
    with_visibility = spatial.write(example(), OD_API, moved)
    assert list(with_visibility["image/object/keypoint/visibility"].int64_list.value) == [0, 2, 2, 2]
    assert with_visibility["image/object/keypoint/x"].float_list.value[0] == 1.0  # clamped to the edge
    parsed = example()
    del parsed.features.feature["image/object/keypoint/visibility"]
    without = spatial.write(parsed, OD_API, moved)
    assert "image/object/keypoint/visibility" not in without
    assert np.isnan(without["image/object/keypoint/x"].float_list.value[0])
