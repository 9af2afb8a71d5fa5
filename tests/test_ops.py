"""Every registered op, driven by one case table: shape/dtype, identity at neutral parameters, determinism,
replay through JSON. A test fails when an op is registered but missing from the table."""

import json

import numpy as np
import pytest

from aeops import config, ops
from aeops.errors import ConfigError
from aeops.ops import functional as F
from aeops.ops.registry import Op, register
from tests.images import gradient

# op -> (config entry besides op/p, parameters that make apply() the identity, or None when none exist)
CASES = {
    "hflip": ({}, None),
    "vflip": ({}, None),
    "rotate": ({"angle": [-30, 30]}, {"angle": 0.0}),
    "translate": ({"x": [-0.2, 0.2], "y": [-0.2, 0.2]}, {"x": 0.0, "y": 0.0}),
    "scale": ({"factor": [0.7, 1.3]}, {"factor": 1.0}),
    "crop": ({"size": [0.5, 0.9]}, {"height": 1.0, "width": 1.0}),
    "random_resized_crop": ({"scale": [0.1, 1.0]}, {"height": 1.0, "width": 1.0}),
    "brightness": ({"delta": [-0.3, 0.3]}, {"delta": 0.0}),
    "contrast": ({"factor": [0.5, 1.5]}, {"factor": 1.0}),
    "saturation": ({"factor": [0.5, 1.5]}, {"factor": 1.0}),
    "hue": ({"shift": [-30, 30]}, {"shift": 0.0}),
    "gamma": ({"gamma": [0.5, 2.0]}, {"gamma": 1.0}),
    "grayscale": ({}, None),
    "gaussian_blur": ({"sigma": [0.5, 2.0]}, {"sigma": 0.0}),
    "sharpen": ({"alpha": [0.2, 0.8]}, {"alpha": 0.0}),
    "gaussian_noise": ({"sigma": [5, 30]}, {"sigma": 0.0}),
    "jpeg": ({"quality": [30, 90]}, None),
    "cutout": ({"holes": [1, 5], "size": [0.1, 0.3]}, {"holes": 0}),
    "random_erasing": ({"scale": [0.05, 0.3]}, {"height": 0.0}),
}
IMAGE = gradient(37, 53)


def one(name: str) -> ops.Pipeline:
    return ops.build([{"op": name, "p": 1.0, **CASES[name][0]}])


def test_every_registered_op_is_in_the_table():
    assert sorted(CASES) == ops.names()


@pytest.mark.parametrize("name", sorted(CASES))
def test_keeps_dtype_and_shape_and_changes_something(name):
    outputs = [ops.augment(one(name), IMAGE, 1, b"key", v)[0] for v in range(1, 6)]
    assert all(out.dtype == np.uint8 and out.shape == IMAGE.shape for out in outputs)
    assert any(not np.array_equal(out, IMAGE) for out in outputs)


@pytest.mark.parametrize("name", [n for n, (_, neutral) in CASES.items() if neutral is not None])
def test_identity_at_neutral_parameters(name):
    op = one(name).steps[0]
    params = {**op.draw(np.random.default_rng(0), IMAGE.shape), **CASES[name][1]}
    assert op.apply(IMAGE, **params) is IMAGE


@pytest.mark.parametrize("name", sorted(CASES))
def test_deterministic_per_seed_key_variant(name):
    a, lineage_a = ops.augment(one(name), IMAGE, 7, b"k", 3)
    b, lineage_b = ops.augment(one(name), IMAGE, 7, b"k", 3)
    assert np.array_equal(a, b) and lineage_a == lineage_b
    lineages = [ops.augment(one(name), IMAGE, 7, b"k", v)[1] for v in range(1, 5)]
    if CASES[name][0]:
        assert len({json.dumps(lineage) for lineage in lineages}) > 1


@pytest.mark.parametrize("name", sorted(CASES))
def test_replay_after_json_round_trip_is_exact(name):
    for variant in (1, 2):
        out, lineage = ops.augment(one(name), IMAGE, 3, b"r", variant)
        assert [entry["op"] for entry in lineage] == [name]
        assert np.array_equal(ops.replay(IMAGE, json.loads(json.dumps(lineage))), out)


@pytest.mark.parametrize("name", sorted(CASES))
def test_p_zero_never_fires(name):
    pipeline = ops.build([{"op": name, "p": 0.0}])
    assert ops.augment(pipeline, IMAGE, 0, b"k", 1) == (IMAGE, [])


def test_variant_zero_is_the_source():
    assert ops.augment(one("rotate"), IMAGE, 0, b"k", 0) == (IMAGE, [])


