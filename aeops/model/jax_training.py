"""Train the same Keras 3 network on the JAX backend, on a machine without TensorFlow, and bring its weights
back into the SavedModel on a machine with it.

    KERAS_BACKEND=jax python -m aeops.model.jax_training train --config configs/pretrained.yaml \
        --data 'shards/train-*.tfrecord' --out build/jax-run [--steps N] [--set KEY=VALUE ...]
    python -m aeops.model.jax_training export --run build/jax-run --model-dir build/jax-model   # with TensorFlow

``train`` needs keras, jax, numpy and what aeops reads data with (pillow, opencv-python-headless, protobuf,
google-crc32c, pyyaml, pydantic), never TensorFlow: records are framed by :mod:`aeops.tfrecord` and parsed
by :mod:`aeops.schema`, the network is :func:`~aeops.model.architecture.build_autoencoder` and its noise
input :func:`~aeops.model.architecture.estimate_noise` (``keras.ops``, the same number on either backend).
Only the input pipeline is rewritten in numpy - tf.data and ``tf.image`` are not there - following the same
corruption model (:mod:`aeops.model.corruption`: blur, Gaussian noise with sigma drawn per sample, JPEG,
8-bit quantisation) and the same key-hash train/validation split. It writes ``RUN/network.weights.h5``
(Keras' backend-neutral format; the weight average when ``ema_momentum`` is set) and ``RUN/training.json``
(config, steps, minutes, device). Running ``train`` again on the same ``--out`` continues those weights and
counts, like ``aeops train`` on its checkpoints (Adam's moments restart).

``export`` loads those weights into the TensorFlow network and writes the SavedModel and ``aeops_model.json``
exactly as ``aeops train`` does (CONTRACT §5).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from aeops.config import TrainConfig, load

WEIGHTS, RECORD = "network.weights.h5", "training.json"
LOSSES = {"mse": "mean_squared_error", "l1": "mean_absolute_error"}  # the others are written in TensorFlow


def read_images(pattern: str, config: TrainConfig) -> list[np.ndarray]:
    """The decoded training images of the shards, under the config's schema (the validation share left out,
    by key hash)."""
    from aeops import codec, schema, tfrecord
    from aeops.model.split import split_fraction

    images = []
    for path in sorted(glob.glob(pattern)):
        with open(path, "rb") as stream:
            for serialized in tfrecord.read_records(stream, tfrecord.is_gzip(path)):
                record = schema.parse(serialized, config.schema.image, config.schema.key)
                if split_fraction(record.key) >= config.validation_fraction:
                    images.append(codec.decode(record.image))
    if not images:
        raise SystemExit(f"--data {pattern!r}: no training images there")
    return images


def corrupted_pair(image: np.ndarray, config: TrainConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(corrupted, clean) float crops in [0, 1]: a random crop drawn at 1-2x the crop size and shrunk, flips,
    a channel order, then the corruption model, as :func:`aeops.model.data.training_dataset` does in tf.data."""
    import cv2

    from aeops import codec

    size, corruption = config.crop_size, config.corruption
    region = min(int(np.ceil(size / rng.uniform(0.5, 1.0))), *image.shape[:2])
    top, left = rng.integers(0, image.shape[0] - region + 1), rng.integers(0, image.shape[1] - region + 1)
    crop = cv2.resize(image[top : top + region, left : left + region], (size, size), interpolation=cv2.INTER_AREA)
    crop = crop[:: rng.choice([1, -1]), :: rng.choice([1, -1]), rng.permutation(3)]
    clean = crop.astype(np.float32) / 255.0
    if corruption.gray_p and rng.random() < corruption.gray_p:
        clean = np.repeat(clean.mean(axis=-1, keepdims=True), 3, axis=-1)
    noisy = clean
    if rng.random() < corruption.blur_p:
        noisy = cv2.GaussianBlur(noisy, (7, 7), rng.uniform(*corruption.blur_sigma), borderType=cv2.BORDER_REFLECT)
    sigma = 0.0 if rng.random() < corruption.clean_p else rng.uniform(*corruption.sigma)
    grey = bool(np.all(noisy == noisy[..., :1]))
    noise = rng.normal(0, sigma / 255.0, noisy.shape[:2] + (1,) if grey else noisy.shape)  # grey: the same in each
    noisy = np.clip(noisy + noise, 0, 1)
    if rng.random() < corruption.jpeg_p:
        quality = int(round(rng.uniform(*corruption.jpeg_quality)))
        noisy = codec.decode(codec.encode(np.rint(noisy * 255).astype(np.uint8), "jpeg", quality=quality)) / 255.0
    return (np.rint(noisy * 255) / 255).astype(np.float32), clean


