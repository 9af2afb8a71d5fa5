"""The named PTransforms of the augmentation job, in the order a record meets them.

    ReadShards -> Augment -> Restore -> Encode -> WriteShards ----> Finalize (counts, report, manifest, LATEST)
         \\___________\\__________\\________\\____> WriteDeadLetter _/

Every stage that can fail for one record has a ``dead`` output: a :class:`Dead` row with the original
record, the stage and the reason, never a log line. Nothing between reading and writing forces a
shuffle (unless ``inference.max_batch_duration_secs`` asks for Beam's stateful shape bucketing), so
records stream through and memory stays flat however large the dataset.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.tfrecordio import WriteToTFRecord
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from aeops import codec, dataset_summary, schema, spatial, statistics, storage, tfrecord
from aeops.accounting import DeadTally, Stats, StatsCombine, publish_gate, raise_unless_reconciled
from aeops.config import PipelineConfig
from aeops.draw import draw
from aeops.errors import AeopsError, DecodeError, RecordError
from aeops.inference import (NAMESPACE, CollectRestored, Failure, GroupByBucketShape, ImageRestorationHandler,
                             Restorable)
from aeops.ops import Targets, augment, build
from aeops import progress as progress_files
from aeops.publish import MANIFEST, Publisher
from aeops.report import Sample, thumbnail, write_report
from aeops.seeding import variant_entropy

DEAD = "dead"
SAMPLE = "sample"
STAGES = ("read", "decode", "augment", "infer", "encode")
WARNINGS = "decode/warnings"  # counters of the library warnings decoding raised, by category


class Dead(NamedTuple):
    """One dead-letter row (CONTRACT §4): it stands for ``variants`` outputs that were not written."""

    record: bytes
    source: str
    stage: str
    reason: str
    variants: int

    @classmethod
    def of(cls, record: bytes, source: str, stage: str, error: BaseException | tuple, variants: int) -> "Dead":
        """The row for ``error``: an exception, or the (type, repr, traceback) triple RunInference's DLQ holds."""
        if isinstance(error, tuple):
            slug, message = getattr(error[0], "__name__", "error"), str(error[1])
        else:
            slug, message = getattr(error, "reason", None) or type(error).__name__, str(error)
        return cls(record, source, stage, f"{slug}: {message}"[:1000], variants)

    def serialize(self) -> bytes:
        return schema.dead_letter_example(self.record, self.source, self.stage, self.reason, self.variants)


@dataclass(frozen=True)
class Variant:
    """What travels with one output image: enough to write its record or its dead letter."""

    source: str
    record: bytes
    key: bytes
    variant: int
    ops: tuple
    restore: bool
    thumbnail: np.ndarray | None = None
    targets: Targets | None = None  # the record's spatial targets as the ops left them
    moved: bool = False  # whether a geometric op moved them (else the input's target features stand)


def count(name: str, stage: str | None = None):
    return Metrics.counter(NAMESPACE, f"{stage}/{name}" if stage else name)


def dead_counter(dead: Dead):
    return count(dead.reason.split(":", 1)[0], f"dead_letter/{dead.stage}")


# --- read ----------------------------------------------------------------------------------------


class _ReadFrames(beam.DoFn):
    """Frames of one shard, read by hand so that damage becomes a dead letter instead of a failed job.

    Progress counts the file's bytes as they are read (compressed bytes for GZIP: the sizes the run's total
    was summed from), and the whole file once it is done.
    """

    def __init__(self, outputs_per_record: int, progress: str | None = None):
        self.outputs_per_record = outputs_per_record
        self.progress = progress
        self.records = count("records_read", "read")

    def process(self, readable: fileio.ReadableFile):
        path = readable.metadata.path
        counted = 0
        with storage.open_read(path) as stream:
            for frame in tfrecord.read_frames(stream, tfrecord.is_gzip(path)):
                self.records.inc()
                position = stream.tell()
                progress_files.add(self.progress, bytes=position - counted, records=1)
                counted = position
                if frame.error:
                    dead = Dead(frame.data, path, "read", f"damaged_shard: {frame.error} at byte {frame.offset}",
                                self.outputs_per_record)
                    dead_counter(dead).inc()
                    yield beam.pvalue.TaggedOutput(DEAD, dead)
                else:
                    yield path, frame.data
        progress_files.add(self.progress, bytes=readable.metadata.size_in_bytes - counted)

    def finish_bundle(self):
        progress_files.flush(self.progress)