def test_whole_pipeline_replays_and_adding_an_op_keeps_earlier_draws():
    specs = [{"op": name, "p": 0.7, **cfg} for name, (cfg, _) in CASES.items()]
    out, lineage = ops.augment(ops.build(specs), IMAGE, 11, b"all", 2)
    assert np.array_equal(ops.replay(IMAGE, json.loads(json.dumps(lineage))), out)
    _, longer = ops.augment(ops.build(specs + [{"op": "jpeg"}]), IMAGE, 11, b"all", 2)
    assert longer[: len(lineage)] == lineage


# --- what the ops do ---------------------------------------------------------------------------------


def test_kernels_mean_what_they_say():
    assert np.array_equal(F.hflip(IMAGE), IMAGE[:, ::-1])
    assert np.array_equal(F.vflip(IMAGE), IMAGE[::-1])
    gray = F.grayscale(IMAGE)
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    assert np.array_equal(F.saturation(IMAGE, 0.0), gray)
    assert F.brightness(IMAGE, 0.1).mean() > IMAGE.mean()
    assert F.gamma(IMAGE, 2.0).mean() < IMAGE.mean()
    assert F.contrast(IMAGE, 1.5).std() > IMAGE.std()
    assert F.gaussian_blur(IMAGE, 2.0).std() < IMAGE.std()
    flat = np.full((64, 64, 3), 128, np.uint8)
    noisy = F.gaussian_noise(flat, 10.0, True, 1).astype(float) - 128
    assert abs(noisy.std() - 10) < 0.5 and abs(noisy.mean()) < 0.5
    shared = F.gaussian_noise(flat, 10.0, False, 1)
    assert np.array_equal(shared[..., 0], shared[..., 2])
    assert 0 < np.abs(F.jpeg(IMAGE, 50).astype(int) - IMAGE).mean() < 10


def test_hue_and_saturation_keep_gray_images_gray():
    gray = F.grayscale(IMAGE)
    for out in (F.hue(gray, 40), F.saturation(gray, 1.7)):
        assert np.array_equal(out, gray)


def test_geometry_border_and_output_size():
    rotated = F.rotate(IMAGE, 90.0, "nearest", "constant", 0, "fit")
    assert rotated.shape == (53, 37, 3) and np.array_equal(rotated, np.rot90(IMAGE))
    shifted = F.translate(IMAGE, 0.5, 0.0, "nearest", "constant", [1, 2, 3])
    assert (shifted[:, :20] == [1, 2, 3]).all()
    reflected = F.translate(IMAGE, 0.5, 0.0, "nearest", "reflect", 0)
    assert not (reflected[:, :20] == 0).all()
    assert F.crop(IMAGE, 0.0, 0.0, 0.5, 0.5, "linear", "fit").shape == (18, 26, 3)
    assert np.array_equal(F.crop(IMAGE, 1.0, 1.0, 0.5, 0.5, "linear", "fit"), IMAGE[-18:, -26:])
    assert F.scale(IMAGE, 0.5, "area", "reflect", 0, "fit").shape == (18, 26, 3)
    out, lineage = ops.augment(ops.build([{"op": "rotate", "angle": [45, 45], "output_size": "fit"}]), IMAGE, 0, b"k", 1)
    assert out.shape[0] > IMAGE.shape[0] and np.array_equal(ops.replay(IMAGE, lineage), out)


def test_erasing_paints_the_fill_colour():
    out = F.erase(IMAGE, 0.0, 0.0, 0.5, 0.5, [9, 8, 7])
    assert (out[:18, :26] == [9, 8, 7]).all() and np.array_equal(out[18:], IMAGE[18:])
    assert (F.cutout(IMAGE, 3, 0.2, 255, 5) == 255).all(axis=2).sum() >= 7 * 11


# --- groups -------------------------------------------------------------------------------------------


def test_one_of_applies_exactly_one():
    pipeline = ops.build([{"op": "one_of", "ops": [{"op": "hflip", "p": 1}, {"op": "vflip", "p": 1}]}])
    picked = [ops.augment(pipeline, IMAGE, 0, b"k", v)[1] for v in range(1, 30)]
    assert all(len(lineage) == 1 for lineage in picked)
    assert {lineage[0]["op"] for lineage in picked} == {"hflip", "vflip"}


def test_some_of_applies_n_in_config_order():
    members = [{"op": name} for name in ("brightness", "contrast", "gamma", "hue")]
    pipeline = ops.build([{"op": "some_of", "n": [2, 3], "ops": members}])
    for variant in range(1, 30):
        out, lineage = ops.augment(pipeline, IMAGE, 0, b"k", variant)
        names = [entry["op"] for entry in lineage]
        assert 2 <= len(names) <= 3 and names == sorted(names, key=[m["op"] for m in members].index)
        assert np.array_equal(ops.replay(IMAGE, lineage), out)


# --- building: every mistake is one line naming its place ---------------------------------------------


