"""``aeops evaluate``: the table, the JSON, fixed noise, and bad input."""

from __future__ import annotations

import json

import numpy as np

from aeops import cli, codec, evaluate
from aeops.sample import data_dir


def _images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    astronaut = codec.decode((data_dir() / "astronaut.png").read_bytes())
    (folder / "a.png").write_bytes(codec.encode(astronaut[100:164, 150:230], "png"))
    (folder / "b.jpg").write_bytes(codec.encode(astronaut[300:360, 200:248], "jpeg"))
    return folder


def test_evaluate_prints_a_table_and_writes_json(tiny_model_dir, tmp_path, capsys):  # noqa: F811
    folder = _images(tmp_path)
    out = tmp_path / "eval.json"
    assert cli.main(["evaluate", "--model-dir", tiny_model_dir, "--images", str(folder / "*"),
                     "--sigma", "25", "50", "--crop", "48", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| 25 | model |" in printed and "| 50 | nlm |" in printed
    result = json.loads(out.read_text())
    assert result["images"] == ["a.png", "b.jpg"] and result["sizes"] == ["48x48"]
    methods = {(row["sigma"], row["method"]) for row in result["results"]}
    assert {(25.0, "noisy"), (25.0, "model"), (25.0, "nlm"), (50.0, "model")} <= methods
    rows = {(row["sigma"], row["method"]): row for row in result["results"]}
    assert rows[(25.0, "nlm")]["psnr"] > rows[(25.0, "noisy")]["psnr"] > rows[(50.0, "noisy")]["psnr"]
    assert rows[(25.0, "model")]["ms_per_image"] > 0
    assert set(rows[(25.0, "nlm")]["per_image"]) == {"a.png", "b.jpg"}


def test_noise_is_fixed_by_the_seed():
    image = np.full((16, 16, 3), 128, np.uint8)
    a, b = evaluate.add_noise(image, 25, 0, 3), evaluate.add_noise(image, 25, 0, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, evaluate.add_noise(image, 25, 1, 3))
    assert abs(float(np.std(a.astype(float))) - 25) < 3


def test_bad_input_exits_2(tmp_path, capsys):
    assert cli.main(["evaluate", "--images", str(tmp_path / "missing-*.png")]) == 2
    assert "matches no files" in capsys.readouterr().err
    assert cli.main(["evaluate", "--images", str(tmp_path), "--sigma", "0"]) == 2
    assert cli.main(["evaluate", "--model-dir", str(tmp_path), "--images", str(data_dir() / "coins.png")]) == 2
    assert "saved_model.pb" in capsys.readouterr().err
    (tmp_path / "tiny.png").write_bytes(codec.encode(np.zeros((5, 6, 3), np.uint8), "png"))
    assert cli.main(["evaluate", "--images", str(tmp_path / "tiny.png")]) == 2
    assert "is 6x5; evaluate needs images of at least 8x8" in capsys.readouterr().err
