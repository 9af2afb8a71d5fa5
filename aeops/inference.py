"""The RunInference model handler: batches of uint8 images -> restored uint8 images, over our SavedModel.

Beam's own TensorFlow handler loads with Keras 3's ``load_model``, which rejects SavedModel directories
(apache/beam#30616), so this handler opens the model with ``tf.saved_model.load`` (via
:func:`aeops.model.load`) and calls its ``serving_default`` signature.

Images of different sizes share a batch by padding: each image is padded (mirror) to its own *bucket
shape*, height and width rounded up to ``pad_multiple``, and the handler runs one sub-batch per bucket
shape (in calls of at most ``max_batch_pixels`` padded pixels), then crops every result back. Because the pad
depends only on the image's own size, an image's pixels do not depend on which other images shared its
batch (up to float-kernel rounding; see ``deterministic``). The padded pixels are counted, so the
overhead of bucketing is measured, not guessed.

With ``overlap`` the model calls run on a thread of the handler's own, and :class:`CollectRestored` (right
after RunInference) waits for them, so that the pipeline's other stages run while the model does. A model
the launching process already loaded can be handed to the handler (:func:`handed_over`) instead of being
loaded twice in one process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections import defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult
from apache_beam.utils.windowed_value import WindowedValue

from aeops import storage

NAMESPACE = "aeops"
# Bucket boundaries over padded area (pixels): batches mix sizes only within one of these ranges.
AREA_BOUNDARIES = [s * s for s in (64, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072)]
# Padded pixels per model call by default (``inference.max_batch_pixels``): a batch of large images is fed
# in calls of at most this many pixels (one image at least). The network's activations grow with the
# pixels of a call, not of an image: eight 16-megapixel variants in one call held several gigabytes; at
# this bound a call holds what one megapixel image does (above it the model itself restores in tiles), and
# small images still batch. On a GPU it is the knob that keeps a call inside the device's memory.
MAX_CALL_PIXELS = 1 << 20
# Padded pixels :class:`GroupByBucketShape` may hold, in model calls' worth: beyond it the largest group
# goes on unfilled, so the buffer stays bounded however many bucket shapes a bundle has.
BUFFERED_CALLS = 8
# GroupByBucketShape's group of the images the model will not restore: no pixels through the model, so a
# batch of them is a full one.
UNRESTORED = (0, 0)


def bucket_shape(shape: tuple[int, ...], multiple: int) -> tuple[int, int]:
    """(height, width) rounded up to ``multiple``: the shape an image is padded to for batching."""
    return -(-shape[0] // multiple) * multiple, -(-shape[1] // multiple) * multiple


def images_per_call(height: int, width: int, max_batch_size: int, max_batch_pixels: int) -> int:
    """How many images of one bucket shape make a full model call: the image count or the pixel budget."""
    return max(1, min(max_batch_size, max_batch_pixels // max(1, height * width)))


class Restorer:
    """The loaded serving function, in a class so RunInference can hold a weak reference to it.

    Only ``__call__`` is used: with ``model_copies`` the caller holds a proxy that forwards calls alone.
    """

    def __init__(self, serve):
        self.serve = serve

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.serve(images=batch)["reconstruction"].numpy()


# The model this process already loaded, offered to the handler's ``load_model`` (see :func:`handed_over`):
# {(model_dir, model SHA-256): serving function}, one entry at most.
_handed_over: dict[tuple[str, str], Callable] = {}


@contextlib.contextmanager
def handed_over(model_dir: str, model_sha256: str, serve: Callable | None) -> Iterator[None]:
    """Offer ``serve``, already loaded from ``model_dir``, to a handler of that model in this process while the
    block runs; ``None`` offers nothing.

    The launching process loads the model once to check it (:func:`aeops.preflight.check_model`); the
    in-memory DirectRunner then runs the handler in that same process, which would load it a second time
    (about a second). The first handler that loads this model and hash takes it; the offer ends with the block,
    so a model no handler took is not held on to.
    """
    _handed_over.clear()
    if serve is not None:
        _handed_over[(model_dir, model_sha256)] = serve
    try:
        yield
    finally:
        _handed_over.clear()


class Failure(NamedTuple):
    """What the handler returns in place of a restored image the model failed on: ``Type: message``."""

    reason: str


def error_line(error: BaseException) -> str:
    """``Type: the line of its message that says what went wrong``.

    TensorFlow's messages start with "Graph execution error:" and the Python stack of the failing node;
    the last line that is not a node, op or stack reference is the one naming the failure.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines
              if not line.startswith(("[[", "Graph execution error", "Detected at node", "File "))]
    text = (useful or lines or [""])[-1]
    return f"{type(error).__name__}: {text.split(' [Op:', 1)[0].split('[[', 1)[0].strip()}"