@pytest.mark.parametrize(
    "specs, message",
    [
        ([{"op": "rotate", "angel": [1, 2]}], "ops[0] (rotate): unknown parameter 'angel'; allowed: p, angle,"),
        ([{"op": "hflip"}, {"op": "spin"}], "ops[1] (spin): unknown op 'spin'; known ops: brightness,"),
        ([{"op": "rotate", "angle": 5}], "ops[0] (rotate): angle must be [low, high]"),
        ([{"op": "rotate", "angle": [5, 1]}], "low <= high"),
        ([{"op": "jpeg", "quality": [0, 50]}], "ops[0] (jpeg): quality = [0, 50] is out of range; allowed within [1, 100]"),
        ([{"op": "jpeg", "quality": [50.5, 60]}], "two integers"),
        ([{"op": "rotate", "border_mode": "wrap"}], "choose one of reflect, constant, replicate"),
        ([{"op": "rotate", "fill": 300}], "fill must be a gray level 0-255 or [r, g, b]"),
        ([{"op": "hflip", "p": 1.5}], "p = 1.5 must be a probability"),
        ([{"p": 1}], "ops[0]: expected a mapping with an 'op' key"),
        ([{"op": "one_of", "ops": []}], "ops[0] (one_of): needs a non-empty 'ops' list"),
        ([{"op": "some_of", "n": [1, 3], "ops": [{"op": "hflip"}]}], "ops[0] (some_of): n = [1, 3] is out of range"),
        ([{"op": "some_of", "n": [0.5, 1], "ops": [{"op": "hflip"}]}], "ops[0] (some_of): n must be [low, high], two integers"),
        ([{"op": "random_resized_crop", "ratio": [0.5, 101]}], "ratio = [0.5, 101] is out of range; allowed within [0.01, 100]"),
        ([{"op": "random_resized_crop", "ratio": [0.005, 1]}], "ratio = [0.005, 1] is out of range; allowed within [0.01, 100]"),
        ([{"op": "some_of", "ops": [{"op": "gamma", "g": [1, 2]}]}], "ops[0].ops[0] (gamma): unknown parameter 'g'"),
        ({"op": "hflip"}, "ops must be a list"),
    ],
)
def test_build_errors(specs, message):
    with pytest.raises(ValueError) as error:
        ops.build(specs)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_unknown_op_lists_the_groups_too():
    with pytest.raises(ValueError, match="one_of, some_of"):
        ops.build([{"op": "nope"}])


def test_registering_a_name_twice_fails():
    with pytest.raises(ValueError, match="'hflip' is already registered"):
        register("hflip")(type("Again", (Op,), {}))


