"""Restoration quality, harm to clean images and speed of a denoiser against non-local means and CBM3D on
held-out photographs.

    python benchmarks/denoise.py [--model-dir DIR] [--images GLOB ...] [--write-readme]

Held-out set (default): the 20 photographs of ``configs/heldout.csv`` (``docs/heldout.md``), from Debian
packages reserved for evaluation that no aeops model trains on - ``mate-backgrounds``,
``plasma-workspace-wallpapers``, and scikit-learn's ``china.jpg``, ``flower.jpg`` and matplotlib's
``grace_hopper.jpg`` - fetched, verified and downscaled by :mod:`aeops.heldout` into ``build/heldout`` on first
use; one centre crop of 256x256 each.

One ``aeops evaluate`` run measures every row: the clean images, clean as JPEG q90, Gaussian sigma 15, 25
and 50, JPEG q20; PSNR (mean and worst) and SSIM; milliseconds per image with every core and held to one
thread (each in its own process, TensorFlow's intra- and inter-op threads set to 1 before the model loads),
and the model's GFLOPs per megapixel. CBM3D rows appear when the optional ``bm3d`` package is importable
(never a dependency: its licence is non-commercial).
``--write-readme`` rewrites the block between the denoise-benchmark markers of README.md with this output.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from readme import cpu, emit  # benchmarks/ is on sys.path when a benchmark runs

from aeops import heldout
from aeops.evaluate import decibels, table
from aeops.model import cpu_has_bfloat16
from aeops.training_data import ManifestError

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = ROOT / "build" / "heldout"
CROP = 256
FOCUS = 25.0  # the sigma the targets are set at
BFLOAT16 = "model, bfloat16"


def evaluate(images: list[str], model_dir: str | None, *options: str) -> dict:
    """The ``aeops evaluate`` result on the images (its ``--json``)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "eval.json"
        command = [sys.executable, "-m", "aeops", "evaluate", "--images", *images, "--crop", str(CROP),
                   "--json", str(result), *options]
        if model_dir:
            command += ["--model-dir", model_dir]
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        return json.loads(result.read_text())


def with_bfloat16(result: dict, bfloat16: dict) -> None:
    """``bfloat16``'s model rows, as method ``model, bfloat16``, after the model rows of ``result``."""
    extra = {row["condition"]: dict(row, method=BFLOAT16) for row in bfloat16["results"] if row["method"] == "model"}
    rows = []
    for row in result["results"]:
        rows.append(row)
        if row["method"] == "model" and row["condition"] in extra:
            rows.append(extra[row["condition"]])
    result["results"] = rows


def report(result: dict) -> str:
    rows = {(row["condition"], row["method"]): row for row in result["results"]}
    focus = f"sigma-{FOCUS:g}"
    lines = [f"Measured by `python benchmarks/denoise.py --write-readme` on {datetime.now(timezone.utc):%Y-%m-%d}, "
             f"{cpu()}, {os.cpu_count()} cores; model sha256 {str(result['model']['sha256'])[:12]}; "
             f"{len(result['images'])} held-out images ({', '.join(result['images'])}), centre {CROP}x{CROP} crops, "
             f"noise seed {result['seed']}.", "",
             table(result["results"], result["model"]["gflops_per_megapixel"], result["threads"]), ""]
    model, nlm = rows[(focus, "model")], rows[(focus, "nlm")]

    def ratio(a: dict, b: dict, threads: str) -> str:
        return f"{a['ms_per_image'][threads] / b['ms_per_image'][threads]:.2f}×"

    lines.append(f"At σ = {FOCUS:g}: model − NLM = **{model['psnr'] - nlm['psnr']:+.2f} dB**, the model's time "
                 f"**{ratio(model, nlm, 'all')}** NLM's with every core and "
                 f"**{ratio(model, nlm, '1')}** on one thread.")
    if (focus, "cbm3d") in rows:
        cbm3d = rows[(focus, "cbm3d")]
        lines[-1] += (f" Model − CBM3D = **{model['psnr'] - cbm3d['psnr']:+.2f} dB**, "
                      f"**{ratio(cbm3d, model, '1')}** faster on one thread.")
    if (focus, BFLOAT16) in rows:
        fast = rows[(focus, BFLOAT16)]
        lines.append(f"Served in bfloat16 (`--precision bfloat16`): **{fast['psnr'] - model['psnr']:+.2f} dB** against "
                     f"float32 at σ = {FOCUS:g}, its time **{ratio(fast, nlm, 'all')}** NLM's with every core and "
                     f"**{ratio(fast, nlm, '1')}** on one thread.")
    clean, q90, q90_input = rows[("clean", "model")], rows[("jpeg-q90", "model")], rows[("jpeg-q90", "input")]
    unchanged = sum(score["psnr"] is None for score in clean["per_image"].values())  # JSON null: identical
    lines.append(f"Clean images through the model: **{decibels(clean['psnr'])} dB** mean, "
                 f"**{decibels(clean['psnr_min'])} dB** worst (PSNR against themselves; {unchanged} of "
                 f"{len(clean['per_image'])} returned bit for bit); clean as JPEG q90: "
                 f"input {decibels(q90_input['psnr'])} dB, model output **{decibels(q90['psnr'])} dB**.")
    methods = [m for m in ("input", "model", "nlm", "cbm3d") if (focus, m) in rows]
    lines += ["", f"PSNR per image at σ = {FOCUS:g} (dB):", "",
              "| image | " + " | ".join(methods) + " |", "| --- |" + " ---: |" * len(methods)]
    for image in result["images"]:
        cells = [f"{rows[(focus, m)]['per_image'][image]['psnr']:.2f}" for m in methods]
        lines.append(f"| {image} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="SavedModel directory (default: the shipped model)")
    parser.add_argument("--images", nargs="+", help="image files or globs (default: the held-out set)")
    parser.add_argument("--bfloat16", action=argparse.BooleanOptionalAction, default=cpu_has_bfloat16(),
                        help="also time the model served in bfloat16 (default: on CPUs with bfloat16 units)")
    parser.add_argument("--write-readme", action="store_true", help="rewrite README.md's denoise-benchmark block")
    args = parser.parse_args(argv)
    try:
        images = args.images or [str(path) for path in heldout.fetch(HELDOUT)]
    except (ManifestError, subprocess.CalledProcessError, OSError) as exc:
        print(f"denoise: held-out photographs: {exc}", file=sys.stderr)
        return 1
    result = evaluate(images, args.model_dir)
    if args.bfloat16:
        with_bfloat16(result, evaluate(images, args.model_dir, "--precision", "bfloat16", "--no-peers"))
    emit("denoise-benchmark", report(result), args.write_readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
