"""Memory per image is bounded: what a 16-megapixel image costs on its way through a worker (issue 11.10).

Allocations are read with ``tracemalloc``, which sees numpy's and OpenCV's output arrays; peak RSS of a
whole run is ``benchmarks/memory.py``'s job.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from aeops import metrics


def traced_peak_mib(function, *args) -> float:
    tracemalloc.start()
    try:
        function(*args)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def pair():
    """A 2000x2000 image (11.4 MiB) and a noisy copy."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2000, 2000, 3), np.uint8)
    return a, np.clip(a.astype(np.int16) + rng.integers(-20, 20, a.shape, dtype=np.int16), 0, 255).astype(np.uint8)


def test_ssim_and_psnr_hold_a_band_not_float_copies_of_the_image(pair):
    """Whole-image SSIM held eleven float32 planes (0.5 GiB here, 2 GiB at 16 MP); PSNR three."""
    a, b = pair
    assert traced_peak_mib(metrics.ssim, a, b) < 100
    assert traced_peak_mib(metrics.psnr, a, b) < 1


def test_banded_ssim_is_the_reference_ssim():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (700, 90, 3), np.uint8)  # several bands, the last one short
    b = np.clip(a.astype(np.int16) + rng.integers(-40, 40, a.shape, dtype=np.int16), 0, 255).astype(np.uint8)
    reference = structural_similarity(a, b, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False)
    assert metrics.ssim(a, b) == pytest.approx(reference, abs=1e-6)
    assert metrics.psnr(a, b) == pytest.approx(10 * np.log10(255**2 / np.mean((a.astype(float) - b) ** 2)), abs=1e-9)


def test_a_batch_of_large_images_reaches_the_model_in_calls_of_bounded_pixels(tiny_model_dir):
    """Eight variants of a large image went to the model in one call: its activations grew with the batch."""
    from aeops.inference import MAX_CALL_PIXELS, ImageRestorationHandler, Restorable

    handler = ImageRestorationHandler(tiny_model_dir)
    restorer = handler.load_model()
    calls = []

    def model(batch: np.ndarray) -> np.ndarray:  # the real model, its calls recorded
        calls.append(batch.shape)
        return restorer(batch)

    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (512, 500, 3), np.uint8) for _ in range(6)] + [rng.integers(0, 256, (40, 40, 3), np.uint8)] * 2
    results = handler.run_inference([Restorable(image) for image in images], model)
    assert [r.inference.shape for r in results] == [image.shape for image in images]
    assert sorted(calls) == [(2, 64, 64, 3), (2, 512, 512, 3), (4, 512, 512, 3)]
    assert max(n * h * w for n, h, w, _ in calls) <= MAX_CALL_PIXELS


def tile_loops(model_dir) -> dict[str, int]:
    """``parallel_iterations`` of every while loop in a SavedModel's graph (the tile loops of the export)."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((Path(model_dir) / "saved_model.pb").read_bytes())
    return {node.name: node.attr["parallel_iterations"].i for graph in saved.meta_graphs
            for function in graph.graph_def.library.function for node in function.node_def
            if node.op in ("While", "StatelessWhile")}


@pytest.mark.parametrize("which", ["trained", "shipped"])
def test_exported_models_restore_one_tile_at_a_time(which, tiny_model_dir):
    """The loops' default of 10 parallel iterations let a many-core worker hold ten tiles' activations."""
    from aeops.model import PRETRAINED

    loops = tile_loops(tiny_model_dir if which == "trained" else PRETRAINED)
    assert len(loops) == 2 and set(loops.values()) == {1}, loops


@pytest.mark.slow
def test_one_16_megapixel_image_through_the_whole_job_peaks_under_2_gib():
    """The issue's case: a 4097x4097 image took 6.0 GB of peak RSS (minutes of CPU: marked slow)."""
    result = subprocess.run([sys.executable, "benchmarks/memory.py", "--side", "4097"], capture_output=True,
                            text=True, timeout=1800, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
    peak = float(re.search(r"peak RSS (\d+) MiB", result.stdout).group(1))
    assert peak < 2048, result.stdout
