"""The fit step of ``aeops train``: device set-up, the compiled network, the training loop with checkpoints,
resume and a time budget, and the metadata the export records.

Checkpoints go to ``MODEL_DIR/checkpoints`` after every epoch (weights, optimizer state, epoch, and the
training time spent so far); running the same command again resumes from there. ``max_minutes`` bounds
the training time of the whole run, resumes included: when it is spent the job ends the step it is in,
saves and exports, so a scheduler can give it a fixed slot and still get a model. A first Ctrl-C does the
same (a second one aborts). Loss and PSNR curves go to ``MODEL_DIR/logs`` for TensorBoard.

On a terminal a live line shows the step, the loss and the ETA; otherwise (logs, CI) one line per epoch.

Checkpoints live on the machine that wrote them. ``init_from`` continues from what is committed instead - an
exported model and the progress its ``aeops_model.json`` records - so a run on a fresh machine picks up
where the last one stopped: same weights (the averaged ones, with EMA), same epoch, step and minute counts,
hence the same place on the learning-rate cosine. Only Adam's moment estimates start afresh (they are not
exported; Adam's bias correction makes the first steps small anyway).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import time
from datetime import datetime, timezone
from typing import Any

import keras
import tensorflow as tf

from aeops import __version__
from aeops.config import TrainConfig
from aeops.errors import ConfigError
from aeops.model import data, losses
from aeops.model.architecture import build_autoencoder
from aeops.progress import clock, is_terminal

CHECKPOINTS = "checkpoints"
PROGRESS = "progress.json"
LOGS = "logs"  # TensorBoard


def set_up_device(config: TrainConfig) -> str:
    """Mixed float16 on a GPU when ``auto`` (or ``on``); float32 on a CPU, where float16 is slower, unless
    ``bfloat16`` asks for bfloat16 compute (fast on CPUs with bfloat16 units, float32 variables either way)."""
    gpu = bool(tf.config.list_physical_devices("GPU"))
    if config.mixed_precision == "bfloat16":
        policy = "mixed_bfloat16"
    else:
        mixed = config.mixed_precision == "on" or (config.mixed_precision == "auto" and gpu)
        policy = "mixed_float16" if mixed else "float32"
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(config.seed % 2**32)
    return f"{'GPU' if gpu else 'CPU'}, {policy}"


def build(config: TrainConfig) -> keras.Model:
    network = build_autoencoder(**config.model.model_dump())
    # The learning rate is a variable: CosineSchedule sets it every step. With ``ema_momentum`` the optimizer
    # keeps a moving average of the weights, which validation sees and fit() writes back at the end: batches
    # of a few crops leave the last weights noisy, and the average is worth a little PSNR at no cost.
    ema = config.ema_momentum is not None
    optimizer = keras.optimizers.Adam(config.learning_rate, use_ema=ema, ema_momentum=config.ema_momentum or 0.99)
    network.compile(optimizer=optimizer, loss=losses.get(config.loss), metrics=[losses.psnr])
    return network


def fit(network: keras.Model, train, validation, config: TrainConfig, model_dir: str) -> dict[str, Any]:
    """Train until ``epochs``, the time budget or a Ctrl-C; returns the progress record (epochs, time, history)
    and, under ``stopped``, why training stopped, in words."""
    checkpoints = os.path.join(model_dir, CHECKPOINTS)
    os.makedirs(checkpoints, exist_ok=True)
    progress = Progress(os.path.join(checkpoints, PROGRESS), config)
    backup = keras.callbacks.BackupAndRestore(checkpoints, double_checkpoint=True, delete_checkpoint=False)
    continued = progress.fresh and config.init_from is not None
    if continued:
        metadata = initialise(network, config)
        if metadata is not None:
            progress.continue_from(metadata, config.init_from)
    if progress.remaining_s() <= 0:
        # The budget was spent by earlier runs: nothing to train, restore the weights and (re-)export.
        if not continued:
            network.optimizer.build(network.trainable_variables)  # the checkpoint holds its state too
            network.load_weights(os.path.join(checkpoints, "latest.weights.h5"))
            network.optimizer.finalize_variable_values(network.trainable_variables)  # the average, as fit() ends
        return progress.state | {"stopped": f"the time budget of {config.max_minutes:g} min was already spent"}
    board = keras.callbacks.TensorBoard(os.path.join(model_dir, LOGS), update_freq="epoch", write_graph=False)
    callbacks = [backup, CosineSchedule(progress, config), progress, board]
    if config.ema_momentum is not None:
        callbacks.insert(0, keras.callbacks.SwapEMAWeights())  # validation scores the averaged weights
    # A checkpoint restores Keras' epoch counter itself; a run continued from an export starts where it ended.
    with progress.stop_on_interrupt():
        network.fit(train, epochs=config.epochs, steps_per_epoch=config.steps_per_epoch, validation_data=validation,
                    callbacks=callbacks, verbose=0, shuffle=False, initial_epoch=progress.state["epochs_done"])
    return progress.state | {"stopped": progress.why_stopped()}


def initialise(network: keras.Model, config: TrainConfig) -> dict[str, Any] | None:
    """Load the weights of the exported model ``config.init_from`` into ``network``.

    Same architecture: every weight, and the export's metadata is returned, so training continues its
    counts. Another architecture (e.g. fewer ``full_resolution_blocks``): a warm start, the
    layers of the same name and weight shapes copied, the rest left as initialised, fresh counts (``None``).
    The SavedModel's variables are a TensorFlow checkpoint of the exported module, whose ``network`` is a
    network of the builder: object-based restore matches them by place.
    """
    from aeops.model import builder_arguments, load_metadata

    if not tf.io.gfile.exists(os.path.join(config.init_from, "saved_model.pb")):
        raise ConfigError(f"init_from {config.init_from!r}: no saved_model.pb there; "
                          "name a model 'aeops train' exported")
    metadata = load_metadata(config.init_from)
    ours = config.model.model_dump()
    theirs = builder_arguments(metadata)
    exported = build_autoencoder(**theirs)  # uncompiled: no optimizer to match
    prefix = os.path.join(config.init_from, "variables", "variables")
    tf.train.Checkpoint(network=exported).read(prefix).assert_existing_objects_matched()
    if same_network(theirs, ours):
        network.set_weights(exported.get_weights())
        return metadata
    copied, fresh = copy_matching_layers(exported, network)
    if not copied:
        raise ConfigError(f"init_from {config.init_from!r}: its architecture {theirs} shares no layer with the "
                          f"config's model {ours}; set model.* to match it")
    print(f"train: warm start from {config.init_from}: {len(copied)} layers copied, "
          f"new: {', '.join(fresh) or 'none'}", flush=True)
    return None


def same_network(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two sets of builder arguments build the same network (``full_resolution_blocks`` null = ``blocks``)."""
    def spelled_out(arguments):
        full = arguments.get("full_resolution_blocks")
        return arguments | {"full_resolution_blocks": arguments["blocks"] if full is None else full}

    return spelled_out(a) == spelled_out(b)


