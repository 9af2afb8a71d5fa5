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
