"""The training job end to end: export per CONTRACT §5, resume, the time budget, bad input."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from aeops import cli
from aeops.errors import ConfigError, UsageError
from aeops.fingerprint import model_sha256
from aeops.model import builder_arguments, load_metadata
from aeops.model.architecture import build_autoencoder
from pipelines import train
from tests.model_fixtures import tiny_args


@pytest.fixture(scope="module")
def serve(tiny_model_dir):  # noqa: F811
    loaded = tf.saved_model.load(tiny_model_dir)  # plain TensorFlow: no aeops code needed to use a model
    return loaded, loaded.signatures["serving_default"]


@pytest.mark.parametrize("shape", [(1, 9, 13, 3), (1, 257, 301, 3), (3, 20, 17, 3), (1, 8, 8, 3)])
def test_signature_keeps_shape_and_dtype_on_odd_sizes_and_batches(serve, shape):
    _, fn = serve
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = fn(images=tf.constant(images))["reconstruction"]
    assert out.dtype == tf.uint8 and tuple(out.shape) == shape


def test_large_images_go_through_in_tiles(serve):
    _, fn = serve
    images = np.random.default_rng(3).integers(0, 256, (1, 1031, 1100, 3), dtype=np.uint8)  # over WHOLE_PIXELS
    assert fn(images=tf.constant(images))["reconstruction"].shape == images.shape


def test_signature_declares_the_contract(serve):
    _, fn = serve
    spec = fn.structured_input_signature[1]["images"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, None, None, 3]
    assert list(fn.structured_outputs) == ["reconstruction"]


def test_known_noise_signature_takes_sigma_and_serving_default_stays_blind(serve):
    loaded, blind = serve
    known = loaded.signatures["known_noise"]
    images = np.random.default_rng(4).integers(0, 256, (2, 24, 40, 3), dtype=np.uint8)
    sigma = tf.constant([0.0, 25.0])
    told = known(images=tf.constant(images), sigma=sigma)["reconstruction"]
    assert told.dtype == tf.uint8 and told.shape == images.shape
    from aeops.model.architecture import estimate_noise

    estimate = estimate_noise(tf.constant(images, tf.float32) / 255.0)[:, 0] * 255.0
    same = known(images=tf.constant(images), sigma=estimate)["reconstruction"].numpy().astype(int)
    assert np.abs(same - blind(images=tf.constant(images))["reconstruction"].numpy().astype(int)).max() <= 1
    assert not np.array_equal(told.numpy(), same)  # the level given is the level used
    assert set(blind.structured_input_signature[1]) == {"images"}  # CONTRACT §5 unchanged


def test_batch_items_are_independent(serve):
    _, fn = serve
    rng = np.random.default_rng(2)
    batch = rng.integers(0, 256, (2, 24, 24, 3), dtype=np.uint8)
    together = fn(images=tf.constant(batch))["reconstruction"].numpy()
    alone = fn(images=tf.constant(batch[1:]))["reconstruction"].numpy()
    assert np.abs(together[1:].astype(int) - alone.astype(int)).max() <= 1


def test_metadata_describes_the_model(tiny_model_dir):  # noqa: F811
    meta = json.loads((Path(tiny_model_dir) / "aeops_model.json").read_text())
    assert meta["architecture"]["width"] == 8 and meta["architecture"]["parameters"] > 0
    assert meta["training"]["config"]["crop_size"] == 32
    assert meta["training"]["epochs_done"] == 2 and meta["training"]["steps_done"] == 6
    assert len(meta["data"]["fingerprint"]) == 64
    assert "val_psnr" in meta["metrics"] and "psnr" in meta["metrics"]
    assert meta["sha256"] == model_sha256(tiny_model_dir)


def test_a_second_run_resumes_from_the_checkpoint(tiny_model_dir, tmp_path, capsys):  # noqa: F811
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    assert train.run(tiny_args(model_dir, epochs=3)) == 0
    assert "resuming after epoch 2" in capsys.readouterr().out
    progress = json.loads((model_dir / "checkpoints" / "progress.json").read_text())
    assert progress["epochs_done"] == 3 and [row["epoch"] for row in progress["history"]] == [1, 2, 3]


def test_time_budget_stops_cleanly_and_exports(tmp_path, capsys):
    model_dir = tmp_path / "model"
    assert train.run(tiny_args(model_dir, epochs=50, steps_per_epoch=1000, max_minutes=0.001)) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("train: stopped after 1 epochs")
    assert "the time budget of 0.001 min ran out in epoch 1/50" in last
    assert f"exported {model_dir}" in last
    meta = json.loads((model_dir / "aeops_model.json").read_text())
    assert meta["training"]["epochs_done"] == 1 and meta["training"]["steps_done"] < 1000
    assert tf.saved_model.load(str(model_dir)).signatures["serving_default"] is not None
    # Budget spent: a re-run trains nothing and re-exports the same weights.
    assert train.run(tiny_args(model_dir, epochs=50, steps_per_epoch=1000, max_minutes=0.001)) == 0
    assert "already spent" in capsys.readouterr().out


def saved_arrays(model_dir: Path) -> set[bytes]:
    reader = tf.train.load_checkpoint(str(model_dir / "variables" / "variables"))
    arrays = (reader.get_tensor(name) for name in reader.get_variable_to_shape_map())
    return {array.tobytes() for array in arrays if isinstance(array, np.ndarray) and array.dtype == np.float32}


def test_ema_exports_the_averaged_weights_and_a_budget_spent_rerun_exports_the_same(tmp_path):
    from aeops.config import TrainConfig
    from aeops.model import training

    model_dir = tmp_path / "model"
    assert train.run(tiny_args(model_dir, ema_momentum=0.5)) == 0
    config = json.loads((model_dir / "aeops_model.json").read_text())["training"]["config"]
    network = training.build(TrainConfig.model_validate(config))
    network.optimizer.build(network.trainable_variables)
    network.load_weights(str(model_dir / "checkpoints" / "latest.weights.h5"))
    last = [v.numpy().tobytes() for v in network.trainable_variables]
    network.optimizer.finalize_variable_values(network.trainable_variables)
    averaged = [v.numpy().tobytes() for v in network.trainable_variables]
    exported = saved_arrays(model_dir)
    assert set(averaged) <= exported and not set(last) <= exported
    assert train.run(tiny_args(model_dir, ema_momentum=0.5, max_minutes=0.001)) == 0  # budget spent: re-export
    assert saved_arrays(model_dir) == exported


def committed_copy(model_dir, target: Path) -> Path:
    """What a repository holds of a model: the export, no checkpoints (they stay on the machine that trained)."""
    shutil.copytree(model_dir, target, ignore=shutil.ignore_patterns("checkpoints"))
    return target


def test_a_fresh_machine_continues_from_the_committed_export(tiny_model_dir, tmp_path, capsys):  # noqa: F811
    committed = committed_copy(tiny_model_dir, tmp_path / "committed")
    model_dir = tmp_path / "fresh"
    assert train.run(tiny_args(model_dir, epochs=3, init_from=committed)) == 0
    assert f"continuing {committed} after epoch 2" in capsys.readouterr().out
    progress = json.loads((model_dir / "checkpoints" / "progress.json").read_text())
    assert progress["epochs_done"] == 3 and progress["steps_done"] == 9
    assert [row["epoch"] for row in progress["history"]] == [3]
    meta = json.loads((model_dir / "aeops_model.json").read_text())
    assert meta["training"]["epochs_done"] == 3 and meta["training"]["continued_from"] == str(committed)


def test_a_continued_run_starts_from_the_committed_weights(tiny_model_dir, tmp_path):  # noqa: F811
    committed = committed_copy(tiny_model_dir, tmp_path / "committed")
    model_dir = tmp_path / "fresh"
    # The committed model's minutes already fill this budget: nothing trains, the export is its weights.
    assert train.run(tiny_args(model_dir, init_from=committed, max_minutes=0.0001)) == 0
    assert saved_arrays(model_dir) == saved_arrays(committed)


def test_init_from_another_architecture_copies_the_layers_it_shares_and_starts_fresh_counts(
        tiny_model_dir, tmp_path, capsys):  # noqa: F811
    deeper = {"model.full_resolution_blocks": 2}  # the tiny model has one convolution per side at full resolution
    model_dir = tmp_path / "deeper"
    assert train.run(tiny_args(model_dir, epochs=1, init_from=tiny_model_dir, **deeper)) == 0
    out = capsys.readouterr().out
    assert "warm start from" in out and "new: down0_conv1, up0_conv1" in out
    progress = json.loads((model_dir / "checkpoints" / "progress.json").read_text())
    assert progress["epochs_done"] == 1 and "continued_from" not in progress
    # Nothing trained: the budget is spent before the first step, and the export is the warm start itself.
    start = tmp_path / "start"
    assert train.run(tiny_args(start, init_from=tiny_model_dir, max_minutes=1e-9, **deeper)) == 0
    tiny = build_autoencoder(**builder_arguments(load_metadata(tiny_model_dir)))
    tf.train.Checkpoint(network=tiny).read(os.path.join(tiny_model_dir, "variables", "variables")).expect_partial()
    exported = saved_arrays(start)
    for name in ("stem", "down0_conv0", "bottom_conv0", "up0_conv0", "head"):
        assert {w.tobytes() for w in tiny.get_layer(name).get_weights()} <= exported, name


def test_full_resolution_blocks_spelled_out_as_blocks_is_the_same_network_and_continues(
        tiny_model_dir, tmp_path, capsys):  # noqa: F811
    committed = committed_copy(tiny_model_dir, tmp_path / "committed")
    spelled_out = {"model.full_resolution_blocks": 1}  # the tiny model has blocks 1
    assert train.run(tiny_args(tmp_path / "m", epochs=3, init_from=committed, **spelled_out)) == 0
    assert f"continuing {committed} after epoch 2" in capsys.readouterr().out


def test_init_from_must_share_a_layer(tiny_model_dir, tmp_path):  # noqa: F811
    with pytest.raises(ConfigError, match="shares no layer .*set model"):
        train.run(tiny_args(tmp_path / "a", init_from=tiny_model_dir, **{"model.width": 16}))
    with pytest.raises(ConfigError, match="no saved_model.pb"):
        train.run(tiny_args(tmp_path / "b", init_from=tmp_path))


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(UsageError, match="--model-dir"):
        train.run([])
    with pytest.raises(ConfigError, match="model.width"):
        train.run(["--model-dir", str(tmp_path), "--set", "model.width=0"])
    assert cli.main(["train", "--model-dir", str(tmp_path), "--data", str(tmp_path / "none-*.tfrecord")]) == 2
    assert "matches no files" in capsys.readouterr().err


def test_trains_on_a_tfds_dataset_by_its_schema(tmp_path, capsys):
    """TFDS keeps the image under ``image``: ``--set schema.preset=tfds`` is all it takes."""
    from tests import shards
    from tests import targets_scene as scene

    shards.write(tmp_path / "tfds-train.tfrecord-00000-of-00001", [scene.tfds_record(i) for i in range(4)])
    args = tiny_args(tmp_path / "model", epochs=1, validation_fraction=0)
    data = ["--data", str(tmp_path / "tfds-train.tfrecord-*")]
    assert train.run([*args, *data, "--set", "schema.preset=tfds"]) == 0
    assert (tmp_path / "model" / "saved_model.pb").exists()
    with pytest.raises(Exception, match="image/encoded"):  # the default schema looks for another feature
        train.run([*tiny_args(tmp_path / "other", epochs=1, validation_fraction=0), *data])


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_sees_each_step_with_loss_and_eta_and_a_final_line_saying_why(tmp_path, monkeypatch):
    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    model_dir = tmp_path / "model"
    assert train.run(tiny_args(model_dir, steps_per_epoch=40)) == 0
    text = screen.getvalue()
    steps = [part for part in text.split("\r") if part.startswith("epoch 2/2 [")]
    assert steps, text[-2000:]
    assert all(re.match(r"epoch 2/2 \[[#.]{20}\] \d+/40  loss \d+\.\d{5}  ETA \d+:\d\d", step) for step in steps)
    assert re.search(r"epoch 1/2  loss [\d.]+  psnr [\d.]+ dB  val_psnr [\d.]+ dB", text)  # the epoch lines stay
    last = text.strip().splitlines()[-1]
    assert re.fullmatch(rf"train: stopped after 2 epochs, 80 steps, [\d.]+ min: all 2 epochs done; exported "
                        rf"{re.escape(str(model_dir))} \(sha256 [0-9a-f]{{12}}\); curves: tensorboard --logdir "
                        rf"{re.escape(str(model_dir / 'logs'))}", last), last


def test_not_a_terminal_gets_one_line_per_epoch(tiny_model_dir, tmp_path, capsys):  # noqa: F811
    assert train.run(tiny_args(tmp_path / "model")) == 0
    out = capsys.readouterr().out
    assert "\r" not in out and "ETA" not in out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("epoch ")] == ["1/2", "2/2"]


def test_tensorboard_curves_are_written_under_the_model_dir(tiny_model_dir):  # noqa: F811
    events = sorted((Path(tiny_model_dir) / "logs").rglob("events.out.tfevents.*"))
    tags = {value.tag for path in events for event in tf.compat.v1.train.summary_iterator(str(path))
            for value in event.summary.value}
    assert {"epoch_loss", "epoch_psnr"} <= tags, tags


def test_ctrl_c_stops_at_the_step_saves_and_exports(tmp_path):
    model_dir = tmp_path / "model"
    args = tiny_args(model_dir, epochs=50, steps_per_epoch=100000, max_minutes=10)
    process = subprocess.Popen([sys.executable, "-m", "aeops", "train", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    header = process.stdout.readline()  # printed once the network is built, just before fit()
    assert header.startswith("train: "), header + process.stderr.read()
    time.sleep(3)  # some steps of epoch 1
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    last = out.strip().splitlines()[-1]
    assert "train: stopped after 1 epochs" in last and "interrupted (Ctrl-C) in epoch 1/50" in last, out
    assert tf.saved_model.load(str(model_dir)).signatures["serving_default"] is not None


def test_damaged_records_and_records_without_the_image_are_skipped_counted_and_a_folder_is_its_shards(tmp_path, capsys):
    """tf.data's reader raised DataLossError on the damaged shard; a folder was read file by file, notes included."""
    from aeops.model import data
    from tests import shards

    folder = tmp_path / "shards"
    folder.mkdir()
    data.pack_sample(str(folder / "sample-00000-of-00002.tfrecord"))
    good = [shards.example(image) for image in shards.good_images()]
    shards.write_damaged(folder / "sample-00001-of-00002.tfrecord",
                         [good[0], shards.example(None, image__class__label=1), good[1], good[2]], bad_crc_at=2)
    (folder / "NOTES.txt").write_text("not a shard")
    assert train.run(tiny_args(tmp_path / "model", epochs=1) + ["--data", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "train: skipped 2 damaged record(s), 1 record(s) without the image feature" in out
    meta = json.loads((tmp_path / "model" / "aeops_model.json").read_text())
    assert meta["data"]["files"] == 2


def test_shards_without_the_image_feature_are_one_line_naming_the_fix(tmp_path, capsys):
    from aeops import schema
    from tests import shards

    path = tmp_path / "tfds.tfrecord"
    shards.write(path, [schema.serialize({"image": schema.bytes_feature(image), "label": schema.int_feature(0)})
                        for image in shards.good_images()])
    assert cli.main(["train", "--model-dir", str(tmp_path / "m"), "--data", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "they have: image, label" in err and "--set schema.preset=tfds" in err, err


def test_the_readme_command_needs_no_model_dir_flag():
    config = train.resolve_config(train.parse_args(["--config", "configs/train.yaml"]))
    assert config.model_dir == "models/denoiser"


def test_bfloat16_training_resumes_a_float32_checkpoint_and_exports_float32(tiny_model_dir, tmp_path):  # noqa: F811
    """A run can switch to bfloat16 compute midway (the variables stay float32, so the checkpoint fits), and
    the export is the usual float32 model. In a process of its own: the Keras policy is process-wide."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    done = subprocess.run([sys.executable, "-m", "aeops", "train",
                           *tiny_args(model_dir, epochs=3, mixed_precision="bfloat16")],
                          capture_output=True, text=True, check=True)
    assert "CPU, mixed_bfloat16" in done.stdout and "resuming after epoch 2" in done.stdout
    meta = json.loads((model_dir / "aeops_model.json").read_text())
    assert meta["training"]["device"] == "CPU, mixed_bfloat16" and meta["training"]["epochs_done"] == 3
    reader = tf.train.load_checkpoint(str(model_dir / "variables" / "variables"))
    kernels = [name for name in reader.get_variable_to_shape_map() if "kernel" in name or "bias" in name]
    assert kernels and {reader.get_tensor(name).dtype for name in kernels} == {np.dtype("float32")}
    out = tf.saved_model.load(str(model_dir)).signatures["serving_default"](images=tf.zeros((1, 16, 16, 3), tf.uint8))
    assert out["reconstruction"].dtype == tf.uint8
