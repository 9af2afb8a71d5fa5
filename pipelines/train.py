"""``aeops train`` / ``python -m pipelines.train``: input -> build -> fit -> export.

This module only reads options and wires the steps; they live in :mod:`aeops.model` (``data``, ``training``,
``export``), imported when the job runs so that ``--help`` and usage errors do not wait for TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from aeops.cli import ArgumentParser
from aeops.config import TrainConfig, load
from aeops.errors import UsageError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="aeops train", description="Train the denoising autoencoder and export it.")
    parser.add_argument("--config", help="YAML training config, e.g. configs/train.yaml (default: built-in defaults)")
    parser.add_argument("--data", help="TFRecord glob or folder of shards, local or gs:// (default: the config's data, "
                                       "else the sample set)")
    parser.add_argument("--model-dir", help="where checkpoints and the SavedModel go (default: the config's model_dir)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    overrides = list(args.set)
    if args.data:
        overrides.append(f"data={args.data}")
    if args.model_dir:
        overrides.append(f"model_dir={args.model_dir}")
    config = load(TrainConfig, args.config, overrides)
    if not config.model_dir:
        raise UsageError("no model directory: pass --model-dir DIR (or set model_dir in the config)")
    return config


def run(argv: list[str] | None = None) -> int:
    config = resolve_config(parse_args(argv))
    from aeops.model import data, training
    from aeops.model.export import export

    device = training.set_up_device(config)
    with tempfile.TemporaryDirectory(prefix="aeops-train-") as workdir:
        shards = data.resolve(config.data, workdir, config.schema.image)
        train = data.training_dataset(shards, config)
        validation = data.validation_dataset(shards, config)
        network = training.build(config)
        print(f"train: {network.name}, {network.count_params():,} parameters, {device}; "
              f"{len(shards.paths)} shard(s), validation {'on' if validation is not None else 'off'}; "
              f"model dir {config.model_dir}", flush=True)
        progress = training.fit(network, train, validation, config, config.model_dir)
    metadata = training.metadata(config, shards, progress, device)
    digest = export(network, config.model.model_dump(), config.model_dir, metadata)
    if shards.skipped.summary():
        print(shards.skipped.summary(), flush=True)
    print(f"train: stopped after {progress['epochs_done']} epochs, {progress['steps_done']} steps, "
          f"{progress['train_seconds'] / 60:.1f} min: {progress['stopped']}; exported {config.model_dir} "
          f"(sha256 {digest[:12]}); curves: tensorboard --logdir {os.path.join(config.model_dir, training.LOGS)}",
          flush=True)
    return 0


if __name__ == "__main__":
    from aeops.cli import guarded

    sys.exit(guarded(run, sys.argv[1:]))
