"""End-to-end images/s of the aeops pipeline against a hand-written tf.data script and the model alone.

    python benchmarks/pipeline.py [--images 1000] [--memory 1000 5000] [--model-dir DIR] [--write-readme]

One generated data set (crops of scikit-image's sample photographs at six sizes from 64x64 to 200x300,
JPEG, in TFRecord shards), one op list, one model, the contenders run back to back in this process:

- **aeops**: ``pipelines.augment.run`` on the DirectRunner, wall clock from the call to its return
  (pipeline construction, model load, report and manifest included); outputs counted from the manifest.
- **tf.data**: what a user would write instead on one machine: ``TFRecordDataset`` -> parse ->
  ``tf.io.decode_image`` -> the same aeops ops through ``tf.numpy_function`` (same seed, key and variant, so
  the same draws) -> ``group_by_window`` on the same padded bucket shapes, batches of the same size ->
  the same SavedModel inside the dataset -> crop back -> ``tf.io.encode_jpeg`` -> ``TFRecordWriter``.
- **model alone** (the ceiling): the serving function on pre-built uint8 batches of the padded bucket shapes
  both contenders feed the model (each image's height and width rounded up to ``pad_multiple``), in the data
  set's proportions: the same model work, without I/O, decode, ops or encode. A second row, **model alone,
  unpadded**, runs the images' own shapes, so the price of padding is reported apart from the pipelines'.
- **aeops, no model** (``inference.enabled=false``) and **aeops, model calls in series**
  (``inference.overlap=false``: what overlapping the model calls with the other stages gives).

Peak memory: the aeops pipeline in a fresh child process per size (``--memory``), its maximum resident set
read from ``os.wait4`` (that child's own rusage). Streaming means the largest ~= the smallest.
``--write-readme`` rewrites the block between the pipeline-benchmark markers of README.md with this output.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402 - TensorFlow reads its log level at import
import contextlib  # noqa: E402
import glob  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aeops  # noqa: E402
from aeops import codec, config, schema, tfrecord  # noqa: E402
from aeops.config import PipelineConfig  # noqa: E402
from aeops.inference import bucket_shape  # noqa: E402
from aeops.model import PRETRAINED  # noqa: E402
from aeops.sample import sample_paths  # noqa: E402
from readme import cpu, emit  # noqa: E402 - benchmarks/ is on sys.path when a benchmark runs

CONFIG = ROOT / "configs" / "local.yaml"
OVERRIDES = ["augment.variants=1", "augment.keep_original=false"]
NO_MODEL = "inference.enabled=false"
IN_SERIES = "inference.overlap=false"  # the model calls in the bundle's thread, one after the other stages
# (height, width) of the generated images: mixed sizes, most of them not multiples of the 32 px bucket.
SHAPES = ((64, 64), (72, 100), (96, 128), (128, 128), (150, 200), (200, 300))
# Smaller sizes for the 5k memory runs when the full sizes would take too long (--memory-small).
SMALL_SHAPES = ((48, 48), (56, 72), (64, 64), (72, 100))
SHARDS = 8
SEED = 20240601


# --- the data set --------------------------------------------------------------------------------


def photographs() -> list[np.ndarray]:
    return [codec.decode(path.read_bytes()) for path in sample_paths()]


def generate(directory: Path, count: int, shapes=SHAPES, shards: int = SHARDS) -> str:
    """``count`` JPEG records in ``shards`` TFRecord shards (ingest's layout); returns their glob.

    Image ``i`` is a random crop (seeded by ``i``) of photograph ``i mod 17``, resized to shape
    ``(i // 17) mod len(shapes)``: every size gets every photograph, and 5k images are 5k different crops.
    """
    photos = photographs()
    directory.mkdir(parents=True, exist_ok=True)
    buckets: list[list[bytes]] = [[] for _ in range(shards)]
    for i in range(count):
        photo = photos[i % len(photos)]
        height, width = shapes[(i // len(photos)) % len(shapes)]
        rng = np.random.default_rng([SEED, i])
        scale = rng.uniform(0.3, 1.0)
        aspect = width / height
        ch = int(min(photo.shape[0], photo.shape[1] / aspect) * scale)
        cw = max(int(ch * aspect), 1)
        top = int(rng.integers(0, photo.shape[0] - ch + 1))
        left = int(rng.integers(0, photo.shape[1] - cw + 1))
        crop = cv2.resize(photo[top : top + ch, left : left + cw], (width, height), interpolation=cv2.INTER_AREA)
        data = codec.encode(np.ascontiguousarray(crop), "jpeg", 90)
        key = schema.image_key(data)
        features = schema.image_features(data, "jpeg", height, width)
        features[schema.KEY] = schema.bytes_feature(key)
        features[schema.FILENAME] = schema.bytes_feature(f"bench-{i:06d}.jpg".encode())
        buckets[int(key[:16], 16) % shards].append(schema.serialize(features))
    for index, records in enumerate(buckets):
        with open(directory / f"bench-{index:05d}-of-{shards:05d}.tfrecord", "wb") as stream:
            tfrecord.write_records(stream, records)
    return str(directory / f"bench-*-of-{shards:05d}.tfrecord")


# --- contender 1: aeops ----------------------------------------------------------------------------


def aeops_argv(pattern: str, root: str, model_dir: str, *overrides: str) -> list[str]:
    argv = ["--config", str(CONFIG), "--input", pattern, "--output", root, "--model-dir", model_dir]
    for item in (*OVERRIDES, *overrides):
        argv += ["--set", item]
    return argv


def run_aeops(pattern: str, root: str, model_dir: str, *overrides: str) -> dict:
    """Wall clock of ``pipelines.augment.run`` and what its manifest says."""
    from pipelines import augment

    log = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        status = augment.run(aeops_argv(pattern, root, model_dir, *overrides))
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"aeops augment exited {status}:\n{log.getvalue()}")
    version = Path(root, "LATEST").read_text().strip()
    manifest = json.loads(Path(root, version, "manifest.json").read_text())
    return {"seconds": seconds, "outputs": manifest["records_out"], "manifest": manifest}


# --- contender (a): the tf.data script -----------------------------------------------------------


def run_tfdata(pattern: str, output: str, model_dir: str, cfg: PipelineConfig) -> dict:
    """The single-machine script a user would write for the same work. Returns its wall clock and count."""
    import tensorflow as tf

    import aeops.ops

    started = time.perf_counter()
    pipeline = aeops.ops.build(cfg.augment.ops)
    model = tf.saved_model.load(model_dir)  # held: the signature alone does not keep the variables alive
    serve = model.signatures["serving_default"]
    multiple, batch_size, seed = cfg.inference.pad_multiple, cfg.inference.max_batch_size, cfg.seed
    quality = cfg.encode.quality
    spec = {
        schema.IMAGE: tf.io.FixedLenFeature([], tf.string),
        schema.KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }

    def parse(serialized):
        features = tf.io.parse_single_example(serialized, spec)
        image = tf.io.decode_image(features[schema.IMAGE], channels=3, expand_animations=False)
        return image, features[schema.KEY]

    def augment(image, key):
        pixels = tf.numpy_function(
            lambda array, k: aeops.ops.augment(pipeline, array, seed, bytes(k), 1)[0], [image, key], tf.uint8
        )
        return tf.ensure_shape(pixels, [None, None, 3]), key

    def pad(image, key):
        shape = tf.shape(image)
        height = (shape[0] + multiple - 1) // multiple * multiple
        width = (shape[1] + multiple - 1) // multiple * multiple
        padded = tf.pad(image, [[0, height - shape[0]], [0, width - shape[1]], [0, 0]], mode="SYMMETRIC")
        return padded, shape[0], shape[1], key

    def bucket(padded, height, width, key):
        shape = tf.cast(tf.shape(padded), tf.int64)
        return shape[0] * 100_000 + shape[1]

    def restore(padded, heights, widths, keys):
        return serve(images=padded)["reconstruction"], heights, widths, keys

    def encode(restored, height, width, key):
        return tf.io.encode_jpeg(restored[:height, :width], quality=quality), height, width, key

    autotune = tf.data.AUTOTUNE
    dataset = (
        tf.data.TFRecordDataset(sorted(glob.glob(pattern)), num_parallel_reads=autotune)
        .map(parse, num_parallel_calls=autotune)
        .map(augment, num_parallel_calls=autotune)
        .map(pad, num_parallel_calls=autotune)
        .group_by_window(bucket, lambda _, window: window.batch(batch_size), window_size=batch_size)
        .map(restore)
        .unbatch()
        .map(encode, num_parallel_calls=autotune)
        .prefetch(autotune)
    )
    count = 0
    with tf.io.TFRecordWriter(output) as writer:
        for data, height, width, key in dataset.as_numpy_iterator():
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        schema.IMAGE: _bytes(data),
                        schema.FORMAT: _bytes(b"jpeg"),
                        schema.HEIGHT: _int(height),
                        schema.WIDTH: _int(width),
                        schema.SOURCE_KEY: _bytes(key),
                        schema.VARIANT: _int(1),
                    }
                )
            )
            writer.write(example.SerializeToString())
            count += 1
    return {"seconds": time.perf_counter() - started, "outputs": count}


def _bytes(value: bytes):
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int):
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


# --- contender (b): the model alone ----------------------------------------------------------------


def run_ceiling(model_dir: str, shapes: list[tuple[int, int]], batch_size: int, pad_multiple: int | None) -> dict:
    """The serving function on pre-built uint8 batches: one batch list per shape, as many images as the set.

    With ``pad_multiple`` each shape is first rounded up to its bucket shape, as aeops and the tf.data script
    pad before the model: the same pixels through the model as theirs."""
    from aeops.model import load

    serve, _ = load(model_dir)
    if pad_multiple:
        shapes = [bucket_shape(shape, pad_multiple) for shape in shapes]
    rng = np.random.default_rng(SEED)
    batches = []
    for shape in sorted(set(shapes)):
        n = shapes.count(shape)
        for start in range(0, n, batch_size):
            size = min(batch_size, n - start)
            batches.append(rng.integers(0, 256, (size, *shape, 3), dtype=np.uint8))
    for batch in {b.shape: b for b in batches}.values():
        serve(images=batch)  # each batch shape once before the clock: oneDNN's set-up is not the model's speed
    started = time.perf_counter()
    for batch in batches:
        serve(images=batch)["reconstruction"].numpy()
    return {"seconds": time.perf_counter() - started, "outputs": len(shapes)}


# --- peak memory -----------------------------------------------------------------------------------


def child_main(pattern: str, root: str, model_dir: str) -> int:
    """``--child``: one aeops run in this fresh process; the parent reads its peak RSS."""
    from pipelines import augment

    with contextlib.redirect_stdout(sys.stderr):
        return augment.run(aeops_argv(pattern, root, model_dir))


def peak_memory(pattern: str, root: str, model_dir: str) -> dict:
    started = time.perf_counter()
    command = [sys.executable, __file__, "--child", pattern, root, "--model-dir", model_dir]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"memory run failed ({process.returncode}):\n{err.decode(errors='replace')[-3000:]}")
    version = Path(root, "LATEST").read_text().strip()
    manifest = json.loads(Path(root, version, "manifest.json").read_text())
    return {"max_rss_mib": usage.ru_maxrss / 1024, "seconds": seconds, "outputs": manifest["records_out"]}


# --- the worker curve (no model) ------------------------------------------------------------------


RUNNERS = {
    "in memory": [],
    "1 worker": ["--direct_running_mode=multi_processing", "--direct_num_workers=1"],
    "2 workers": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
}


def whole_command(pattern: str, root: str, model_dir: str, runner: list[str]) -> float:
    """Seconds of ``python -m aeops augment`` without the model, interpreter start and imports included."""
    command = [sys.executable, "-m", "aeops", "augment", *aeops_argv(pattern, root, model_dir, NO_MODEL), *runner]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def worker_curve(work: Path, counts: list[int], model_dir: str) -> list[dict]:
    """The no-model job's whole command per runner mode and image count (the benchmark's sizes)."""
    curve = []
    for count in counts:
        data = generate(work / f"curve-{count}", count)
        row = {"images": count}
        for name, runner in RUNNERS.items():
            row[name] = whole_command(data, str(work / f"curve-{count}-{name.replace(' ', '-')}"), model_dir, runner)
            print(f"curve    {count} images, {name}: {row[name]:.1f} s", file=sys.stderr)
        curve.append(row)
        shutil.rmtree(work / f"curve-{count}", ignore_errors=True)
    return curve


def curve_table(curve: list[dict]) -> list[str]:
    names = list(RUNNERS)
    lines = [
        "",
        f"Without the model (`--set {NO_MODEL}`), the whole `python -m aeops augment` command (interpreter start "
        "and imports included) per DirectRunner mode; speed-up = in memory / 2 workers (goal >= 1.5x at 20,000):",
        "",
        "| images | " + " | ".join(f"{n} (s)" for n in names) + " | speed-up, 2 workers |",
        "| ---: | " + " | ".join("---:" for _ in names) + " | ---: |",
    ]
    lines += [f"| {row['images']:,} | " + " | ".join(f"{row[n]:.1f}" for n in names) +
              f" | {row['in memory'] / row['2 workers']:.2f}x |" for row in curve]
    return lines


# --- report ----------------------------------------------------------------------------------------


def machine() -> str:
    return f"{cpu()}, {os.cpu_count()} cores (shared with other jobs), Python {platform.python_version()}"


def versions() -> str:
    import apache_beam
    import tensorflow as tf

    return f"aeops {aeops.__version__}, Beam {apache_beam.__version__}, TensorFlow {tf.__version__}"


def header(command: str, setup: dict) -> str:
    return f"`{command}`, {setup['date']}, on {machine()}; {versions()}; load average {setup['load']} at the start."


def report(command: str, setup: dict, results: dict[str, list[dict]], memory: list[dict]) -> str:
    lines = [header(command, setup), *contenders_table(setup, results)]
    if memory:
        lines += [
            "",
            f"Peak memory of the aeops pipeline, one fresh process per size ({memory[0]['sizes']}):",
            "",
            "| images | seconds | images/s | peak RSS (MiB) |",
            "| ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {m['images']:,} | {m['seconds']:.1f} | {m['outputs'] / m['seconds']:.1f} | {m['max_rss_mib']:,.0f} |"
            for m in memory
        ]
        growth = memory[-1]["max_rss_mib"] / memory[0]["max_rss_mib"]
        lines += ["", f"Peak RSS at {memory[-1]['images']:,} / at {memory[0]['images']:,} images: **{growth:.2f}x**."]
    return "\n".join(lines)


def contenders_table(setup: dict, results: dict[str, list[dict]]) -> list[str]:
    rounds = len(results["aeops"])
    seconds = {name: float(np.median([r["seconds"] for r in runs])) for name, runs in results.items()}
    rate = {name: runs[0]["outputs"] / seconds[name] for name, runs in results.items()}

    def ratio(name: str) -> float:
        """Median over rounds of aeops' images/s over ``name``'s, each round's pair measured close together."""
        return float(np.median([b["seconds"] / a["seconds"] for a, b in zip(results["aeops"], results[name])]))

    metrics = results["aeops"][0]["manifest"]["metrics"]
    lines = [
        f"The contenders ran in one process, {rounds} rounds, the order rotated each round, under the same thread "
        f"settings (TensorFlow's and OpenCV's defaults); seconds are each contender's median, ratios the median "
        f"of each round's ratio.",
        "",
        f"Data: {setup['images']} JPEG images in {SHARDS} TFRecord shards, sizes {setup['sizes']} (HxW, equal shares). "
        f"Work per image: decode, 1 augmented variant (`{setup['config']}` ops, `{' '.join('--set ' + o for o in OVERRIDES)}`), "
        f"the model `{setup['model']}` ({setup['model_note']}), JPEG q{setup['quality']}, write. Batches of "
        f"{setup['batch_size']} images, padded to multiples of {setup['pad_multiple']} px; "
        f"aeops: DirectRunner (in process, default options), {setup['batching']}; tf.data: AUTOTUNE parallel maps, "
        f"the ops through `tf.numpy_function`, `group_by_window` on the padded shape, the model inside the dataset.",
        "",
        "| contender | images | seconds (median) | each round | images/s | aeops ÷ this (median) |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for name, runs in results.items():
        each = " / ".join(f"{r['seconds']:.1f}" for r in runs)
        lines.append(f"| {name} | {runs[0]['outputs']:,} | {seconds[name]:.1f} | {each} | {rate[name]:.1f} | "
                     f"{ratio(name):.2f} |")
    lines += [
        "",
        f"aeops / tf.data: **{ratio('tf.data'):.2f}x** (goal >= 1.0x); "
        f"aeops / model alone: **{ratio('model alone'):.2f}x** (goal >= 0.85x); "
        f"tf.data / model alone: {rate['tf.data'] / rate['model alone']:.2f}x (all three on the same padded shapes); "
        f"aeops without the model (`--set {NO_MODEL}`): {rate['aeops, no model']:.0f} images/s, the pipeline's "
        f"own ceiling on this machine; what overlapping the model calls with the other stages gives, aeops / "
        f"aeops with `--set {IN_SERIES}`: **{ratio('aeops, model calls in series'):.2f}x**.",
        f"Padding overhead of shape bucketing (aeops manifest, `metrics.padding_overhead`): "
        f"**+{100 * metrics['padding_overhead']:.1f}%** pixels through the model; what it costs the model itself, "
        f"model alone unpadded / padded: **{rate['model alone, unpadded'] / rate['model alone']:.2f}x**.",
    ]
    return lines


# --- main ------------------------------------------------------------------------------------------


def default_model() -> str:
    return str(PRETRAINED) if (PRETRAINED / "saved_model.pb").is_file() else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="images in the timed data set (>= 1000)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds over all contenders, their order rotated each round; medians are reported (0: none)")
    parser.add_argument("--memory", type=int, nargs="*", default=[1000, 5000], metavar="N",
                        help="image counts of the peak-memory runs (none: skip them)")
    parser.add_argument("--curve", type=int, nargs="*", default=[], metavar="N",
                        help="image counts of the no-model worker curve (in memory, 1 and 2 worker processes)")
    parser.add_argument("--memory-small", action="store_true",
                        help=f"memory runs on smaller images {SMALL_SHAPES} to keep the large run short")
    parser.add_argument("--model-dir", default=None, help="SavedModel (default: the shipped model)")
    parser.add_argument("--workdir", default=None, help="keep the data and outputs here (default: a temp dir)")
    parser.add_argument("--write-readme", action="store_true", help="rewrite README.md's pipeline-benchmark block")
    parser.add_argument("--child", nargs=2, metavar=("GLOB", "ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    model_dir = args.model_dir or default_model()
    if not model_dir:
        raise SystemExit(f"no model: the shipped one ({PRETRAINED}) is not there yet; pass --model-dir DIR")
    if args.child:
        return child_main(args.child[0], args.child[1], model_dir)

    cfg = config.load(PipelineConfig, CONFIG, OVERRIDES)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="aeops-bench-"))
    try:
        pattern = generate(work / "data", args.images)
        shapes = [SHAPES[(i // len(sample_paths())) % len(SHAPES)] for i in range(args.images)]
        model_meta = json.loads((Path(model_dir) / "aeops_model.json").read_text())
        arch = model_meta.get("architecture", {})
        inference = cfg.inference
        setup = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "images": args.images,
            "sizes": ", ".join(f"{h}x{w}" for h, w in SHAPES),
            "config": CONFIG.relative_to(ROOT).as_posix(),
            "model": "shipped" if Path(model_dir).resolve() == PRETRAINED.resolve() else "--model-dir",
            "model_note": f"U-Net width {arch.get('width')}, depth {arch.get('depth')}, "
                          f"{arch.get('parameters', 0):,} parameters",
            "quality": cfg.encode.quality,
            "batch_size": inference.max_batch_size,
            "load": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
            "pad_multiple": inference.pad_multiple,
            "batching": ("Beam's stateful shape-bucketed batching, "
                         f"max_batch_duration_secs {inference.max_batch_duration_secs}"
                         if inference.max_batch_duration_secs is not None else "streaming BatchElements after GroupByBucketShape (one shape per batch)"),
        }
        print(f"data: {args.images} images, {setup['sizes']}, in {work / 'data'}; model {model_dir} "
              f"({setup['model_note']}); config {setup['config']} + {OVERRIDES}; batching: {setup['batching']}",
              file=sys.stderr)
        padded = sum(np.prod(bucket_shape(s, inference.pad_multiple)) for s in shapes) / sum(np.prod(s) for s in shapes)
        print(f"expected padding overhead for these sizes: +{100 * (padded - 1):.1f}%", file=sys.stderr)

        import apache_beam  # noqa: F401 - both frameworks imported before any clock starts
        import tensorflow  # noqa: F401

        contenders = {
            "aeops": lambda r: run_aeops(pattern, str(work / f"aeops-{r}"), model_dir),
            "tf.data": lambda r: run_tfdata(pattern, str(work / f"tfdata-{r}.tfrecord"), model_dir, cfg),
            "model alone": lambda r: run_ceiling(model_dir, shapes, inference.max_batch_size, inference.pad_multiple),
            "model alone, unpadded": lambda r: run_ceiling(model_dir, shapes, inference.max_batch_size, None),
            "aeops, no model": lambda r: run_aeops(pattern, str(work / f"nomodel-{r}"), model_dir, NO_MODEL),
            "aeops, model calls in series": lambda r: run_aeops(pattern, str(work / f"series-{r}"), model_dir,
                                                                IN_SERIES),
        }
        results = {name: [] for name in contenders}
        for round_ in range(args.rounds):
            names = list(contenders)
            for name in names[round_ % len(names):] + names[: round_ % len(names)]:  # each starts a round once
                results[name].append(contenders[name](round_))
                print(f"round {round_ + 1}: {name}  {results[name][-1]['outputs']} in "
                      f"{results[name][-1]['seconds']:.1f} s", file=sys.stderr)
        if len({r["outputs"] for r in results["tf.data"] + results["aeops"]}) > 1:
            raise SystemExit("output counts differ between aeops and tf.data")

        memory = []
        memory_shapes = SMALL_SHAPES if args.memory_small else SHAPES
        for count in args.memory:
            data = generate(work / f"memory-{count}", count, memory_shapes)
            run = peak_memory(data, str(work / f"memory-{count}-out"), model_dir)
            run.update(images=count, sizes=", ".join(f"{h}x{w}" for h, w in memory_shapes))
            memory.append(run)
            print(f"memory   {count} images: peak RSS {run['max_rss_mib']:.0f} MiB, {run['seconds']:.1f} s",
                  file=sys.stderr)
            shutil.rmtree(work / f"memory-{count}", ignore_errors=True)
            shutil.rmtree(work / f"memory-{count}-out", ignore_errors=True)
        curve = worker_curve(work, args.curve, model_dir)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    command = "python benchmarks/pipeline.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.rounds:
        emit("pipeline-benchmark", report(command.strip(), setup, results, memory), args.write_readme)
    if curve:  # a block of its own: the curve and the contenders are regenerated apart
        emit("pipeline-workers", "\n".join([header(command.strip(), setup), *curve_table(curve)]), args.write_readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
