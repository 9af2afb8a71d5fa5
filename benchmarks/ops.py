"""Per-op speed of aeops against albumentations 2.0.8, single-threaded, on the same images, in one run.

    python benchmarks/ops.py [--seconds 0.5] [--repeats 3] [--write-readme]

For each registered op and each of a 256x256 and a 1024x768 crop of a natural photograph, both libraries
are timed in interleaved rounds; the best round of each counts (the least disturbed by other processes).
albumentations is timed as one transform called directly with ``p=1`` (it draws from a generator it holds).
aeops is timed two ways: the op alone, drawing from a generator it is handed (the like-for-like figure),
and per record through ``aeops.ops.augment``, which also derives that variant's generators from
(seed, key, variant) -- the price of reproducible, replayable variants, which albumentations does not pay.
``--write-readme`` rewrites the block between the ops-benchmark markers of README.md with this output.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402 - the thread limits must be set before numpy and OpenCV load
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import skimage.data  # noqa: E402

import aeops.ops  # noqa: E402
from readme import cpu, emit  # noqa: E402 - benchmarks/ is on sys.path when a benchmark runs

SIZES = ((256, 256), (768, 1024))  # (height, width)
REFLECT = cv2.BORDER_REFLECT_101

# op -> (aeops config entry, albumentations transform for an image of (height, width)), matched in effect.
CASES = {
    "hflip": ({"p": 1.0}, lambda hw: A.HorizontalFlip(p=1)),
    "vflip": ({"p": 1.0}, lambda hw: A.VerticalFlip(p=1)),
    "rotate": ({"angle": [-30, 30]}, lambda hw: A.Rotate(limit=(-30, 30), border_mode=REFLECT, p=1)),
    "translate": (
        {"x": [-0.1, 0.1], "y": [-0.1, 0.1]},
        lambda hw: A.Affine(translate_percent=(-0.1, 0.1), border_mode=REFLECT, p=1),
    ),
    "scale": ({"factor": [0.8, 1.2]}, lambda hw: A.Affine(scale=(0.8, 1.2), border_mode=REFLECT, p=1)),
    "crop": (
        {"size": [0.7, 0.9]},
        lambda hw: A.RandomSizedCrop(
            min_max_height=(int(0.7 * hw[0]), int(0.9 * hw[0])), size=hw, w2h_ratio=hw[1] / hw[0], p=1
        ),
    ),
    "random_resized_crop": ({"scale": [0.08, 1.0]}, lambda hw: A.RandomResizedCrop(size=hw, scale=(0.08, 1.0), p=1)),
    "brightness": (
        {"delta": [-0.2, 0.2]},
        lambda hw: A.RandomBrightnessContrast(brightness_limit=(-0.2, 0.2), contrast_limit=(0, 0), p=1),
    ),
    # ColorJitter's contrast is torchvision's, about the mean gray level as aeops' is; RandomBrightnessContrast's
    # stretches about 0 (v * factor), a cheaper and different operation.
    "contrast": (
        {"factor": [0.8, 1.2]},
        lambda hw: A.ColorJitter(brightness=(1, 1), contrast=(0.8, 1.2), saturation=(1, 1), hue=(0, 0), p=1),
    ),
    "saturation": (
        {"factor": [0.7, 1.3]},
        lambda hw: A.ColorJitter(brightness=(1, 1), contrast=(1, 1), saturation=(0.7, 1.3), hue=(0, 0), p=1),
    ),
    "hue": (
        {"shift": [-20, 20]},
        lambda hw: A.HueSaturationValue(hue_shift_limit=(-10, 10), sat_shift_limit=(0, 0), val_shift_limit=(0, 0), p=1),
    ),
    "gamma": ({"gamma": [0.8, 1.2]}, lambda hw: A.RandomGamma(gamma_limit=(80, 120), p=1)),
    "grayscale": ({}, lambda hw: A.ToGray(p=1)),
    "gaussian_blur": ({"sigma": [0.5, 1.5]}, lambda hw: A.GaussianBlur(blur_limit=0, sigma_limit=(0.5, 1.5), p=1)),
    "sharpen": ({"alpha": [0.2, 0.5]}, lambda hw: A.Sharpen(alpha=(0.2, 0.5), lightness=(1, 1), p=1)),
    "gaussian_noise": ({"sigma": [5, 25]}, lambda hw: A.GaussNoise(std_range=(5 / 255, 25 / 255), p=1)),
    "jpeg": ({"quality": [50, 95]}, lambda hw: A.ImageCompression(quality_range=(50, 95), p=1)),
    "cutout": (
        {"holes": [1, 4], "size": [0.05, 0.2]},
        lambda hw: A.CoarseDropout(
            num_holes_range=(1, 4), hole_height_range=(0.05, 0.2), hole_width_range=(0.05, 0.2), fill=0, p=1
        ),
    ),
    "random_erasing": ({"scale": [0.02, 0.33]}, lambda hw: A.Erasing(scale=(0.02, 0.33), fill=0, p=1)),
}


# Peers that do not compute the same thing, labelled in the table with the reason.
UNLIKE = {
    "gaussian_noise": "aeops adds integers drawn from a table of 65,536 normal quantiles (tails cut near 4.3 σ, "
                      "the noise rounded before it is added); albumentations draws float32 normal noise with `cv2.randn` "
                      "and adds it through albucore: the same distribution on uint8 up to rounding and the tails, "
                      "not the same computation",
}


def images() -> dict[tuple[int, int], np.ndarray]:
    """The same natural photograph for both libraries at each size (JPEG and noise speed depend on content)."""
    photo = skimage.data.chelsea()
    return {hw: np.ascontiguousarray(cv2.resize(photo, hw[::-1], interpolation=cv2.INTER_AREA)) for hw in SIZES}


def rate(step, seconds: float) -> float:
    """Images per second of ``step(i)`` over at least ``seconds``."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or count < 3:
        step(count)
        count += 1
    return count / elapsed