def batches(images: list[np.ndarray], config: TrainConfig, seed: int):
    """Endless ``([corrupted, noise level], clean)`` batches."""
    from aeops.model.architecture import estimate_noise

    rng = np.random.default_rng(seed)
    while True:
        pairs = [corrupted_pair(images[rng.integers(len(images))], config, rng) for _ in range(config.batch_size)]
        noisy, clean = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
        yield (noisy, np.asarray(estimate_noise(noisy))), clean


def train(config: TrainConfig, data: str, out: Path, steps: int) -> dict:
    import jax
    import keras

    from aeops.model.architecture import build_autoencoder

    if config.loss not in LOSSES:
        raise SystemExit(f"loss {config.loss!r}: the JAX path trains with {' or '.join(LOSSES)}")
    out.mkdir(parents=True, exist_ok=True)
    record_path = out / RECORD
    record = json.loads(record_path.read_text()) if record_path.exists() else {"steps_done": 0, "train_seconds": 0.0}
    keras.utils.set_random_seed(config.seed % 2**32)
    network = build_autoencoder(**config.model.model_dump())
    if (out / WEIGHTS).exists():
        network.load_weights(out / WEIGHTS)
    ema = config.ema_momentum is not None
    optimizer = keras.optimizers.Adam(config.learning_rate, use_ema=ema, ema_momentum=config.ema_momentum or 0.99)
    network.compile(optimizer=optimizer, loss=LOSSES[config.loss])
    started = time.monotonic()
    # Each continuation draws new crops: seeded by the steps already done.
    history = network.fit(batches(read_images(data, config), config,
                                  config.seed + record["steps_done"]),
                          steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    if ema:
        optimizer.finalize_variable_values(network.trainable_variables)
    network.save_weights(out / WEIGHTS)
    record = {"config": config.model_dump(mode="json"), "data": data,
              "steps_done": record["steps_done"] + steps,
              "train_seconds": round(record["train_seconds"] + time.monotonic() - started, 2),
              "loss": float(history.history["loss"][-1]),
              "device": f"{keras.backend.backend()} on {', '.join(str(d) for d in jax.devices())}",
              "tensorflow_imported": "tensorflow" in sys.modules}
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def export_run(run: Path, model_dir: str) -> str:
    """The SavedModel of a JAX run's weights (TensorFlow backend); returns its sha256."""
    from aeops.model.architecture import build_autoencoder
    from aeops.model.export import export

    record = json.loads((run / RECORD).read_text())
    config = TrainConfig.model_validate(record["config"])
    network = build_autoencoder(**config.model.model_dump())
    network.load_weights(run / WEIGHTS)
    metadata = {"training": {"config": record["config"], "device": record["device"], "steps_done": record["steps_done"],
                             "train_minutes": round(record["train_seconds"] / 60, 2), "backend": "jax"},
                "data": {"source": record["data"]}, "metrics": {"loss": record["loss"]}}
    return export(network, config.model.model_dump(), model_dir, metadata)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("train", help="train on the JAX backend (no TensorFlow needed)")
    fit.add_argument("--config", help="YAML training config, e.g. configs/pretrained.yaml")
    fit.add_argument("--data", required=True, help="TFRecord glob (local files)")
    fit.add_argument("--out", required=True, type=Path, help="where the weights and training.json go")
    fit.add_argument("--steps", type=int, default=0, help="optimizer steps this run (default: the config's)")
    fit.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    out = commands.add_parser("export", help="the SavedModel of a run's weights (needs TensorFlow)")
    out.add_argument("--run", required=True, type=Path, help="the --out folder of 'train'")
    out.add_argument("--model-dir", required=True, help="where the SavedModel goes")
    args = parser.parse_args(argv)
    if args.command == "export":
        print(f"export: {args.model_dir} (sha256 {export_run(args.run, args.model_dir)[:12]})")
        return 0
    if os.environ.get("KERAS_BACKEND") != "jax":
        raise SystemExit("set KERAS_BACKEND=jax for 'train' (this path exists for machines without TensorFlow)")
    config = load(TrainConfig, args.config, args.set)
    record = train(config, args.data, args.out, args.steps or config.steps_per_epoch * config.epochs)
    print(f"train: {record['steps_done']} steps in all on {record['device']}, loss {record['loss']:.5f}; "
          f"weights in {args.out / WEIGHTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