def test_config_load_fails_on_a_bad_op_list(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("augment:\n  ops:\n    - {op: rotate, angel: [1, 2]}\n")
    with pytest.raises(ConfigError, match=r"augment.ops.*ops\[0\] \(rotate\): unknown parameter 'angel'"):
        config.load(config.PipelineConfig, path)


def test_all_ops_config_lists_every_op():
    cfg = config.load(config.PipelineConfig, "configs/all-ops.yaml")
    listed = json.dumps(cfg.augment.ops)
    assert all(f'"op": "{name}"' in listed for name in ops.names() + list(ops.GROUPS))


def test_replay_rejects_what_it_cannot_replay():
    with pytest.raises(ValueError, match=r"lineage\[0\] \(rotate\): cannot replay"):
        ops.replay(IMAGE, [{"op": "rotate", "params": {"angel": 3}}])
    with pytest.raises(ValueError, match="uint8"):
        ops.augment(one("hflip"), IMAGE.astype(np.float32), 0, b"k", 1)


# --- what the geometric ops do with the parameters they draw -------------------------------------------

DOT_SHAPE, DOT = (61, 81), (20.0, 25.0)  # (rows, cols) of the image; (row, col) of a small bright blob's centre


def _dot_image() -> np.ndarray:
    image = np.zeros((*DOT_SHAPE, 3), np.uint8)
    row, col = int(DOT[0]), int(DOT[1])
    image[row - 1 : row + 2, col - 1 : col + 2] = 255
    return image


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    weight = image[..., 0].astype(float)
    rows, cols = np.indices(weight.shape)
    return (rows * weight).sum() / weight.sum(), (cols * weight).sum() / weight.sum()


def _where_the_dot_goes(name: str, params: dict) -> tuple[float, float]:
    """The docstrings' promises, written out: rotate counter-clockwise about the centre, translate by fractions of
    the sides (positive = right/down), scale about the centre."""
    cy, cx = (DOT_SHAPE[0] - 1) / 2, (DOT_SHAPE[1] - 1) / 2
    dy, dx = DOT[0] - cy, DOT[1] - cx
    if name == "rotate":
        t = np.radians(params["angle"])
        return cy - dx * np.sin(t) + dy * np.cos(t), cx + dx * np.cos(t) + dy * np.sin(t)
    if name == "translate":
        return DOT[0] + params["y"] * DOT_SHAPE[0], DOT[1] + params["x"] * DOT_SHAPE[1]
    return cy + params["factor"] * dy, cx + params["factor"] * dx


@pytest.mark.parametrize(
    "name, config, ranges",
    [
        ("rotate", {"angle": [-40, 40]}, {"angle": (-40, 40)}),
        ("translate", {"x": [-0.2, 0.15], "y": [-0.1, 0.25]}, {"x": (-0.2, 0.15), "y": (-0.1, 0.25)}),
        ("scale", {"factor": [0.7, 1.3]}, {"factor": (0.7, 1.3)}),
    ],
)
def test_warps_move_the_pixels_as_their_drawn_parameters_say(name, config, ranges):
    pipeline = ops.build([{"op": name, **config, "border_mode": "constant", "fill": 0}])
    image = _dot_image()
    for variant in range(1, 13):
        out, [entry] = ops.augment(pipeline, image, 5, b"dot", variant)
        params = entry["params"]
        assert all(low <= params[key] <= high for key, (low, high) in ranges.items())
        expected = _where_the_dot_goes(name, params)
        assert np.hypot(*np.subtract(_centre_of_mass(out), expected)) < 0.75, (params, _centre_of_mass(out), expected)


def test_crop_keeps_the_aspect_ratio_and_cuts_where_it_drew():
    image = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    pipeline = ops.build([{"op": "crop", "size": [0.4, 0.9], "output_size": "fit"}])
    sizes = set()
    for variant in range(1, 21):
        out, [entry] = ops.augment(pipeline, image, 2, b"crop", variant)
        params = entry["params"]
        assert params["height"] == params["width"] and 0.4 <= params["height"] <= 0.9
        t, l, h, w = F.box(image.shape, params["top"], params["left"], params["height"], params["width"], minimum=1)
        assert abs(w / h - 90 / 60) < 0.05 and 0 <= t <= 60 - h and 0 <= l <= 90 - w
        np.testing.assert_array_equal(out, image[t : t + h, l : l + w])
        sizes.add(h)
    assert len(sizes) > 5


def test_random_resized_crop_draws_the_area_and_aspect_it_is_given():
    image = np.random.default_rng(1).integers(0, 256, (80, 120, 3), dtype=np.uint8)
    pipeline = ops.build([{"op": "random_resized_crop", "scale": [0.2, 0.5], "ratio": [1.5, 2.5]}])
    for variant in range(1, 21):
        out, [entry] = ops.augment(pipeline, image, 4, b"rrc", variant)
        params = entry["params"]
        assert 0.2 - 1e-9 <= params["height"] * params["width"] <= 0.5 + 1e-9
        assert 1.5 - 1e-9 <= (params["width"] * 120) / (params["height"] * 80) <= 2.5 + 1e-9
        t, l, h, w = F.box(image.shape, params["top"], params["left"], params["height"], params["width"], minimum=1)
        np.testing.assert_array_equal(out, F.resize(image[t : t + h, l : l + w], 80, 120, "linear"))


def test_random_resized_crop_defaults_are_torchvisions():
    assert ops.build([{"op": "random_resized_crop"}]).steps[0].config == {
        "scale": (0.08, 1.0), "ratio": (3 / 4, 4 / 3), "interpolation": "linear", "output_size": "keep"}


def test_random_resized_crop_falls_back_to_the_whole_image_clamped_to_the_ratio():
    tall = np.zeros((200, 20, 3), np.uint8)  # aspect 0.1: no box of aspect >= 1 fits, whatever the scale
    pipeline = ops.build([{"op": "random_resized_crop", "scale": [0.9, 1.0], "ratio": [1.0, 2.0]}])
    _, [entry] = ops.augment(pipeline, tall, 0, b"tall", 1)
    assert (entry["params"]["height"], entry["params"]["width"]) == (0.1, 1.0)  # 20 x 20 of 200 x 20: aspect 1


def test_contrast_stretches_about_the_mean_luma():
    """ITU-R 601 luma of a flat (200, 100, 50) image is 124.2: factor 0.5 halves each channel's distance to it."""
    flat = np.empty((4, 4, 3), np.uint8)
    flat[...] = (200, 100, 50)
    assert F.contrast(flat, 0.5)[0, 0].tolist() == [162, 112, 87]


def test_a_full_turn_of_hue_is_no_change():
    assert F.hue(IMAGE, 360) is IMAGE and F.hue(IMAGE, -360) is IMAGE


def test_rotate_accepts_a_full_turn_and_no_more():
    ops.build([{"op": "rotate", "angle": [-360, 360]}])
    for angle in ([-360.5, 0], [0, 360.5]):
        with pytest.raises(ValueError, match=r"allowed within \[-360, 360\]"):
            ops.build([{"op": "rotate", "angle": angle}])