def measure(name: str, image: np.ndarray, seconds: float, repeats: int) -> tuple[float, float, float]:
    """Best images/s of (aeops op, aeops per record, albumentations)."""
    spec, albu = CASES[name]
    pipeline = aeops.ops.build([{"op": name, "p": 1.0, **spec}])
    op, rng = pipeline.steps[0], np.random.default_rng(0)
    transform = albu(image.shape[:2])
    steps = (
        lambda i: op(image, rng),
        lambda i: aeops.ops.augment(pipeline, image, 0, b"benchmark", i + 1),
        lambda i: transform(image=image)["image"],
    )
    best = [0.0, 0.0, 0.0]
    for _ in range(repeats):
        best = [max(b, rate(step, seconds)) for b, step in zip(best, steps)]
    return best[0], best[1], best[2]


def report(rows: list[tuple[str, str, float, float, float]], command: str) -> str:
    lines = [
        f"`{command}` on {cpu()}, Python {platform.python_version()}, one thread; aeops {aeops.__version__}, albumentations {A.__version__}, "
        f"OpenCV {cv2.__version__}, numpy {np.__version__}. Images per second; ratio = aeops / albumentations.",
        "",
        "| op | image | aeops op | aeops per record | albumentations | ratio op | ratio per record |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {op}{' †' if op in UNLIKE else ''} | {size} | {ours:,.0f} | {record:,.0f} | {theirs:,.0f} | "
        f"{ours / theirs:.2f} | {record / theirs:.2f} |"
        for op, size, ours, record, theirs in rows
    ]
    lines.append("")
    lines += [f"† {op}: {why}." for op, why in UNLIKE.items() if any(row[0] == op for row in rows)]
    for label, column in (("op", 2), ("per record", 3)):
        ratios = [row[column] / row[4] for row in rows]
        worst = min(range(len(rows)), key=ratios.__getitem__)
        lines.append(
            f"Ratio {label}: median {statistics.median(ratios):.2f}, lowest {ratios[worst]:.2f} "
            f"({rows[worst][0]}, {rows[worst][1]})."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one timed round")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds per library; the best counts")
    parser.add_argument("--ops", nargs="*", default=None, help="only these ops (default: every registered op)")
    parser.add_argument("--write-readme", action="store_true", help="rewrite README.md's ops-benchmark block")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    missing = sorted(set(aeops.ops.names()) - set(CASES))
    if missing:
        raise SystemExit(f"no albumentations peer declared for {', '.join(missing)}: add them to CASES")
    rows = []
    for hw, image in images().items():
        for name in args.ops or aeops.ops.names():
            ours, record, theirs = measure(name, image, args.seconds, args.repeats)
            rows.append((name, f"{hw[1]}x{hw[0]}", ours, record, theirs))
            print(f"{name:<20} {hw[1]:>4}x{hw[0]:<4} {ours:>9,.0f} {record:>9,.0f} {theirs:>9,.0f}", file=sys.stderr)
    command = "python benchmarks/ops.py " + " ".join(argv if argv is not None else sys.argv[1:])
    table = report(rows, command.strip())
    emit("ops-benchmark", table, args.write_readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
