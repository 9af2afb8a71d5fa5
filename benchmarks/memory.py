"""Peak memory of ``aeops augment`` on one large image, and of the per-image steps that make it up.

    python benchmarks/memory.py [--side 4097] [--model-dir DIR] [--steps]

One ``--side`` x ``--side`` photograph (default 4097 x 4097 = 16.8 MP, under the 64 MP decode limit),
JPEG q90, in one shard, through the whole job (``configs/local.yaml``: the original and two augmented
variants, all restored by the model) in a fresh child process: its peak resident set size comes from
``os.wait4`` (that child's own rusage), with its wall time. ``--steps`` also runs each per-image step alone
in its own child (decode, the ops, SSIM, PSNR, the model) and prints what it adds over that child's
baseline, which is how the budget below was found. Memory is not timing: the figures hold on a shared
machine; the seconds do not (measure those on a quiet one).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aeops import codec, schema, tfrecord  # noqa: E402
from aeops.model import PRETRAINED  # noqa: E402
from aeops.sample import sample_paths  # noqa: E402

STEPS = ("decode", "augment", "ssim", "psnr", "model")


def photograph(side: int) -> np.ndarray:
    """A sample photograph scaled to ``side`` x ``side`` with a little noise: real texture, real JPEG size."""
    image = codec.decode(next(p for p in sample_paths() if p.name.startswith("chelsea")).read_bytes())
    image = cv2.resize(image, (side, side), interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(0).integers(-6, 7, image.shape, dtype=np.int16)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def write_shard(directory: Path, image: np.ndarray) -> Path:
    path = directory / "large-00000-of-00001.tfrecord"
    with open(path, "wb") as stream:
        tfrecord.write_records(stream, [schema.serialize({schema.IMAGE: schema.bytes_feature(codec.encode(image, "jpeg", 90))})])
    return path


def child(command: list[str]) -> tuple[float, float, str]:
    """(peak RSS in MiB, seconds, stdout) of ``command`` run to completion in a fresh process."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, cwd=ROOT,
                                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)})
        out = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)  # the child's own rusage: its peak RSS
        seconds = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status):
            err.seek(0)
            raise SystemExit(f"{' '.join(command)} failed:\n{err.read().decode(errors='replace')[-3000:]}")
    return usage.ru_maxrss / 1024, seconds, out.decode()


def step_main(step: str, shard: str, model_dir: str) -> None:
    """``--step``: one per-image step alone; prints how far it raises this process's peak RSS (MiB)."""
    import resource

    from aeops import metrics
    from aeops.config import PipelineConfig, load
    from aeops.ops import augment, build

    def peak() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    with open(shard, "rb") as stream:
        data = schema.parse(next(tfrecord.read_records(stream))).image
    if step == "decode":  # the baseline holds the JPEG bytes only
        before = peak()
        codec.decode(data)
        print(f"{peak() - before:.0f}")
        return
    # The other steps start from a process that holds the decoded image and a second, different one.
    image = codec.decode(data)
    other = np.ascontiguousarray(image[:, ::-1])
    run = {"ssim": lambda: metrics.ssim(image, other), "psnr": lambda: metrics.psnr(image, other)}
    if step == "augment":
        ops = build(load(PipelineConfig, str(ROOT / "configs/local.yaml"), []).augment.ops)
        run["augment"] = lambda: [augment(ops, image, 1234, b"key", variant) for variant in (1, 2)]
    if step == "model":
        from aeops.inference import ImageRestorationHandler, Restorable

        handler = ImageRestorationHandler(model_dir)
        model = handler.load_model()
        handler.run_inference([Restorable(image[:64, :64])], model)  # trace and warm up on a small image
        run["model"] = lambda: handler.run_inference([Restorable(image)], model)
    before = peak()
    run[step]()
    print(f"{peak() - before:.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=4097, help="image height and width (default 4097)")
    parser.add_argument("--model-dir", default=str(PRETRAINED), help="SavedModel (default: the shipped model)")
    parser.add_argument("--steps", action="store_true", help="also measure each per-image step alone")
    parser.add_argument("--step", nargs=2, metavar=("STEP", "SHARD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        step_main(args.step[0], args.step[1], args.model_dir)
        return 0
    with tempfile.TemporaryDirectory(prefix="aeops-memory-") as work:
        shard = write_shard(Path(work), photograph(args.side))
        megapixels = args.side * args.side / 1e6
        print(f"one {args.side}x{args.side} image ({megapixels:.1f} MP, JPEG q90 {shard.stat().st_size / 2**20:.1f} MiB), "
              f"model {args.model_dir}")
        if args.steps:
            for step in STEPS:
                _, _, out = child([sys.executable, __file__, "--step", step, str(shard), "--model-dir", args.model_dir])
                print(f"  {step:<8} raises its process's peak RSS by {float(out.split()[-1]):.0f} MiB")
        command = [sys.executable, "-m", "aeops", "augment", "--config", "configs/local.yaml", "--input", str(shard),
                   "--output", str(Path(work) / "out"), "--model-dir", args.model_dir]
        rss, seconds, _ = child(command)
        print(f"  augment  peak RSS {rss:.0f} MiB ({rss / 1024:.2f} GiB), {seconds:.0f} s wall "
              "(original + 2 variants, all restored; configs/local.yaml)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
