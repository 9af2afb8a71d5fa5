"""``aeops evaluate``: how well a model restores corrupted images - and leaves clean ones alone - next to
classical denoisers, and at what cost.

Each image is evaluated under every input condition: as it is (``clean``: a restorer must not harm it),
Gaussian noise at each sigma (0-255 scale, a fixed seed: the same noise for every method) and saved as
JPEG at each quality (``jpeg-q90`` is a clean photograph as most are stored; ``jpeg-q20`` heavy blocking).
The model restores every condition blind (it is never told the corruption); scikit-image's non-local
means and, when the optional ``bm3d`` package is importable, CBM3D restore the Gaussian ones, given the
true sigma (which flatters them). Reported per (condition, method): mean and worst PSNR and mean SSIM
against the clean image, and milliseconds per image (wall clock, the first model call of each condition
excluded as warm-up) for each ``--threads`` setting; for the model, its GFLOPs per megapixel.

TensorFlow fixes its thread pools when it starts, so each ``--threads`` value is measured in a process of
its own (``tf.config.threading`` intra- and inter-op set before the model loads); the scores come from the
first. NLM and CBM3D run on one core either way.

NLM settings, per scikit-image's guidance for ``fast_mode``: ``h = 0.8 sigma``, 5x5 patches, search
distance 6 (a 13x13 window), the true ``sigma`` passed in. On a 256x256 crop of the astronaut at sigma 25
these gave 1 dB more than 7x7 patches at distance 11, in a third of the time.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from aeops import codec, storage
from aeops.cli import ArgumentParser
from aeops.errors import AeopsError, DecodeError, UsageError
from aeops.metrics import psnr, ssim
from aeops.model import PRECISIONS

SIGMAS = (15.0, 25.0, 50.0)
JPEG_QUALITIES = (90, 20)
THREADS = (0, 1)  # every core, then one thread
MIN_SIDE = 8  # CONTRACT §5: the signature takes sides from 8 (SSIM's 7x7 window fits too)
NLM = {"h": "0.8*sigma", "patch_size": 5, "patch_distance": 6, "fast_mode": True}


@dataclass(frozen=True)
class Condition:
    """One way the input reaches the restorer: ``clean``, ``gaussian`` at ``level`` = sigma, or ``jpeg`` at
    ``level`` = quality."""

    kind: str
    level: float | None = None

    @property
    def name(self) -> str:
        return "clean" if self.kind == "clean" else f"{'sigma-' if self.kind == 'gaussian' else 'jpeg-q'}{self.level:g}"

    def corrupt(self, image: np.ndarray, seed: int, index: int) -> np.ndarray:
        if self.kind == "gaussian":
            return add_noise(image, self.level, seed, index)
        if self.kind == "jpeg":
            return codec.decode(codec.encode(image, "jpeg", quality=int(self.level)))
        return image


def conditions(clean: bool, sigmas: list[float], qualities: list[int]) -> list[Condition]:
    return ([Condition("clean")] if clean else []) + [Condition("gaussian", s) for s in sigmas] + \
        [Condition("jpeg", q) for q in qualities]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="aeops evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", help="SavedModel directory (default: the shipped model)")
    parser.add_argument("--images", nargs="+", required=True, metavar="GLOB", help="image files, folders or globs")
    parser.add_argument("--sigma", nargs="*", type=float, default=list(SIGMAS), help="Gaussian noise std, 0-255 scale")
    parser.add_argument("--jpeg", nargs="*", type=int, default=list(JPEG_QUALITIES), metavar="QUALITY",
                        help="JPEG qualities to save the clean image at (default 90 20)")
    parser.add_argument("--clean", action=argparse.BooleanOptionalAction, default=True,
                        help="also restore the clean images themselves (default on)")
    parser.add_argument("--crop", type=int, default=0, help="evaluate the centre crop of this size (0 = whole image)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--threads", nargs="+", type=int, default=list(THREADS),
                        help="CPU threads for the model, one timing per value (0 = all; default 0 1)")
    parser.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True,
                        help="also restore with NLM and (when importable) CBM3D (default on)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="the model's convolutions in float32 or bfloat16 (on CPUs with AVX-512 BF16 / AMX)")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    if any(s <= 0 or s > 255 for s in args.sigma):
        raise UsageError(f"--sigma {args.sigma}: each sigma must be in (0, 255]")
    if any(q < 1 or q > 100 for q in args.jpeg):
        raise UsageError(f"--jpeg {args.jpeg}: each JPEG quality must be in 1..100")
    if not conditions(args.clean, args.sigma, args.jpeg):
        raise UsageError("nothing to evaluate: give --sigma or --jpeg values, or drop --no-clean")
    if any(t < 0 for t in args.threads) or len(set(args.threads)) < len(args.threads):
        raise UsageError(f"--threads {args.threads}: distinct counts >= 0 (0 = every core)")
    if args.crop < 0 or 0 < args.crop < 8:
        raise UsageError(f"--crop {args.crop}: use 0 (whole images) or a size of at least 8")
    return args


def load_images(patterns: list[str], crop: int) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 RGB) of every file the patterns match, centre-cropped to ``crop`` when given."""
    paths: list[str] = []
    for pattern in patterns:
        found = sorted(glob.glob(os.path.join(pattern, "*")) if os.path.isdir(pattern) else glob.glob(pattern))
        if not found and storage.is_remote(pattern):
            found = [p for p, _ in storage.match(pattern)]
        if not found:
            raise UsageError(f"--images {pattern!r} matches no files: pass image files, a folder or a glob")
        paths.extend(p for p in found if not os.path.isdir(p))
    images = []
    for path in paths:
        try:
            image = codec.decode(storage.read_bytes(path))
        except DecodeError as exc:
            raise UsageError(f"--images: {path!r} is not a readable image ({exc}); remove it from the list") from None
        if min(image.shape[:2]) < MIN_SIDE:
            raise UsageError(f"--images: {path!r} is {image.shape[1]}x{image.shape[0]}; evaluate needs images of "
                             f"at least {MIN_SIDE}x{MIN_SIDE} (the model's smallest input); remove it from the list")
        images.append((os.path.basename(path), centre_crop(image, crop) if crop else image))
    return images


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    top, left = max(0, (image.shape[0] - size) // 2), max(0, (image.shape[1] - size) // 2)
    return image[top : top + size, left : left + size]


def add_noise(image: np.ndarray, sigma: float, seed: int, index: int) -> np.ndarray:
    rng = np.random.default_rng([seed, int(round(sigma * 1000)), index])
    noisy = image.astype(np.float64) + rng.normal(0.0, sigma, image.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def model_method(model_dir: str | None, threads: int, precision: str = "float32") -> tuple[Callable, dict[str, Any]]:
    """The model's restore function, with TensorFlow held to ``threads`` (0 = its default, every core)
    before anything starts its thread pools, its convolutions in ``precision``."""
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    from aeops.model import load

    serve, metadata = load(model_dir, precision)

    def restore(corrupted: np.ndarray, condition: Condition) -> np.ndarray:
        return serve(images=tf.constant(corrupted[None]))["reconstruction"].numpy()[0]

    return restore, metadata


def model_gflops(metadata: dict[str, Any]) -> float | None:
    """GFLOPs per megapixel of the network ``aeops_model.json`` describes; ``None`` for a model it does not."""
    architecture = metadata.get("architecture", {})
    if architecture.get("builder") != "aeops.model.architecture.build_autoencoder":
        return None
    from aeops.model import builder_arguments
    from aeops.model.architecture import build_autoencoder, flops_per_pixel

    return flops_per_pixel(build_autoencoder(**builder_arguments(metadata))) / 1e3  # 1e6 px / 1e9


def tf_threads() -> list[int]:
    """TensorFlow's intra- and inter-op thread settings in this process (0 = its default: every core)."""
    import tensorflow as tf

    return [tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads()]


def nlm(noisy: np.ndarray, condition: Condition) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    s = condition.level / 255.0
    out = denoise_nl_means(noisy.astype(np.float32) / 255.0, h=0.8 * s, sigma=s, fast_mode=True,
                           patch_size=NLM["patch_size"], patch_distance=NLM["patch_distance"], channel_axis=-1)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def cbm3d_method() -> Callable | None:
    """CBM3D from the ``bm3d`` package when it is installed; never a dependency (its licence is non-commercial)."""
    try:
        import bm3d
    except ImportError:
        return None

    def cbm3d(noisy: np.ndarray, condition: Condition) -> np.ndarray:
        out = bm3d.bm3d_rgb(noisy.astype(np.float64) / 255.0, condition.level / 255.0)
        return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)

    return cbm3d


CLASSICAL = ("nlm", "cbm3d")  # told sigma: they apply to Gaussian noise only


def evaluate(images, conditions_: list[Condition], methods: dict[str, Callable | None], seed: int,
             threads: int = 0) -> list[dict[str, Any]]:
    """One row per (condition, method) that applies: mean and worst PSNR, mean SSIM, ms/image at
    ``threads``, and each image's scores; every method sees the same corrupted images."""
    rows = []
    for condition in conditions_:
        corrupted = [condition.corrupt(image, seed, i) for i, (_, image) in enumerate(images)]
        for name, method in methods.items():
            if name in CLASSICAL and condition.kind != "gaussian":
                continue
            scores, seconds = [], 0.0
            if name == "model" and corrupted:
                method(corrupted[0], condition)  # warm-up: graph and kernel set-up are not per-image costs
            for (_, clean), degraded in zip(images, corrupted):
                start = time.perf_counter()
                restored = degraded if method is None else method(degraded, condition)
                seconds += time.perf_counter() - start
                scores.append((psnr(clean, restored), ssim(clean, restored)))
            psnrs = [s[0] for s in scores]
            rows.append({"condition": condition.name, "kind": condition.kind, "level": condition.level,
                         "method": name, "psnr": float(np.mean(psnrs)), "psnr_min": float(np.min(psnrs)),
                         "ssim": float(np.mean([s[1] for s in scores])),
                         "ms_per_image": {} if method is None else
                         {thread_label(threads): 1000.0 * seconds / len(images)},
                         "per_image": {image_name: {"psnr": round(p, 3), "ssim": round(q, 4)}
                                       for (image_name, _), (p, q) in zip(images, scores)}})
    return rows


def thread_label(threads: int) -> str:
    return "all" if threads == 0 else str(threads)


def merge_timings(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The first run's rows, with every run's ``ms_per_image`` gathered into them."""
    rows = [dict(row, ms_per_image=dict(row["ms_per_image"])) for row in runs[0]]
    for other in runs[1:]:
        timings = {(r["condition"], r["method"]): r["ms_per_image"] for r in other}
        for row in rows:
            row["ms_per_image"].update(timings.get((row["condition"], row["method"]), {}))
    return rows


def table(rows: list[dict[str, Any]], gflops: float | None, threads: list[int]) -> str:
    labels = [thread_label(t) for t in threads]
    head = " | ".join(f"ms / image, {'every core' if t == 'all' else t + ' thread' + ('s' if t != '1' else '')}"
                      for t in labels)
    lines = [f"| input | method | PSNR (dB) | worst PSNR | SSIM | {head} | GFLOPs / MP |",
             "| --- | --- | ---: | ---: | ---: |" + " ---: |" * (len(labels) + 1)]
    for row in rows:
        times = " | ".join(f"{row['ms_per_image'][t]:,.0f}" if t in row["ms_per_image"] else "–" for t in labels)
        flops = f"{gflops:.1f}" if row["method"].startswith("model") and gflops else "–"
        lines.append(f"| {row['condition']} | {row['method']} | {decibels(row['psnr'])} | "
                     f"{decibels(row['psnr_min'])} | {row['ssim']:.4f} | {times} | {flops} |")
    return "\n".join(lines)


def decibels(value: float | None) -> str:
    """A PSNR for the table; ``None`` is how the JSON writes infinity (identical images)."""
    return "∞" if value is None or math.isinf(value) else f"{value:.2f}"


def finite(value: Any) -> Any:
    """JSON has no infinity: an identical image's PSNR is written as ``null`` (the table prints ∞)."""
    if isinstance(value, float) and math.isinf(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every row at one thread setting, in this process."""
    (threads,) = args.threads
    images = load_images(args.images, args.crop)
    restore, metadata = model_method(args.model_dir, threads, args.precision)
    methods: dict[str, Callable | None] = {"input": None, "model": restore}
    if args.peers:
        methods["nlm"] = nlm
    cbm3d = cbm3d_method() if args.peers else None
    if cbm3d is not None:
        methods["cbm3d"] = cbm3d
    rows = evaluate(images, conditions(args.clean, args.sigma, args.jpeg), methods, args.seed, threads)
    return {"images": [name for name, _ in images],
            "sizes": sorted({f"{image.shape[1]}x{image.shape[0]}" for _, image in images}),
            "crop": args.crop, "seed": args.seed, "threads": args.threads,
            "tf_threads": {thread_label(threads): tf_threads()},
            "model": {"dir": args.model_dir or "aeops/pretrained/denoiser (shipped)", "sha256": metadata.get("sha256"),
                      "gflops_per_megapixel": model_gflops(metadata), "precision": args.precision},
            "nlm": NLM, "cbm3d": cbm3d is not None, "results": rows}


def measure_apart(argv: list[str], threads: list[int]) -> dict[str, Any]:
    """:func:`measure` once per thread setting, each in a fresh ``aeops evaluate`` process; timings merged."""
    runs = []
    for count in threads:
        with tempfile.TemporaryDirectory(prefix="aeops-evaluate-") as tmp:
            out = os.path.join(tmp, "result.json")
            command = [sys.executable, "-m", "aeops", "evaluate", *argv, "--threads", str(count), "--json", out]
            child = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if child.returncode:  # its one line, e.g. a model that does not load, with its exit status
                message = (child.stderr.strip().splitlines() or ["aeops: no message"])[-1].removeprefix("aeops: ")
                raise (UsageError if child.returncode == 2 else AeopsError)(message)
            runs.append(json.loads(Path(out).read_text()))
    result = runs[0]
    result.update(threads=threads, results=merge_timings([run["results"] for run in runs]),
                  tf_threads={k: v for run in runs for k, v in run["tf_threads"].items()})
    return result


def without_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """``argv`` less the named options and their values (a child process is given its own)."""
    kept, skipping = [], False
    for arg in argv:
        if arg.startswith("--"):
            skipping = arg.split("=", 1)[0] in names
        if not skipping:
            kept.append(arg)
    return kept


def run(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if len(args.threads) == 1:
        result = measure(args)
    else:
        load_images(args.images, args.crop)  # bad images fail here, before any process starts
        result = measure_apart(without_options(argv, ("--threads", "--json")), args.threads)
    print(f"evaluate: {len(result['images'])} image(s) ({', '.join(result['sizes'])}), seed {result['seed']}, "
          f"model {result['model']['dir']} (sha256 {str(result['model']['sha256'])[:12]}, {result['model']['precision']}); "
          f"NLM h=0.8*sigma, patch 5, distance 6; "
          f"CBM3D {'on' if result['cbm3d'] else 'off (pip install bm3d to compare)'}")
    print(table(result["results"], result["model"]["gflops_per_megapixel"], result["threads"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(finite(result), indent=2) + "\n")
    return 0
