"""The denoising autoencoder: builder, corruption model, losses, tf.data input and export.

``load(model_dir)`` is the one way the rest of aeops opens a model: the ``serving_default`` function of
the SavedModel (uint8 ``images`` -> ``{"reconstruction": uint8}``) and its ``aeops_model.json``.

``precision="bfloat16"`` serves the same float32 SavedModel with its convolutions in bfloat16: TensorFlow's
oneDNN auto-mixed-precision graph rewrite, which runs them on the AVX-512 BF16 / AMX units of recent x86
CPUs at about twice float32's speed. The rewrite is a process-wide optimizer option, read when a function
is first run, so it is set before the model loads; on a CPU without those units it would be slower, hence
:func:`cpu_has_bfloat16`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, get_args

from aeops.config import Precision
from aeops.errors import UsageError

PRECISIONS = get_args(Precision)
PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained" / "denoiser"
METADATA = "aeops_model.json"
# SavedModels read by this process (``load`` calls that reached the disk): a job loads its model once per
# process, and the tests hold it to that.
loads = 0


def load_metadata(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The model's ``aeops_model.json`` (``{}`` when there is none)."""
    import tensorflow as tf

    path = os.path.join(str(model_dir), METADATA)
    return json.loads(tf.io.gfile.GFile(path).read()) if tf.io.gfile.exists(path) else {}


def builder_arguments(metadata: dict[str, Any]) -> dict[str, Any]:
    """The builder arguments an ``aeops_model.json`` records, with the defaults of those its export predates."""
    from aeops.config import ModelConfig

    recorded = metadata.get("architecture", {})
    return {key: recorded.get(key, default) for key, default in ModelConfig().model_dump().items()}


def cpu_has_bfloat16() -> bool:
    """Whether this machine's CPU computes bfloat16 natively (Linux's ``/proc/cpuinfo`` flags)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def load(model_dir: str | os.PathLike | None = None, precision: str = "float32") -> tuple[Callable, dict[str, Any]]:
    """(serving function, metadata) of the SavedModel in ``model_dir``; ``None`` = the shipped model."""
    import tensorflow as tf

    if precision not in PRECISIONS:
        raise UsageError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "bfloat16":
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    model_dir = str(model_dir or PRETRAINED)
    if not tf.io.gfile.exists(os.path.join(model_dir, "saved_model.pb")):
        raise UsageError(f"model {model_dir!r}: no saved_model.pb there; pass a directory written by 'aeops train'")
    metadata = load_metadata(model_dir)
    global loads
    loads += 1
    try:
        loaded = tf.saved_model.load(model_dir)
        serve = loaded.signatures["serving_default"]
    except (OSError, ValueError, KeyError, tf.errors.OpError) as exc:
        raise UsageError(f"model {model_dir!r} cannot be loaded ({type(exc).__name__}); re-export it with 'aeops train'") from None
    serve._aeops_keepalive = loaded  # the signature alone does not keep the variables alive
    return serve, metadata
