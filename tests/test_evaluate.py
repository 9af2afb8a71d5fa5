"""``aeops evaluate``: the table, the JSON, fixed noise, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from aeops import cli, codec, evaluate
from aeops.metrics import psnr
from aeops.model import cpu_has_bfloat16
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
                     "--sigma", "25", "50", "--crop", "48", "--threads", "0", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| sigma-25 | model |" in printed and "| sigma-50 | nlm |" in printed
    assert "| clean | input | ∞ | ∞ | 1.0000 |" in printed
    result = json.loads(out.read_text())
    assert result["images"] == ["a.png", "b.jpg"] and result["sizes"] == ["48x48"]
    rows = {(row["condition"], row["method"]): row for row in result["results"]}
    assert list(rows) == [("clean", "input"), ("clean", "model"),
                          ("sigma-25", "input"), ("sigma-25", "model"), ("sigma-25", "nlm"),
                          ("sigma-50", "input"), ("sigma-50", "model"), ("sigma-50", "nlm"),
                          ("jpeg-q90", "input"), ("jpeg-q90", "model"), ("jpeg-q20", "input"), ("jpeg-q20", "model")]
    assert rows[("sigma-25", "nlm")]["psnr"] > rows[("sigma-25", "input")]["psnr"] > rows[("sigma-50", "input")]["psnr"]
    assert rows[("clean", "input")]["psnr"] is None  # identical: infinite PSNR, null in JSON
    assert rows[("jpeg-q90", "input")]["psnr"] > rows[("jpeg-q20", "input")]["psnr"] > 20
    model = rows[("sigma-25", "model")]
    assert model["ms_per_image"]["all"] > 0 and model["psnr_min"] <= model["psnr"]
    assert rows[("sigma-25", "input")]["ms_per_image"] == {}
    assert set(rows[("sigma-25", "nlm")]["per_image"]) == {"a.png", "b.jpg"}
    assert list(result["tf_threads"]) == ["all"]  # one setting: measured in this process
    assert result["model"]["gflops_per_megapixel"] > 0


def test_each_thread_setting_is_timed_in_a_process_of_its_own(tiny_model_dir, tmp_path):  # noqa: F811
    out = tmp_path / "eval.json"
    image = str(_images(tmp_path) / "a.png")
    assert cli.main(["evaluate", "--model-dir", tiny_model_dir, "--images", image, "--sigma", "25", "--jpeg",
                     "--no-clean", "--threads", "0", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["threads"] == [0, 1] and result["tf_threads"] == {"all": [0, 0], "1": [1, 1]}
    rows = {(row["condition"], row["method"]): row for row in result["results"]}
    assert set(rows) == {("sigma-25", "input"), ("sigma-25", "model"), ("sigma-25", "nlm")}
    for method in ("model", "nlm"):
        assert set(rows[("sigma-25", method)]["ms_per_image"]) == {"all", "1"}


def test_conditions_corrupt_as_named():
    clean = codec.decode((data_dir() / "astronaut.png").read_bytes())[100:164, 150:230]
    assert evaluate.Condition("clean").corrupt(clean, 0, 0) is clean
    np.testing.assert_array_equal(evaluate.Condition("gaussian", 25).corrupt(clean, 0, 1),
                                  evaluate.add_noise(clean, 25, 0, 1))
    q90, q20 = (evaluate.Condition("jpeg", q).corrupt(clean, 0, 0) for q in (90, 20))
    assert q90.shape == clean.shape and 30 < psnr(clean, q90) < 50 and psnr(clean, q20) < psnr(clean, q90)
    names = [c.name for c in evaluate.conditions(True, [15.0, 25.0], [90, 20])]
    assert names == ["clean", "sigma-15", "sigma-25", "jpeg-q90", "jpeg-q20"]


def test_gflops_count_every_convolution():
    from aeops.model.architecture import build_autoencoder, flops_per_pixel

    # width 8, depth 1, one block: multiply-adds per input pixel of each convolution (4 input planes: RGB + noise)
    macs = 9 * 4 * 8 + 9 * 8 * 8 + 4 * 8 * 16 / 4 + 9 * 16 * 16 / 4 + 4 * 16 * 8 / 4 + 9 * 8 * 8 + 9 * 8 * 3
    flops = flops_per_pixel(build_autoencoder(width=8, depth=1, blocks=1, residual=False), side=32)
    assert 2 * macs <= flops <= 2 * macs * 1.05  # biases and the residual add are the rest


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
    assert cli.main(["evaluate", "--images", str(tmp_path), "--jpeg", "0"]) == 2
    assert cli.main(["evaluate", "--images", str(tmp_path), "--no-clean", "--sigma", "--jpeg"]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    assert cli.main(["evaluate", "--images", str(tmp_path), "--threads", "1", "1"]) == 2
    assert cli.main(["evaluate", "--model-dir", str(tmp_path), "--images", str(data_dir() / "coins.png")]) == 2
    assert "saved_model.pb" in capsys.readouterr().err
    (tmp_path / "tiny.png").write_bytes(codec.encode(np.zeros((5, 6, 3), np.uint8), "png"))
    assert cli.main(["evaluate", "--images", str(tmp_path / "tiny.png")]) == 2
    assert "is 6x5; evaluate needs images of at least 8x8" in capsys.readouterr().err


def test_bfloat16_serves_the_same_model_at_the_same_quality(tiny_model_dir, tmp_path):  # noqa: F811
    """Each precision in a process of its own (the rewrite is a process-wide option): the scores agree to a
    few hundredths of a dB, and on a CPU with bfloat16 units the rewrite really ran (the numbers moved)."""
    image = str(_images(tmp_path) / "a.png")
    rows = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / f"{precision}.json"
        subprocess.run([sys.executable, "-m", "aeops", "evaluate", "--model-dir", tiny_model_dir, "--images", image,
                        "--sigma", "25", "--jpeg", "--no-clean", "--threads", "0", "--precision", precision,
                        *(["--no-peers"] if precision == "bfloat16" else []), "--json", str(out)],
                       check=True, capture_output=True)
        result = json.loads(out.read_text())
        assert result["model"]["precision"] == precision
        assert ("nlm" in {r["method"] for r in result["results"]}) == (precision == "float32")  # --no-peers
        rows[precision] = next(r for r in result["results"] if r["method"] == "model")
    assert abs(rows["bfloat16"]["psnr"] - rows["float32"]["psnr"]) < 0.05
    if cpu_has_bfloat16():
        assert rows["bfloat16"]["psnr"] != rows["float32"]["psnr"]
