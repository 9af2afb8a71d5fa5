"""The RunInference handler: bucket shapes, mirror padding, per-shape sub-batches cropped back in input order,
and Beam's length-bucketed batching switched on by ``max_batch_duration_secs``.

The model here is a real SavedModel whose ``serving_default`` mirrors each image left-right: its output shows
exactly what the handler fed it, the padding included. A batch the model fails on costs only the image it rejects
(a real SavedModel that rejects one size).
"""

from __future__ import annotations

import bisect
import pickle
import threading
from collections import defaultdict
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import GlobalWindow

from aeops import storage
from aeops import model as aeops_model
from aeops.inference import (AREA_BOUNDARIES, BUFFERED_CALLS, CollectRestored, Failure, GroupByBucketShape,
                             ImageRestorationHandler, Pending, Restorable, bucket_shape, handed_over, images_per_call,
                             local_copy, pad_to)
from tests.model_fixtures import REJECTED_HEIGHT


@pytest.fixture(scope="module")
def mirror_model(tmp_path_factory) -> str:
    import tensorflow as tf

    class Mirror(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
        def serve(self, images):
            return {"reconstruction": tf.reverse(images, axis=[2])}

    module = Mirror()
    path = tmp_path_factory.mktemp("mirror")
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return str(path)


def image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "shape, multiple, expected",
    [((30, 40, 3), 32, (32, 64)), ((32, 64, 3), 32, (32, 64)), ((33, 1, 3), 32, (64, 32)), ((1, 1, 3), 8, (8, 8))],
)
def test_bucket_shape_rounds_each_side_up(shape, multiple, expected):
    assert bucket_shape(shape, multiple) == expected


@pytest.mark.parametrize("height, width, to_h, to_w",
                         [(5, 7, 8, 16), (8, 8, 64, 64), (3, 40, 32, 40), (9, 9, 9, 9), (300, 257, 320, 288)])
def test_pad_to_mirrors_at_the_bottom_and_right(height, width, to_h, to_w):
    source = image(height, width)
    padded = pad_to(source, to_h, to_w)
    assert padded.shape == (to_h, to_w, 3)
    np.testing.assert_array_equal(padded[:height, :width], source)
    reference = source
    while reference.shape[0] < to_h or reference.shape[1] < to_w:  # numpy's symmetric pad, one round at a time
        reference = np.pad(reference, ((0, min(to_h - reference.shape[0], reference.shape[0])),
                                       (0, min(to_w - reference.shape[1], reference.shape[1])), (0, 0)), "symmetric")
    np.testing.assert_array_equal(padded, reference)
    if to_w > width:
        np.testing.assert_array_equal(padded[:height, width], source[:, width - 1])


def test_run_inference_pads_per_bucket_crops_back_and_keeps_the_order(mirror_model):
    handler = ImageRestorationHandler(mirror_model, pad_multiple=16)
    model = handler.load_model()
    batch = [Restorable(image(20, 30, 1)), Restorable(image(5, 7, 2), restore=False), Restorable(image(17, 31, 3)),
             Restorable(image(9, 12, 4))]
    results = list(handler.run_inference(batch, model))
    assert [r.example is item.image for r, item in zip(results, batch)] == [True] * 4
    assert results[1].inference is None  # not picked for the model: passes through untouched
    for item, result in zip(batch, results):
        if item.restore:
            height, width = item.image.shape[:2]
            padded = pad_to(item.image, *bucket_shape(item.image.shape, 16))
            np.testing.assert_array_equal(result.inference, padded[:, ::-1][:height, :width])
            assert result.inference.flags.c_contiguous
    assert handler.get_num_bytes(batch) == sum(item.image.nbytes for item in batch)


def test_bucketing_is_only_on_the_stateful_path(mirror_model):
    streaming = ImageRestorationHandler(mirror_model, min_batch_size=2, max_batch_size=8).batch_elements_kwargs()
    assert "length_fn" not in streaming and (streaming["min_batch_size"], streaming["max_batch_size"]) == (2, 8)
    bucketed = ImageRestorationHandler(mirror_model, max_batch_duration_secs=0.5).batch_elements_kwargs()
    assert bucketed["max_batch_duration_secs"] == 0.5 and bucketed["bucket_boundaries"] == AREA_BOUNDARIES
    pinned = ImageRestorationHandler(mirror_model, min_batch_size=4, max_batch_size=8, deterministic=True)
    assert (pinned.batch_elements_kwargs()["min_batch_size"], pinned.batch_elements_kwargs()["max_batch_size"]) == (1, 1)