class ReadShards(beam.PTransform):
    """TFRecord shards matching ``pattern`` (local or gs://, GZIP by ``.gz``) -> (source file, record bytes)."""

    def __init__(self, pattern: str, outputs_per_record: int, progress: str | None = None):
        super().__init__()
        self.pattern = pattern
        self.outputs_per_record = outputs_per_record
        self.progress = progress

    def expand(self, pbegin):
        return (
            pbegin
            | "MatchShards" >> fileio.MatchFiles(self.pattern)
            | "SpreadShards" >> beam.Reshuffle()
            | "OpenShards" >> fileio.ReadMatches()
            | "ReadFrames"
            >> beam.ParDo(_ReadFrames(self.outputs_per_record, self.progress)).with_outputs(DEAD, main="records")
        )


# --- parse, decode, augment ----------------------------------------------------------------------


def restore_share(seed: int, key: bytes, variant: int) -> float:
    """A stable number in [0, 1): the variant is restored when it is below ``inference.fraction``."""
    digest = hashlib.sha256(b"aeops.restore\0" + variant_entropy(seed, key, variant).to_bytes(32, "big")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class _AugmentRecord(beam.DoFn):
    def __init__(self, config: PipelineConfig, restore: bool):
        self.config = config
        self.restore = restore
        self.decoded = count("records_decoded", "decode")
        self.augmented = count("variants_augmented", "augment")

    def setup(self):
        self.ops = build(self.config.augment.ops)

    def process(self, element: tuple[str, bytes]):
        source, serialized = element
        config = self.config
        outputs = config.augment.outputs_per_record
        layout = config.schema
        try:
            record = schema.parse(serialized, layout.image, layout.key)
            image, warned = codec.decode_quietly(record.image, config.decode.max_pixels)
            targets = spatial.read(record.example, layout, image.shape)
        except (RecordError, DecodeError) as error:
            yield self._dead(Dead.of(serialized, source, "decode", error, outputs))
            return
        self.decoded.inc()
        for category in warned:
            count(category, WARNINGS).inc()
        featured = featured_variant(record.key, config.augment.variants)
        first = 0 if config.augment.keep_original else 1
        for variant in range(first, config.augment.variants + 1):
            try:
                pixels, ops, moved = self._augment(image, record.key, variant, targets)
            except Exception as error:  # noqa: BLE001 - any op failure is this variant's dead letter
                yield self._dead(Dead.of(serialized, source, "augment", error, 1))
                continue
            self.augmented.inc()
            restore = self.restore and restore_share(config.seed, record.key, variant) < config.inference.fraction
            small = thumbnail(draw(image, targets)) if variant == featured else None
            yield Variant(source, serialized, record.key, variant, tuple(ops), restore, small, moved,
                          moved is not targets), pixels

    def _augment(self, image: np.ndarray, key: bytes, variant: int, targets: Targets | None):
        """(pixels, lineage, targets as the ops left them) of one variant; variant 0 is the source as it is."""
        if targets is None:
            return (*augment(self.ops, image, self.config.seed, key, variant), None)
        return augment(self.ops, image, self.config.seed, key, variant, targets)

    @staticmethod
    def _dead(dead: Dead):
        dead_counter(dead).inc()
        return beam.pvalue.TaggedOutput(DEAD, dead)


class Augment(beam.PTransform):
    """(source, record bytes) -> (Variant, uint8 image) per variant: parse, decode, draw the seeded ops."""

    def __init__(self, config: PipelineConfig, restore: bool):
        super().__init__()
        self.config = config
        self.restore = restore

    def expand(self, records):
        return records | "ParseDecodeAugment" >> beam.ParDo(_AugmentRecord(self.config, self.restore)).with_outputs(
            DEAD, main="variants"
        )


# --- restore (RunInference) ----------------------------------------------------------------------


def _failed_batch(element: tuple[list, BaseException]):
    """RunInference's DLQ holds whole failed batches: one dead letter per variant in them."""
    batch, error = element
    for variant, _ in batch:
        dead = Dead.of(variant.record, variant.source, "infer", error, 1)
        dead_counter(dead).inc()
        yield dead


def _unpack(variant: Variant, result):
    """(Variant, image, restored or None), or the dead letter of an image the model failed on alone."""
    if isinstance(result.inference, Failure):
        dead = Dead(variant.record, variant.source, "infer", result.inference.reason[:1000], 1)
        dead_counter(dead).inc()
        yield beam.pvalue.TaggedOutput(DEAD, dead)
    else:
        yield variant, result.example, result.inference


class Restore(beam.PTransform):
    """(Variant, image) -> (Variant, image, restored or None): the autoencoder through RunInference.

    Variants not selected for the model (``inference.fraction``) pass through the handler untouched;
    with the model stage off, RunInference is not in the graph at all. ``model_sha256`` lets the handler take
    the model the launching process already loaded (:func:`aeops.inference.handed_over`).
    """

    def __init__(self, config: PipelineConfig, model_dir: str | None, model_sha256: str = ""):
        super().__init__()
        self.config = config
        self.model_dir = model_dir
        self.model_sha256 = model_sha256

    def expand(self, variants):
        if self.model_dir is None:
            restored = variants | "NoModel" >> beam.MapTuple(lambda variant, image: (variant, image, None))
            return {"restored": restored, DEAD: variants.pipeline | "NoInferenceFailures" >> beam.Create([])}
        inference = self.config.inference
        # Streaming batches come whole from GroupByBucketShape: a fixed size keeps them aligned with its groups.
        by_shape = inference.max_batch_duration_secs is None and not inference.deterministic
        handler = KeyedModelHandler(
            ImageRestorationHandler(
                self.model_dir,
                pad_multiple=inference.pad_multiple,
                min_batch_size=inference.max_batch_size if by_shape else inference.min_batch_size,
                max_batch_size=inference.max_batch_size,
                max_batch_duration_secs=inference.max_batch_duration_secs,
                deterministic=inference.deterministic,
                model_copies=inference.model_copies,
                max_batch_pixels=inference.max_batch_pixels,
                model_sha256=self.model_sha256,
                overlap=inference.overlap,
                precision=inference.precision,
            )
        )
        selected = variants | "MarkSelected" >> beam.MapTuple(
            lambda variant, image: (variant, Restorable(image, variant.restore))
        )
        if by_shape:
            selected = selected | "GroupByBucketShape" >> beam.ParDo(
                GroupByBucketShape(inference.pad_multiple, inference.max_batch_size, inference.max_batch_pixels)
            )
        results, failures = selected | "RunInference" >> RunInference(handler).with_exception_handling()
        if inference.overlap:
            results = results | "CollectRestored" >> beam.ParDo(CollectRestored())
        unpacked = results | "Unpack" >> beam.FlatMapTuple(_unpack).with_outputs(DEAD, main="restored")
        failed = failures.failed_inferences | "SplitFailedBatches" >> beam.FlatMap(_failed_batch)
        dead = (unpacked[DEAD], failed) | "InferenceFailures" >> beam.Flatten()
        return {"restored": unpacked.restored, DEAD: dead}


# --- encode --------------------------------------------------------------------------------------


class _EncodeVariant(beam.DoFn):
    def __init__(self, config: PipelineConfig, model_sha256: str, progress: str | None):
        self.config = config
        self.model_sha256 = model_sha256
        self.progress = progress
        self.written = count("records_written", "encode")
        self.restored = count("variants_restored", "infer")
        self.dropped = count("boxes_dropped", "encode")

    def finish_bundle(self):
        progress_files.flush(self.progress)

    def process(self, element):
        variant, augmented, restored = element
        encode, layout = self.config.encode, self.config.schema
        final = augmented if restored is None else restored
        try:
            data = codec.encode(final, encode.format, encode.quality)
            record = schema.parse(variant.record, layout.image, layout.key)
            targets = spatial.write(record.example, layout, variant.targets if variant.moved else None)
            output = schema.output_example(
                record, data, encode.format, final.shape[0], final.shape[1], variant.variant,
                list(variant.ops), self.config.seed, "" if restored is None else self.model_sha256,
                layout.image, targets,
            )
        except Exception as error:  # noqa: BLE001 - an encoder failure is this variant's dead letter
            dead = Dead.of(variant.record, variant.source, "encode", error, 1)
            dead_counter(dead).inc()
            yield beam.pvalue.TaggedOutput(DEAD, dead)
            return
        self.written.inc()
        if schema.DROPPED_BOXES in targets:
            self.dropped.inc(targets[schema.DROPPED_BOXES].int64_list.value[0])
        stats = Stats.of(augmented, restored, self.config.inference.pad_multiple)
        if restored is not None:
            self.restored.inc()
        progress_files.add(self.progress, variants=1)
        yield beam.pvalue.TaggedOutput("stats", stats)
        if variant.thumbnail is not None:
            sample = sample_of(variant, augmented, restored, stats, layout.min_box_visibility)
            yield beam.pvalue.TaggedOutput(SAMPLE, (sample_rank(variant.key), sample))
        yield output


class Encode(beam.PTransform):
    """(Variant, augmented, restored) -> serialized output Example; plus ``stats`` and ``sample`` side outputs."""

    def __init__(self, config: PipelineConfig, model_sha256: str, progress: str | None = None):
        super().__init__()
        self.config = config
        self.model_sha256 = model_sha256
        self.progress = progress

    def expand(self, restored):
        return restored | "EncodeVariant" >> beam.ParDo(
            _EncodeVariant(self.config, self.model_sha256, self.progress)
        ).with_outputs(DEAD, "stats", SAMPLE, main="records")


def sample_rank(key: bytes) -> int:
    """Where a record stands in the report's sample: a stable hash, so every runner shows the same ones."""
    return int.from_bytes(hashlib.sha256(b"aeops.sample\0" + key).digest()[:8], "big")


def featured_variant(key: bytes, variants: int) -> int:
    """The one variant of a record the report may show (an augmented one when there are any)."""
    return 1 + sample_rank(key) % variants if variants else 0


def sample_of(variant: Variant, augmented: np.ndarray, restored: np.ndarray | None, stats: Stats,
              min_box_visibility: float) -> dict:
    """The report's view of one variant; its moved targets are drawn as the output record keeps them (the
    source thumbnail already has the source's drawn)."""
    targets = variant.targets
    drawn = augmented if targets is None else draw(augmented, targets, targets.kept(min_box_visibility))
    return {
        "source_key": variant.key.decode("utf-8", "replace"),
        "variant": variant.variant,
        "ops": list(variant.ops),
        "source": variant.thumbnail,
        "augmented": thumbnail(drawn),
        "restored": None if restored is None else thumbnail(restored),
        "psnr": stats.psnr_sum if stats.restored else None,
        "ssim": stats.ssim_sum if stats.ssim_count else None,
    }


# --- write ---------------------------------------------------------------------------------------


class WriteShards(beam.PTransform):
    """Serialized records -> ``DIR/NAME-SSSSS-of-NNNNN.tfrecord[.gz]``; yields the final file names."""

    def __init__(self, directory: str, name: str, num_shards: int, gzip: bool):
        super().__init__()
        self.prefix = storage.join(directory, name)
        self.num_shards = num_shards
        self.gzip = gzip

    def expand(self, records):
        return records | "Write" >> WriteToTFRecord(
            self.prefix,
            file_name_suffix=".tfrecord.gz" if self.gzip else ".tfrecord",
            num_shards=self.num_shards,
            shard_name_template="-SSSSS-of-NNNNN",
            compression_type=CompressionTypes.GZIP if self.gzip else CompressionTypes.UNCOMPRESSED,
        )


class WriteDeadLetter(beam.PTransform):
    """Every stage's :class:`Dead` rows -> ``dead_letter-00000-of-00001.tfrecord`` (written even when empty)."""

    def __init__(self, directory: str, progress: str | None = None):
        super().__init__()
        self.directory = directory
        self.progress = progress

    def expand(self, dead_rows):
        return (
            dead_rows
            | "Serialize" >> beam.ParDo(_SerializeDead(self.progress))
            | "WriteShard" >> WriteShards(self.directory, "dead_letter", 1, gzip=False)
        )


class _SerializeDead(beam.DoFn):
    def __init__(self, progress: str | None):
        self.progress = progress

    def process(self, dead: Dead):
        progress_files.add(self.progress, dead=1)
        yield dead.serialize()

    def finish_bundle(self):
        progress_files.flush(self.progress)


# --- finalize ------------------------------------------------------------------------------------


class _Finalize(beam.DoFn):
    """Check the counts and the publish gates, write the report and ``manifest.json`` (the version's last
    file, listing every other file with its size), then move LATEST, or fail with the gate's reason."""

    def __init__(self, context: dict, samples: int):
        self.context = context
        self.samples = samples

    def process(self, _, records, damaged, outputs, dead, stats, samples, data_files, dead_files, datasets):
        context = self.context
        folder = context["version"]
        directory = storage.join(context["root"], folder)
        finished = now()
        seconds = max((datetime.fromisoformat(finished) - datetime.fromisoformat(context["started"])).total_seconds(), 1e-6)
        records_in = records + damaged
        manifest = {
            **{k: context[k] for k in ("fingerprint", "version", "config", "model", "inputs", "runner", "started",
                                       "aeops_version", "variants")},
            "records_in": records_in,
            "records_out": outputs,
            "dead_letter": dead,
            "finished": finished,
            "metrics": {
                "throughput": {"seconds": seconds, "records_per_s": records_in / seconds, "outputs_per_s": outputs / seconds},
                **stats.summary(),
            },
        }
        raise_unless_reconciled(manifest)
        manifest["gate"] = publish_gate(manifest, context["config"]["publish"]["max_dead_fraction"])
        statistics.write(directory, datasets)
        manifest["summary"] = dataset_summary.summarize(statistics.statistics_list(datasets), context["config"])
        write_report(directory, manifest, [Sample(**sample) for _, sample in samples[: self.samples]])
        publisher = Publisher(context["root"])
        manifest["files"] = _files(publisher.inventory(folder), data_files, dead_files)
        publisher.write_manifest(folder, manifest)
        if not manifest["gate"]["passed"]:
            raise AeopsError(f"not published: {manifest['gate']['reason']}; {directory} is written with the "
                             f"reason in its {MANIFEST}, LATEST is unchanged", reason="unpublished")
        publisher.publish(folder, context["token"])
        if context["keep"]:
            publisher.retain(context["keep"])
        yield folder


def _files(sizes: dict[str, int], data_files: list[str], dead_files: list[str]) -> dict[str, dict[str, int]]:
    """The manifest's ``files``: name -> size of the shards the sinks wrote, and of every other file there
    (not hidden ones: the temp file of a manifest write that a kill cut short is no part of the version)."""
    groups = {"data": sorted(map(_name, data_files)), "dead_letter": sorted(map(_name, dead_files))}
    missing = [name for names in groups.values() for name in names if name not in sizes]
    if missing:
        raise AeopsError(f"the sink reported {missing[0]}, which is not in the version folder", reason="missing_shard")
    listed = {name for names in groups.values() for name in names} | {MANIFEST}
    groups["other"] = sorted(name for name in sizes if name not in listed and not name.startswith("."))
    return {group: {name: sizes[name] for name in names} for group, names in groups.items()}


class Finalize(beam.PTransform):
    """After every file is written: count, check, report, manifest, then publish the version.

    Takes a dict of PCollections (``records`` and ``damaged`` frames read, ``outputs``, ``dead`` rows,
    ``stats``, ``samples``, the ``data_files`` / ``dead_files`` the sinks wrote, and the ``statistics`` of the
    input and the output, which become ``statistics.pb`` and the manifest's ``summary``). Each reaches the last
    step as a side input, which is what orders it after the sinks; it runs inside the pipeline, so the same
    happens on Dataflow, where no driver waits for the job.
    """

    def __init__(self, context: dict, samples: int):
        super().__init__()
        self.context = context
        self.samples = samples

    def expand(self, parts: dict):
        side = beam.pvalue

        def counted(name):
            return side.AsSingleton(parts[name] | f"Count_{name}" >> beam.combiners.Count.Globally())

        return (
            parts["outputs"].pipeline
            | "Start" >> beam.Create([None])
            | "CheckReportPublish" >> beam.ParDo(
                _Finalize(self.context, self.samples),
                records=counted("records"),
                damaged=counted("damaged"),
                outputs=counted("outputs"),
                dead=side.AsSingleton(parts["dead"] | "TallyDead" >> beam.CombineGlobally(DeadTally())),
                stats=side.AsSingleton(parts["stats"] | "SumStats" >> beam.CombineGlobally(StatsCombine())),
                samples=side.AsSingleton(
                    parts["samples"] | "PickSamples" >> beam.combiners.Top.Smallest(max(self.samples, 1), key=_rank)
                ),
                data_files=side.AsList(parts["data_files"]),
                dead_files=side.AsList(parts["dead_files"]),
                datasets=side.AsList(parts["statistics"]),
            )
        )


def _rank(item: tuple) -> int:
    return item[0]


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