def copy_matching_layers(source: keras.Model, target: keras.Model) -> tuple[list[str], list[str]]:
    """Copy into ``target`` the weights of every layer of ``source`` with the same name and weight shapes;
    returns (copied, left as initialised), names of layers that have weights."""
    theirs = {layer.name: layer for layer in source.layers}
    copied, fresh = [], []
    for layer in target.layers:
        if not layer.weights:
            continue
        match = theirs.get(layer.name)
        shapes = [tuple(w.shape) for w in layer.weights]
        if match is not None and [tuple(w.shape) for w in match.weights] == shapes:
            layer.set_weights(match.get_weights())
            copied.append(layer.name)
        else:
            fresh.append(layer.name)
    return copied, fresh


class Progress(keras.callbacks.Callback):
    """Progress lines, the time budget, Ctrl-C, and a record of the epochs that survives a resume."""

    BAR = 20

    def __init__(self, path: str, config: TrainConfig, stream=None):
        super().__init__()
        self.path, self.config = path, config
        self.state = {"epochs_done": 0, "steps_done": 0, "train_seconds": 0.0, "history": []}
        self.fresh = not os.path.exists(path)
        if not self.fresh:
            with open(path) as handle:
                self.state = json.load(handle)
        self.started, self.steps = time.monotonic(), 0
        self.spent_before = self.state["train_seconds"]
        self.stream = stream or sys.stdout
        self.live = is_terminal(self.stream)
        self.steps_this_run, self.shown = 0, 0.0
        self.out_of_time = self.interrupted = False

    def why_stopped(self) -> str:
        epoch = f"epoch {self.state['epochs_done']}/{self.config.epochs}"
        if self.interrupted:
            return f"interrupted (Ctrl-C) in {epoch}"
        if self.out_of_time:
            return f"the time budget of {self.config.max_minutes:g} min ran out in {epoch}"
        return f"all {self.config.epochs} epochs done"

    @contextlib.contextmanager
    def stop_on_interrupt(self):
        """A first Ctrl-C ends the step in progress, then saves and exports like the time budget; a second aborts."""

        def interrupt(signum, frame):
            self.interrupted = True
            if self.model is not None:
                self.model.stop_training = True
            signal.signal(signal.SIGINT, previous)

        previous = signal.signal(signal.SIGINT, interrupt)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def continue_from(self, metadata: dict[str, Any], source: str) -> None:
        """Start the counts where the exported model's training ended."""
        done = metadata.get("training", {})
        self.state.update(epochs_done=done.get("epochs_done", 0), steps_done=done.get("steps_done", 0),
                          train_seconds=60.0 * done.get("train_minutes", 0.0), continued_from=source)
        self.started, self.spent_before = time.monotonic(), self.state["train_seconds"]
        print(f"train: continuing {source} after epoch {self.state['epochs_done']} "
              f"({self.spent_before / 60:.1f} of {self.config.max_minutes:g} min spent)", flush=True)

    def elapsed_s(self) -> float:
        return self.spent_before + time.monotonic() - self.started

    def remaining_s(self) -> float:
        return self.config.max_minutes * 60 - self.elapsed_s()

    def on_train_begin(self, logs=None):
        if self.state["epochs_done"]:
            print(f"train: resuming after epoch {self.state['epochs_done']} "
                  f"({self.spent_before / 60:.1f} of {self.config.max_minutes:g} min spent)", flush=True)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started, self.steps = time.monotonic(), 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        self.steps_this_run += 1
        if self.remaining_s() <= 0:
            self.out_of_time = True
            self.model.stop_training = True
        if self.live and time.monotonic() - self.shown >= 0.2:
            self.shown = time.monotonic()
            self._write(self.step_line(float((logs or {}).get("loss", float("nan")))))

    def step_line(self, loss: float) -> str:
        """``epoch 2/5 [######......] 14/50  loss 0.01234  ETA 1:10``: the ETA of the whole run, whichever of the
        steps left and the time budget ends it first."""
        per_epoch, epoch = self.config.steps_per_epoch, self.state["epochs_done"] + 1
        left = (self.config.epochs - epoch) * per_epoch + per_epoch - self.steps
        step_s = (time.monotonic() - self.started) / max(self.steps_this_run, 1)
        eta = max(min(left * step_s, self.remaining_s()), 0)
        filled = round(self.BAR * self.steps / per_epoch)
        return (f"\repoch {epoch}/{self.config.epochs} [{'#' * filled}{'.' * (self.BAR - filled)}] "
                f"{self.steps}/{per_epoch}  loss {loss:.5f}  ETA {clock(eta)}\033[K")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        row = {"epoch": epoch + 1, "steps": self.steps, "seconds": round(time.monotonic() - self.epoch_started, 2),
               **{k: round(v, 6) for k, v in logs.items()}}
        self.state["history"].append(row)
        self.state.update(epochs_done=epoch + 1, steps_done=self.state["steps_done"] + self.steps,
                          train_seconds=round(self.elapsed_s(), 2))
        tmp = self.path + ".tmp"
        with open(tmp, "w") as stream:
            json.dump(self.state, stream)
        os.replace(tmp, self.path)
        val = f"  val_psnr {logs['val_psnr']:.2f} dB" if "val_psnr" in logs else ""
        self._write(("\r\033[K" if self.live else "")
                    + f"epoch {epoch + 1}/{self.config.epochs}  loss {logs.get('loss', float('nan')):.5f}  "
                    f"psnr {logs.get('psnr', float('nan')):.2f} dB{val}  {row['seconds']:.0f} s  "
                    f"[{self.elapsed_s() / 60:.1f}/{self.config.max_minutes:g} min]\n")


