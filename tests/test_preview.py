"""aeops preview: a PNG grid of the sample images and their variants; bad flags end as one line, exit 2."""

import numpy as np
import pytest
from PIL import Image

from aeops import cli, preview
from aeops.errors import UsageError
from aeops.sample import sample_paths

CONFIG = "configs/all-ops.yaml"


def test_renders_the_sample_images_with_every_op(tmp_path, capsys):
    images = [str(p) for p in sample_paths()[:2]]
    out = tmp_path / "preview.png"
    assert cli.main(["preview", "--config", CONFIG, "--images", *images, "--variants", "3", "--output", str(out),
                     "--tile", "96"]) == 0
    sheet = np.asarray(Image.open(out))
    assert sheet.shape[1] == 4 * (96 + 2 * preview.PAD) and sheet.shape[0] > 2 * 96
    assert sheet.std() > 10
    assert "2 image(s) x 3 variant(s)" in capsys.readouterr().out


def test_caption_shows_drawn_numbers_not_settings():
    entry = {"op": "rotate", "params": {"angle": -7.2134, "interpolation": "linear", "border_mode": "reflect",
                                        "fill": 0, "output_size": "keep"}}
    assert preview.caption(entry) == "rotate(angle=-7.21)"
    assert preview.caption({"op": "hflip", "params": {}}) == "hflip"


def test_long_captions_wrap_within_the_tile():
    from PIL import ImageFont

    font = ImageFont.load_default(size=preview.FONT_SIZE)
    lines = preview.wrap("#1 " + " · ".join(["random_resized_crop(top=0.123, left=0.456)"] * 5), font, 120)
    assert len(lines) > 3 and all(font.getlength(line) <= 120 for line in lines)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--config", "missing.yaml", "--images", "x"], "not found"),
        (["--config", CONFIG, "--images", "/nonexistent/*.png"], "no file matches"),
        (["--config", CONFIG, "--images", "x", "--variants", "0"], "at least 1"),
        (["--config", CONFIG, "--images", "x", "--set", "augment.ops=[{op: spin}]"], "unknown op 'spin'"),
    ],
)
def test_usage_errors(argv, message):
    with pytest.raises(UsageError, match=message):
        preview.run(argv)


def test_bad_image_is_a_usage_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(UsageError, match="bad.png"):
        preview.run(["--config", CONFIG, "--images", str(bad), "--output", str(tmp_path / "p.png")])


def test_exit_status_two_and_one_line(capsys):
    assert cli.main(["preview", "--config", CONFIG, "--images", "/nonexistent/*.png"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_records_show_their_targets_moving_with_the_pixels(tmp_path):
    """A TFRecord shard as --images: each record's boxes are drawn over its variants where its objects went."""
    from tests import shards
    from tests import targets_scene as scene

    shard = tmp_path / "od-00000-of-00001.tfrecord"
    shards.write(shard, [scene.od_api_record(b"one", with_mask=False)])
    out = tmp_path / "preview.png"
    flip = "augment.ops=[{op: hflip, p: 1.0}]"
    assert preview.run(["--config", CONFIG, "--set", flip, "--images", str(shard), "--variants", "1",
                        "--output", str(out), "--tile", str(scene.WIDTH)]) == 0
    sheet = np.asarray(Image.open(out).convert("RGB")).astype(int)
    cell, top = scene.WIDTH + 2 * preview.PAD, preview.PAD + (scene.WIDTH - scene.HEIGHT) // 2  # tiles are centred
    tiles = [sheet[top:top + scene.HEIGHT, c * cell + preview.PAD:c * cell + preview.PAD + scene.WIDTH] for c in range(2)]
    # the red object's box outline: on the source at its left edge (x=30), on the flipped variant at x=320-90=230
    outline = np.array(draw_colour(0))
    for tile, x in zip(tiles, (30, 230)):
        column = tile[22:68, x]
        assert np.abs(column - outline).sum(-1).max() < 40, x
    assert np.abs(tiles[1][22:68, 30] - outline).sum(-1).min() > 40  # and not where it was


def draw_colour(index):
    from aeops.draw import PALETTE

    return PALETTE[index]


def test_the_sheet_shows_each_variant_as_augment_draws_it_and_every_op_fires(tmp_path):
    """The grid is the images and variants ``aeops augment`` makes (its seed; key = SHA-256 of the file's bytes),
    captioned with their lineage; for these two images and three variants every registered op fires somewhere."""
    from aeops import codec, config, ops, schema

    paths = sample_paths()[:2]
    out = tmp_path / "preview.png"
    assert preview.run(["--config", CONFIG, "--images", *map(str, paths), "--variants", "3", "--output", str(out),
                        "--tile", "48"]) == 0
    cfg = config.load(config.PipelineConfig, CONFIG)
    pipeline = ops.build(cfg.augment.ops)
    rows, fired = [], set()
    for path in paths:
        data = path.read_bytes()
        image = codec.decode(data)
        row = [(image, f"{path.name} {image.shape[1]}x{image.shape[0]}")]
        for variant in (1, 2, 3):
            augmented, lineage = ops.augment(pipeline, image, cfg.seed, schema.image_key(data), variant)
            fired |= {entry["op"] for entry in lineage}
            row.append((augmented, f"#{variant} " + (" · ".join(map(preview.caption, lineage)) or "(no op fired)")))
        rows.append(row)
    assert fired == set(ops.names())
    np.testing.assert_array_equal(np.asarray(Image.open(out)), np.asarray(preview.render(rows, 48)))