def test_beam_batches_never_mix_area_buckets(mirror_model):
    """Beam's own BatchElements, given this handler's arguments, keeps each area bucket in batches of its own."""
    handler = KeyedModelHandler(ImageRestorationHandler(mirror_model, pad_multiple=32, min_batch_size=2,
                                                        max_batch_size=16, max_batch_duration_secs=0.05))
    shapes = [(30, 40), (47, 33), (64, 64), (30, 40), (120, 100), (47, 33), (30, 40), (64, 60)] * 2
    elements = [(f"k{i}", Restorable(np.zeros((*shape, 3), np.uint8))) for i, shape in enumerate(shapes)]

    def area_buckets(batch):
        areas = {np.prod(bucket_shape(item.image.shape, 32)) for _, item in batch}
        return len({sum(area >= b for b in AREA_BOUNDARIES) for area in areas}), len(batch)

    with beam.Pipeline() as pipeline:
        batches = (pipeline | beam.Create(elements, reshuffle=False)
                   | beam.BatchElements(**handler.batch_elements_kwargs()) | beam.Map(area_buckets))
        assert_that(batches | "Buckets" >> beam.Map(lambda counted: counted[0]) | beam.Distinct(), equal_to([1]),
                    label="OneBucketPerBatch")
        assert_that(batches | "Sizes" >> beam.Map(lambda counted: counted[1]) | beam.CombineGlobally(sum),
                    equal_to([len(elements)]), label="EveryElementBatched")


def test_streaming_batches_after_group_by_bucket_shape_are_one_shape_each():
    """Batches of 4 over 8 interleaved sizes: without the regrouping each batch held 2-4 bucket shapes."""
    shapes = [(30, 40), (47, 33), (64, 64), (120, 100), (5, 7), (64, 60), (90, 20), (33, 33)] * 4
    restorable = [Restorable(np.zeros((*shape, 3), np.uint8)) for shape in shapes]
    for at in (4, 13, 22, 31):  # four images the model is not to restore, among the others
        restorable.insert(at, Restorable(np.zeros((30, 40, 3), np.uint8), restore=False))
    elements = [(f"k{i}", item) for i, item in enumerate(restorable)]

    def shapes_in(batch):
        return len({bucket_shape(item.image.shape, 32) for _, item in batch if item.restore}), sorted(k for k, _ in batch)

    with beam.Pipeline() as pipeline:
        batches = (pipeline | beam.Create(elements, reshuffle=False)
                   | beam.ParDo(GroupByBucketShape(32, 4, 1 << 20))
                   | beam.BatchElements(min_batch_size=4, max_batch_size=4) | beam.Map(shapes_in))
        # The 4 unrestored images fill one batch of their own; every other batch is one shape.
        assert_that(batches | "Shapes" >> beam.Map(lambda counted: counted[0]) | beam.combiners.Count.PerElement(),
                    equal_to([(0, 1), (1, 8)]), label="OneShapePerBatch")
        assert_that(batches | "Keys" >> beam.FlatMap(lambda counted: counted[1]),
                    equal_to([key for key, _ in elements]), label="EveryElementOnce")