@dataclass
class Tally:
    """What a batch's model calls cost, counted into Beam metrics by :meth:`count` on the bundle's thread
    (Beam's metrics belong to the thread running the bundle: an increment on the model thread is lost)."""

    real: int = 0
    padded: int = 0
    calls: list[int] = field(default_factory=list)  # images per model call

    def add(self, images: Sequence[np.ndarray], height: int, width: int) -> None:
        self.real += sum(image.shape[0] * image.shape[1] for image in images)
        self.padded += len(images) * height * width
        self.calls.append(len(images))

    def count(self) -> None:
        Metrics.counter(NAMESPACE, "inference_real_pixels").inc(self.real)
        Metrics.counter(NAMESPACE, "inference_padded_pixels").inc(self.padded)
        calls = Metrics.distribution(NAMESPACE, "inference_batch_size")
        for size in self.calls:
            calls.update(size)


class Pending(NamedTuple):
    """The place of an image's result in a batch the model thread is still restoring (``inference.overlap``)."""

    batch: Future  # -> (results, Tally) of ImageRestorationHandler.restore_batch
    row: int

    def __reduce__(self):
        # Beam encodes a sample of the elements to estimate their size: that needs the placeholder to pickle,
        # though it only makes sense in this process, where the model thread runs.
        return _elsewhere, (self.row,)


def _elsewhere(row: int):
    raise RuntimeError(f"a restored image (row {row} of its batch) was sent to another process before its batch "
                       "was done: CollectRestored must run right after RunInference, in the same stage")


class Restorable(NamedTuple):
    """An image and whether the model should restore it (``inference.fraction`` picks, by a stable hash).

    Unpicked images ride through RunInference untouched instead of bypassing it: splitting the stream
    (Partition) and merging it again (Flatten) makes the DirectRunner hold every decoded image in memory,
    and its multi-threaded mode was seen to drop elements at that merge.
    """

    image: np.ndarray
    restore: bool = True