class CosineSchedule(keras.callbacks.Callback):
    """Cosine decay of the learning rate to 5% over whichever runs out first, the steps or the time budget.

    A step-based schedule cut short by ``max_minutes`` would stop at a high learning rate, and much of
    the last fraction of a dB comes from the low-rate tail; following elapsed time too means a time-boxed
    run on a slow or shared machine still ends with that tail.
    """

    FLOOR = 0.05

    def __init__(self, progress: Progress, config: TrainConfig):
        super().__init__()
        self.progress, self.config = progress, config
        self.total_steps = config.epochs * config.steps_per_epoch

    def on_train_batch_begin(self, batch, logs=None):
        steps = self.progress.state["steps_done"] + self.progress.steps
        done = min(1.0, max(steps / self.total_steps, self.progress.elapsed_s() / (self.config.max_minutes * 60)))
        scale = self.FLOOR + (1 - self.FLOOR) * 0.5 * (1 + math.cos(math.pi * done))
        self.model.optimizer.learning_rate.assign(self.config.learning_rate * scale)


def metadata(config: TrainConfig, shards: data.Shards, progress: dict[str, Any], device: str) -> dict[str, Any]:
    history = progress["history"]
    last = history[-1] if history else {}
    return {
        "training": {"config": config.model_dump(mode="json"), "device": device,
                     "epochs_done": progress["epochs_done"], "steps_done": progress["steps_done"],
                     "train_minutes": round(progress["train_seconds"] / 60, 2)}
        | ({"continued_from": progress["continued_from"]} if "continued_from" in progress else {}),
        "data": {"fingerprint": shards.fingerprint, "files": len(shards.paths), "bytes": shards.total_bytes,
                 "source": config.data or "aeops.sample (embedded sample set)"},
        "metrics": {k: last[k] for k in ("loss", "psnr", "val_loss", "val_psnr") if k in last}
        | {"validation": f"centre {data.VALIDATION_CROP}px crops, sigma {data.VALIDATION_SIGMA:g}, fixed seed"},
        "aeops_version": __version__,
        "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