def test_group_by_bucket_shape_holds_a_bounded_number_of_pixels():
    """Many bucket shapes that never fill a call: the largest group goes on unfilled past the buffer bound, and
    only then (a released group's pixels stop counting as held, so the buffer does not empty itself early)."""
    budget = 64 * 64 * 4
    bound = BUFFERED_CALLS * budget
    grouping = GroupByBucketShape(8, 16, budget)
    grouping.start_bundle()
    held = passed = unfilled = 0
    for i in range(400):  # every shape once: a group of one is a full call only when one image fills the budget
        shape = (8 + 8 * (i % 50), 8 + 8 * (i // 50))
        element = (f"k{i}", Restorable(np.zeros((*shape, 3), np.uint8)))
        held += shape[0] * shape[1]
        out = list(grouping.process(element, 0, GlobalWindow()))
        if out and images_per_call(*shape, 16, budget) > 1:
            assert held > bound, f"an unfilled group went on with {held} of {bound} pixels held"
            unfilled += 1
        held -= sum(v.value[1].image.shape[0] * v.value[1].image.shape[1] for v in out)
        passed += len(out)
        assert held <= bound
    flushed = list(grouping.finish_bundle())
    assert passed + len(flushed) == 400 and unfilled > 0


def test_area_buckets_keep_a_batch_within_a_narrow_range_of_sizes(mirror_model):
    """Between 64x64 and 3072x3072 padded pixels, images that may share a batch differ in area by less than 4x,
    so no small image waits in a batch for a call as costly as a large one's (beyond, every size is one bucket)."""
    kwargs = ImageRestorationHandler(mirror_model, max_batch_duration_secs=0.5).batch_elements_kwargs()
    sides = range(32, 3072 + 1, 32)
    areas = sorted({h * w for h in sides for w in sides if 64 * 64 <= h * w < 3072 * 3072})
    buckets = defaultdict(list)
    for area in areas:
        buckets[bisect.bisect_right(kwargs["bucket_boundaries"], area)].append(area)
    assert max(max(group) / min(group) for group in buckets.values()) < 4


def test_model_calls_hold_at_most_the_pixel_budget(mirror_model):
    """``max_batch_pixels`` splits one shape's images into calls that fit it (one image at least)."""
    handler = ImageRestorationHandler(mirror_model, pad_multiple=32, max_batch_size=8, max_batch_pixels=2 * 32 * 64)
    restorer = handler.load_model()
    calls = []

    def model(batch: np.ndarray) -> np.ndarray:  # the real model, its calls recorded
        calls.append(batch.shape[:3])
        return restorer(batch)

    images = [image(30, 40, seed) for seed in range(5)] + [image(100, 90)]
    results = handler.run_inference([Restorable(i) for i in images], model)
    assert calls == [(2, 32, 64), (2, 32, 64), (1, 32, 64), (1, 128, 96)]  # 128x96 alone is over the budget
    for item, result in zip(images, results):  # the mirror of the padded image, cropped back
        mirrored = pad_to(item, *bucket_shape(item.shape, 32))[:, ::-1]
        np.testing.assert_array_equal(result.inference, mirrored[: item.shape[0], : item.shape[1]])


def test_a_failed_sub_batch_is_retried_image_by_image(one_size_rejecting_model):
    handler = ImageRestorationHandler(one_size_rejecting_model, pad_multiple=16)
    model = handler.load_model()
    rng = np.random.default_rng(0)
    culprit = rng.integers(0, 256, (REJECTED_HEIGHT - 3, 20, 3), np.uint8)  # padded to 32 high: rejected
    fine = [rng.integers(0, 256, (40, 20 + i, 3), np.uint8) for i in range(4)]  # padded to 48x32: accepted
    batch = [Restorable(fine[0]), Restorable(culprit), Restorable(fine[1]), Restorable(culprit, restore=False),
             Restorable(fine[2]), Restorable(fine[3])]
    results = handler.run_inference(batch, model)
    assert [type(r.inference).__name__ for r in results] == ["ndarray", "Failure", "ndarray", "NoneType",
                                                             "ndarray", "ndarray"]
    for item, result in zip(batch, results):
        assert result.example is item.image
        if isinstance(result.inference, np.ndarray):
            np.testing.assert_array_equal(result.inference, item.image)  # an identity model, cropped back
    failure = results[1].inference
    assert isinstance(failure, Failure) and failure.reason.startswith("InvalidArgumentError: ")
    assert f"rejects images {REJECTED_HEIGHT} pixels high" in failure.reason and "\n" not in failure.reason


@pytest.mark.parametrize("overlap", [False, True], ids=["in-series", "overlapped"])
def test_padded_and_real_pixels_are_counted_through_run_inference(mirror_model, overlap):
    """The counters behind the manifest's padding overhead, read back from a real Beam run; with ``overlap``
    the model calls run on the handler's thread, where Beam's metrics would be lost, and are counted still."""
    handler = KeyedModelHandler(ImageRestorationHandler(mirror_model, pad_multiple=32, max_batch_size=4, overlap=overlap))
    shapes = [(30, 40), (47, 33), (64, 64), (30, 40), (5, 7)]
    elements = [(f"k{i}", Restorable(np.zeros((*shape, 3), np.uint8), restore=i != 1)) for i, shape in enumerate(shapes)]
    pipeline = beam.Pipeline()
    results = pipeline | beam.Create(elements) | RunInference(handler)
    if overlap:
        results = results | beam.ParDo(CollectRestored())
    assert_that(results | beam.MapTuple(lambda key, result: (key, None if result.inference is None
                                                             else result.inference.shape[:2])),
                equal_to([(f"k{i}", None if i == 1 else shape) for i, shape in enumerate(shapes)]))
    result = pipeline.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(MetricsFilter())["counters"]}
    restored = [shape for i, shape in enumerate(shapes) if i != 1]
    assert counters["inference_real_pixels"] == sum(h * w for h, w in restored)
    assert counters["inference_padded_pixels"] == sum(np.prod(bucket_shape(shape, 32)) for shape in restored)
    calls = {d.key.metric.name: d.committed for d in result.metrics().query(MetricsFilter())["distributions"]}
    sizes = calls["inference_batch_size"]  # images per model call: every restored image in exactly one call
    assert sizes.sum == len(restored) and 1 <= sizes.count <= len(restored) and sizes.max <= 4


def test_the_handlers_default_pixel_budget_is_the_configs():
    """A handler built without ``max_batch_pixels`` (a user's own pipeline) bounds its calls as the documented
    ``inference.max_batch_pixels`` default does: one megapixel."""
    from aeops.config import InferenceConfig

    assert ImageRestorationHandler("model").max_batch_pixels == InferenceConfig().max_batch_pixels == 1 << 20


def test_with_overlap_the_model_runs_a_batch_on_its_own_thread_while_the_next_one_comes(mirror_model):
    """run_inference returns while the model still works on the batch; CollectRestored hands the results on,
    in order and equal to the in-series handler's, once the next batch has come (or at the bundle's end)."""
    handler = ImageRestorationHandler(mirror_model, pad_multiple=16, overlap=True)
    restorer = handler.load_model()
    started, finish = threading.Event(), threading.Event()
    model_threads = []

    def busy_model(batch: np.ndarray) -> np.ndarray:  # the real model, held busy until the test lets it finish
        model_threads.append(threading.get_ident())
        started.set()
        assert finish.wait(10)
        return restorer(batch)

    batches = [[Restorable(image(20, 30, 1)), Restorable(image(5, 7, 2), restore=False), Restorable(image(17, 31, 3))],
               [Restorable(image(40, 9, 4)), Restorable(image(9, 12, 5))]]
    expected = [result for batch in batches for result in ImageRestorationHandler(mirror_model, pad_multiple=16)
                .run_inference(batch, restorer)]
    collect = CollectRestored(in_flight=1)
    collect.start_bundle()

    def collect_all(batch, first):
        results = handler.run_inference(batch, busy_model)
        assert all(isinstance(r.inference, Pending) for r in results)
        return [v.value for n, r in enumerate(results) for v in collect.process((first + n, r), 0, GlobalWindow())]

    assert collect_all(batches[0], 0) == []  # returned at once: nothing is done yet
    assert started.wait(10) and not finish.is_set() and model_threads[0] != threading.get_ident()
    finish.set()
    released = collect_all(batches[1], 3)  # the second batch comes: the first one goes on
    assert [key for key, _ in released] == [0, 1, 2]
    released += [v.value for v in collect.finish_bundle()]
    assert [key for key, _ in released] == [0, 1, 2, 3, 4]
    for (_, got), want in zip(released, expected):
        assert got.example is want.example
        assert (got.inference is None) == (want.inference is None)
        if want.inference is not None:
            np.testing.assert_array_equal(got.inference, want.inference)
    assert set(model_threads) == {model_threads[0]}  # one model thread: calls never run two at a time
    with pytest.raises(RuntimeError, match="same stage"):  # Beam pickles it to size it; no process can use it
        pickle.loads(pickle.dumps(Pending(None, 3)))


def test_a_model_handed_over_in_this_process_is_not_loaded_again(mirror_model):
    """The launcher's loaded model goes to the first handler of that model and hash; nothing outlives the offer."""
    loaded, _ = aeops_model.load(mirror_model)
    handler = ImageRestorationHandler(mirror_model, model_sha256="abc")
    loads = aeops_model.loads
    with handed_over(mirror_model, "abc", loaded):
        assert handler.load_model().serve is loaded
        assert handler.load_model().serve is not loaded  # taken once: a second handler loads its own
    assert aeops_model.loads == loads + 1
    with handed_over(mirror_model, "another hash", loaded):
        assert handler.load_model().serve is not loaded
    with handed_over(mirror_model, "abc", loaded):
        pass
    assert handler.load_model().serve is not loaded  # the offer ended with its block
    assert aeops_model.loads == loads + 3


def test_a_model_on_gcs_is_copied_locally_and_loads(mirror_model, gcs_emulator):
    base = f"gs://{gcs_emulator}/models/mirror"
    local_files = {p.relative_to(mirror_model).as_posix(): p.read_bytes() for p in Path(mirror_model).rglob("*")
                   if p.is_file()}
    for rel, data in local_files.items():
        storage.write_bytes(f"{base}/{rel}", data)
    copy = local_copy(base + "/")
    assert {p.relative_to(copy).as_posix(): p.read_bytes() for p in Path(copy).rglob("*") if p.is_file()} == local_files
    assert local_copy(mirror_model) == mirror_model  # a local model is used where it is
    handler = ImageRestorationHandler(base, pad_multiple=8)
    [result] = handler.run_inference([Restorable(image(8, 8, 5))], handler.load_model())
    np.testing.assert_array_equal(result.inference, result.example[:, ::-1])