class ImageRestorationHandler(ModelHandler[Restorable, PredictionResult, Restorer]):
    """:class:`Restorable` in; ``PredictionResult(example=image, inference=restored uint8 (H, W, 3), None
    when not picked, or a :class:`Failure`)``.

    One model per worker process, shared by its threads (RunInference's ``shared.Shared`` handle). When
    the model fails on a sub-batch, its images are retried one by one, so that only the image the model
    rejects fails and its batch-mates are restored as if they had been batched without it.
    """

    def __init__(
        self,
        model_dir: str,
        *,
        pad_multiple: int = 32,
        min_batch_size: int = 1,
        max_batch_size: int = 16,
        max_batch_duration_secs: float | None = None,
        deterministic: bool = False,
        model_copies: int | None = None,
        max_batch_pixels: int = MAX_CALL_PIXELS,
        model_sha256: str = "",
        overlap: bool = False,
        precision: str = "float32",
    ):
        multiple = pad_multiple
        bucketing = {}
        if max_batch_duration_secs is not None:
            # Length bucketing only exists on Beam's stateful batching path, which this duration enables.
            bucketing = dict(
                max_batch_duration_secs=max_batch_duration_secs,
                batch_length_fn=lambda element: _padded_area(element, multiple),
                batch_bucket_boundaries=AREA_BOUNDARIES,
            )
        super().__init__(
            min_batch_size=1 if deterministic else min_batch_size,
            max_batch_size=1 if deterministic else max_batch_size,
            env_vars={"TF_FORCE_GPU_ALLOW_GROWTH": "true"},
            model_copies=model_copies,
            **bucketing,
        )
        self.model_dir = model_dir
        self.model_sha256 = model_sha256
        self.pad_multiple = pad_multiple
        self.max_batch_pixels = max_batch_pixels
        self.deterministic = deterministic
        self.overlap = overlap
        self.precision = precision
        self._model_thread: ThreadPoolExecutor | None = None  # made where the handler runs, after pickling

    def load_model(self) -> Restorer:
        import tensorflow as tf

        from aeops.model import load

        if self.deterministic:
            tf.config.experimental.enable_op_determinism()
        serve = _handed_over.pop((self.model_dir, self.model_sha256), None)
        if serve is None:
            serve, _ = load(local_copy(self.model_dir), self.precision)
        return Restorer(serve)

    def run_inference(
        self, batch: Sequence[Restorable], model: Restorer, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        """The batch's results; with ``overlap``, placeholders (:class:`Pending`) while the model thread runs it."""
        if not self.overlap:
            results, tally = self.restore_batch(batch, model)
            tally.count()
            return results
        if self._model_thread is None:
            self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="aeops-model")
        restored = self._model_thread.submit(self.restore_batch, list(batch), model)
        return [PredictionResult(item.image, Pending(restored, row)) for row, item in enumerate(batch)]

    def restore_batch(self, batch: Sequence[Restorable], model: Restorer) -> tuple[list[PredictionResult], Tally]:
        """(a result per image, in input order; what the model calls cost), the model's failures included."""
        results = [PredictionResult(item.image, None) for item in batch]
        tally = Tally()
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, item in enumerate(batch):
            if item.restore:
                groups[bucket_shape(item.image.shape, self.pad_multiple)].append(index)
        for (height, width), indices in groups.items():
            per_call = images_per_call(height, width, len(indices), self.max_batch_pixels)
            for start in range(0, len(indices), per_call):
                call = indices[start : start + per_call]
                try:
                    self._restore(batch, call, height, width, model, results, tally)
                except Exception:  # noqa: BLE001 - which image failed is found by retrying each alone
                    for i in call:
                        try:
                            self._restore(batch, [i], height, width, model, results, tally)
                        except Exception as alone:  # noqa: BLE001 - this image is the culprit
                            results[i] = PredictionResult(batch[i].image, Failure(error_line(alone)))
        return results, tally

    def _restore(self, batch, indices: list[int], height: int, width: int, model: Restorer, results: list,
                 tally: Tally) -> None:
        """One model call on ``batch[indices]``, padded to (height, width); results cropped back into place."""
        images = [batch[i].image for i in indices]
        restored = model(np.stack([pad_to(image, height, width) for image in images]))
        for row, (i, image) in enumerate(zip(indices, images)):
            results[i] = PredictionResult(image, np.ascontiguousarray(restored[row, : image.shape[0], : image.shape[1]]))
        tally.add(images, height, width)

    def get_num_bytes(self, batch: Sequence[Restorable]) -> int:
        return sum(item.image.nbytes for item in batch)

    def get_metrics_namespace(self) -> str:
        return NAMESPACE


class CollectRestored(beam.DoFn):
    """Keyed RunInference results whose inference is :class:`Pending` in, the same with the restored image (or
    :class:`Failure`) out, in their order, once their batch is done; at most ``in_flight`` batches wait here.

    With ``inference.overlap`` the handler hands each batch to its model thread and returns at once, so the
    bundle's thread goes on reading, decoding and augmenting the next batch while the model runs this one,
    and encodes this one's images while the model runs the next (TensorFlow releases the GIL in its ops).
    What is in flight is bounded: with ``in_flight`` 1, one batch in the model and the next one queued
    behind it while this step waits for the first. Batches are formed as without overlap and each image's
    pixels come from the same call, so the outputs are the same bytes (CONTRACT §4). A placeholder means
    nothing outside this process: this step follows RunInference in the same fused stage (both are in
    :class:`aeops.stages.Restore`).
    """

    def __init__(self, in_flight: int = 1):
        self.in_flight = in_flight

    def start_bundle(self):
        self._waiting: deque[WindowedValue] = deque()
        self._batches: deque[Future] = deque()

    def process(self, element, timestamp=beam.DoFn.TimestampParam, window=beam.DoFn.WindowParam):
        batch = element[1].inference.batch
        self._waiting.append(WindowedValue(element, timestamp, [window]))
        if not self._batches or self._batches[-1] is not batch:
            self._batches.append(batch)
        while len(self._batches) > self.in_flight:
            yield from self._release_oldest()

    def finish_bundle(self):
        while self._batches:
            yield from self._release_oldest()

    def _release_oldest(self) -> Iterator[WindowedValue]:
        batch = self._batches.popleft()
        results, tally = batch.result()  # waits for the model thread; re-raises what escaped the handler
        tally.count()
        while self._waiting and self._waiting[0].value[1].inference.batch is batch:
            waiting = self._waiting.popleft()
            key, pending = waiting.value
            yield waiting.with_value((key, results[pending.inference.row]))


class GroupByBucketShape(beam.DoFn):
    """Keyed :class:`Restorable` elements reordered within the bundle so that a bucket shape's images arrive
    together, a full model call (:func:`images_per_call`) at a time; what is left goes at the bundle's end.

    Streaming ``BatchElements`` batches consecutive elements, so a batch of 8 mixed sizes became ~3 model
    calls of 2-3 images (431 calls for 137 batches); after this, a batch is one shape, as the model-alone
    ceiling's are. Only the order changes within a bundle, never an image (CONTRACT §4), and at most
    :data:`BUFFERED_CALLS` calls' worth of pixels wait here, so memory stays flat. Images the model will
    not restore form batches of their own, so that they do not shift the others' batch boundaries.
    """

    def __init__(self, pad_multiple: int, max_batch_size: int, max_batch_pixels: int):
        self.pad_multiple = pad_multiple
        self.max_batch_size = max_batch_size
        self.max_batch_pixels = max_batch_pixels

    def start_bundle(self):
        self._groups: dict[tuple[int, int], list[WindowedValue]] = {}
        self._pixels = 0

    def process(self, element, timestamp=beam.DoFn.TimestampParam, window=beam.DoFn.WindowParam):
        image, restore = element[1]
        shape = bucket_shape(image.shape, self.pad_multiple) if restore else UNRESTORED
        group = self._groups.setdefault(shape, [])
        group.append(WindowedValue(element, timestamp, [window]))
        self._pixels += shape[0] * shape[1]
        if len(group) >= images_per_call(*shape, self.max_batch_size, self.max_batch_pixels):
            yield from self._release(shape)
        elif self._pixels > BUFFERED_CALLS * self.max_batch_pixels:
            yield from self._release(max(self._groups, key=lambda s: len(self._groups[s]) * s[0] * s[1]))

    def finish_bundle(self):
        for shape in list(self._groups):
            yield from self._release(shape)

    def _release(self, shape: tuple[int, int]) -> list[WindowedValue]:
        group = self._groups.pop(shape)
        self._pixels -= len(group) * shape[0] * shape[1]
        return group


def pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Mirror-pad at the bottom and right to ``(height, width)`` (in rounds: a mirror adds at most its size)."""
    while image.shape[0] < height or image.shape[1] < width:
        add_h = min(height - image.shape[0], image.shape[0])
        add_w = min(width - image.shape[1], image.shape[1])
        image = np.pad(image, ((0, add_h), (0, add_w), (0, 0)), mode="symmetric")
    return image


def _padded_area(element: tuple[Any, Restorable], multiple: int) -> int:
    """The batching length of a keyed element: its padded area (what the model computes on)."""
    height, width = bucket_shape(element[1].image.shape, multiple)
    return height * width


def local_copy(model_dir: str) -> str:
    """A local directory holding the model: ``model_dir`` itself, or a copy of a ``gs://`` one.

    Copying through :mod:`aeops.storage` (Beam's filesystems) makes any store Beam can read, the test
    emulator included, a place a model can live, whatever TensorFlow's own filesystems support.
    """
    if not storage.is_remote(model_dir):
        return model_dir
    base = model_dir.rstrip("/")
    target = tempfile.mkdtemp(prefix="aeops-model-")
    for path, _ in storage.match(base + "/**"):
        local = os.path.join(target, path[len(base) + 1 :])
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with storage.open_read(path) as source, open(local, "wb") as sink:
            shutil.copyfileobj(source, sink)
    return target
