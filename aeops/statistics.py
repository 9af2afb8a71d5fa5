"""Statistics of a dataset's ``tf.train.Example`` records, computed inside the pipeline (so on Dataflow too).

tfx-bsl does the heavy part: :class:`ExamplesToRecordBatchDecoder` turns a batch of serialized Examples into Arrow
columns in C++, and its mergeable sketches (``MisraGriesSketch`` for top values, ``KmvSketch`` for unique counts,
``QuantilesSketch`` for histograms and the median) let every worker summarise its share and Beam merge the parts.
The result is ``tensorflow_metadata``'s ``DatasetFeatureStatistics``, the format TFDV and Facets Overview read;
:func:`write` stores the run's two (``input``, ``output``) as ``statistics.pb``.

Besides the records' own features, three are derived from the image bytes' header (the records need not carry
``image/height``): ``aeops/image_height``, ``aeops/image_width`` and ``aeops/image_format``, marked as derived.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics
from tensorflow_metadata.proto.v0 import path_pb2, statistics_pb2
from tfx_bsl import sketches
from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder

from aeops import codec, storage
from aeops.config import SchemaConfig

STATISTICS = "statistics.pb"
INPUT, OUTPUT = "input", "output"

DERIVED_HEIGHT, DERIVED_WIDTH, DERIVED_FORMAT = "aeops/image_height", "aeops/image_width", "aeops/image_format"
DERIVER = "aeops.image_header"

TOP_VALUES = 20  # top values written per feature
CATEGORY_BUCKETS = 1024  # Misra-Gries counters: counts are exact while a feature has fewer distinct values
UNIQUE_SKETCH = 1024  # KMV sketch size: unique counts exact below it, ~3% error above
QUANTILES = 100  # quantile points kept for the median and the equal-width histogram
HISTOGRAM_BUCKETS = 10
QUANTILE_EPS = 0.01  # TFDV's default: a quantile is off by at most 1% of the ranks; a sketch stays ~200 KB
LARGE_BYTES = 1024  # longer byte values (images, masks) are not top values: one placeholder counts them
LARGE_PLACEHOLDER = "__LARGE_BYTES__"
_MAX_ELEMENTS = 1 << 32
_HEADER_PIXEL_LIMIT = 1 << 62  # sizes are read from headers only: no image is too large to be measured


# ---------------------------------------------------------------------------------------------- decode


def categorical_features(layout: SchemaConfig) -> frozenset[str]:
    """Integer features that are categories, not quantities: the schema's label and per-object class (od-api
    ``image/object/class/label``, TFDS ``objects/label``). Their statistics are top values, not a mean, as TFDV
    does for a schema's categorical ints."""
    names = {layout.label}
    if layout.objects:
        names |= {f"{layout.objects}class/label", f"{layout.objects}label"}
    return frozenset(name for name in names if name)


class _DecodeExamples(beam.DoFn):
    """A list of serialized Examples -> one Arrow RecordBatch, with the image header's size and format added.

    One record tfx-bsl cannot decode fails its whole batch, so a failed batch is decoded again record by
    record and the unparseable ones are counted (they are the dead letter's business, not the statistics').
    """

    def __init__(self, image_feature: str, dataset: str):
        self.image_feature = image_feature
        self.unparsed = Metrics.counter("aeops.statistics", f"{dataset}/unparsed_records")

    def setup(self):
        self.decoder = ExamplesToRecordBatchDecoder()

    def process(self, serialized: list[bytes]):
        try:
            batches = [self.decoder.DecodeBatch(serialized)]
        except Exception:  # noqa: BLE001 - some record in the batch is bad: find it
            batches = []
            for record in serialized:
                try:
                    batches.append(self.decoder.DecodeBatch([record]))
                except Exception:  # noqa: BLE001 - not a tf.train.Example
                    self.unparsed.inc()
        for batch in batches:
            yield with_image_header(batch, self.image_feature)


def with_image_header(batch: pa.RecordBatch, image_feature: str) -> pa.RecordBatch:
    """``batch`` plus the derived height, width and format of each row's (first) image, null where unreadable."""
    heights, widths, formats = [], [], []
    images = batch.column(image_feature).to_pylist() if image_feature in batch.schema.names else [None] * batch.num_rows
    for values in images:
        try:
            fmt, width, height = codec.probe(values[0], _HEADER_PIXEL_LIMIT)
        except Exception:  # noqa: BLE001 - no image or an unreadable one: nothing to measure
            heights.append(None), widths.append(None), formats.append(None)
            continue
        heights.append([height]), widths.append([width]), formats.append([fmt.encode()])
    columns = dict(zip(batch.schema.names, batch.columns))
    columns[DERIVED_HEIGHT] = pa.array(heights, pa.large_list(pa.int64()))
    columns[DERIVED_WIDTH] = pa.array(widths, pa.large_list(pa.int64()))
    columns[DERIVED_FORMAT] = pa.array(formats, pa.large_list(pa.large_binary()))
    return pa.RecordBatch.from_pydict(columns)


# ---------------------------------------------------------------------------------------------- accumulate


def _kind(arrow_type: pa.DataType) -> str | None:
    values = arrow_type.value_type if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) else None
    if values is None or pa.types.is_null(values):
        return None  # a feature no row of this batch has values for: nothing to learn its type from
    if pa.types.is_integer(values):
        return "int"
    return "float" if pa.types.is_floating(values) else "bytes"


@dataclass
class FeatureAccumulator:
    """Mergeable statistics of one feature: presence and valency for all, then by kind.

    Numeric features keep exact count, sum, sum of squares, min and max (mean and standard deviation are
    exact) and a quantile sketch for the median and histograms; bytes and categorical features keep a
    Misra-Gries sketch of their top values and a KMV sketch of their unique count.
    """

    kind: str
    categorical: bool
    present: int = 0
    values: int = 0
    value_counts: collections.Counter = field(default_factory=collections.Counter)  # values per example -> examples
    total: float = 0.0
    squares: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf
    zeros: int = 0
    quantiles: sketches.QuantilesSketch = field(default_factory=lambda: _quantiles())
    top: sketches.MisraGriesSketch = field(default_factory=lambda: sketches.MisraGriesSketch(
        CATEGORY_BUCKETS, invalid_utf8_placeholder="__BYTES__", large_string_threshold=LARGE_BYTES,
        large_string_placeholder=LARGE_PLACEHOLDER))
    unique: sketches.KmvSketch = field(default_factory=lambda: sketches.KmvSketch(UNIQUE_SKETCH))
    length_total: int = 0
    length_min: int = 2**63 - 1
    length_max: int = 0

    @property
    def numeric(self) -> bool:
        return self.kind in ("int", "float")

    def add(self, column: pa.Array) -> None:
        present = column.filter(pc.is_valid(column))
        if not len(present):
            return
        counts = pc.list_value_length(present)
        values = pc.list_flatten(present)
        self.present += len(present)
        self.values += len(values)
        self.value_counts.update(counts.to_numpy(zero_copy_only=False).tolist())
        if not len(values):
            return
        if self.numeric and not self.categorical:
            as_float = pc.cast(values, pa.float64())
            low, high = pc.min_max(as_float).values()
            self.minimum, self.maximum = min(self.minimum, low.as_py()), max(self.maximum, high.as_py())
            self.total += pc.sum(as_float).as_py()
            self.squares += pc.sum(pc.multiply(as_float, as_float)).as_py()
            self.zeros += pc.sum(pc.equal(as_float, 0.0).cast(pa.int64())).as_py()
            self.quantiles.AddValues(as_float)
        if self.kind == "bytes" or self.categorical:
            strings = values if self.kind == "bytes" else pc.cast(values, pa.large_string())
            self.top.AddValues(strings)
            self.unique.AddValues(strings)
        if self.kind == "bytes":
            lengths = pc.binary_length(values)
            self.length_total += pc.sum(lengths).as_py()
            low, high = pc.min_max(lengths).values()
            self.length_min, self.length_max = min(self.length_min, low.as_py()), max(self.length_max, high.as_py())

    def merge(self, other: "FeatureAccumulator") -> None:
        if other.kind != self.kind:  # the first type seen wins; tfx-bsl already refuses a mix within a batch
            return
        self.present += other.present
        self.values += other.values
        self.total += other.total
        self.squares += other.squares
        self.minimum, self.maximum = min(self.minimum, other.minimum), max(self.maximum, other.maximum)
        self.zeros += other.zeros
        self.length_total += other.length_total
        self.length_min = min(self.length_min, other.length_min)
        self.length_max = max(self.length_max, other.length_max)
        self.value_counts.update(other.value_counts)
        for sketch in ("quantiles", "top", "unique"):
            getattr(self, sketch).Merge(getattr(other, sketch))


def _quantiles() -> sketches.QuantilesSketch:
    return sketches.QuantilesSketch(QUANTILE_EPS, _MAX_ELEMENTS, 1)


@dataclass
class DatasetAccumulator:
    examples: int = 0
    features: dict[str, FeatureAccumulator] = field(default_factory=dict)


class FeatureStatisticsCombine(beam.CombineFn):
    """Arrow RecordBatches -> ``DatasetFeatureStatistics`` named ``name``; accumulators merge across workers."""

    def __init__(self, name: str, categorical: frozenset[str] = frozenset()):
        self.name = name
        self.categorical = categorical | {DERIVED_FORMAT}

    def create_accumulator(self) -> DatasetAccumulator:
        return DatasetAccumulator()

    def add_input(self, accumulator: DatasetAccumulator, batch: pa.RecordBatch) -> DatasetAccumulator:
        accumulator.examples += batch.num_rows
        for name, column in zip(batch.schema.names, batch.columns):
            kind = _kind(column.type)
            if kind is None:
                continue
            part = FeatureAccumulator(kind, name in self.categorical)
            part.add(column)
            if name in accumulator.features:
                accumulator.features[name].merge(part)
            else:
                accumulator.features[name] = part
        return accumulator

    def merge_accumulators(self, accumulators) -> DatasetAccumulator:
        merged = DatasetAccumulator()
        for accumulator in accumulators:
            merged.examples += accumulator.examples
            for name, part in accumulator.features.items():
                if name in merged.features:
                    merged.features[name].merge(part)
                else:
                    merged.features[name] = part
        return merged

    def extract_output(self, accumulator: DatasetAccumulator) -> statistics_pb2.DatasetFeatureStatistics:
        return dataset_statistics(self.name, accumulator)


class DatasetStatistics(beam.PTransform):
    """Serialized Examples -> one ``DatasetFeatureStatistics`` named ``name`` (a single-element PCollection)."""

    def __init__(self, name: str, layout: SchemaConfig):
        super().__init__()
        self.name = name
        self.image_feature = layout.image
        self.categorical = categorical_features(layout)

    def expand(self, records):
        return (
            records
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=256)
            | "DecodeToArrow" >> beam.ParDo(_DecodeExamples(self.image_feature, self.name))
            | "Combine" >> beam.CombineGlobally(FeatureStatisticsCombine(self.name, self.categorical))
        )


# ---------------------------------------------------------------------------------------------- the proto


def dataset_statistics(name: str, accumulator: DatasetAccumulator) -> statistics_pb2.DatasetFeatureStatistics:
    dataset = statistics_pb2.DatasetFeatureStatistics(name=name, num_examples=accumulator.examples)
    for feature_name in sorted(accumulator.features):
        dataset.features.append(_feature(feature_name, accumulator.features[feature_name], accumulator.examples))
    return dataset


_TYPES = {"int": statistics_pb2.FeatureNameStatistics.INT, "float": statistics_pb2.FeatureNameStatistics.FLOAT}


def _feature(name: str, part: FeatureAccumulator, examples: int) -> statistics_pb2.FeatureNameStatistics:
    feature = statistics_pb2.FeatureNameStatistics(path=path_pb2.Path(step=[name]))
    if name in (DERIVED_HEIGHT, DERIVED_WIDTH, DERIVED_FORMAT):
        feature.validation_derived_source.deriver_name = DERIVER
    common = statistics_pb2.CommonStatistics(
        num_non_missing=part.present, num_missing=examples - part.present, tot_num_values=part.values,
        min_num_values=min(part.value_counts, default=0), max_num_values=max(part.value_counts, default=0),
        avg_num_values=part.values / part.present if part.present else 0.0,
    )
    if part.present:
        common.num_values_histogram.CopyFrom(_counts_histogram(part.value_counts))
    large = part.kind == "bytes" and part.values and part.length_total / part.values > LARGE_BYTES
    if large:  # images, masks: sizes, not values
        feature.type = statistics_pb2.FeatureNameStatistics.BYTES
        stats = feature.bytes_stats
        stats.common_stats.CopyFrom(common)
        stats.unique = round(part.unique.Estimate())
        stats.avg_num_bytes = part.length_total / part.values
        stats.min_num_bytes, stats.max_num_bytes = part.length_min, part.length_max
        stats.max_num_bytes_int = part.length_max
    elif part.kind == "bytes" or part.categorical:
        feature.type = _TYPES.get(part.kind, statistics_pb2.FeatureNameStatistics.STRING)
        stats = feature.string_stats
        stats.common_stats.CopyFrom(common)
        stats.unique = round(part.unique.Estimate())
        if part.kind == "bytes" and part.values:
            stats.avg_length = part.length_total / part.values
        top = sorted(part.top.Estimate().to_pylist(), key=lambda item: (-item["counts"], item["values"]))
        for rank, item in enumerate(top):
            label = item["values"].decode("utf-8", "backslashreplace")
            stats.rank_histogram.buckets.add(low_rank=rank, high_rank=rank, label=label, sample_count=item["counts"])
            if rank < TOP_VALUES:
                stats.top_values.add(value=label, frequency=item["counts"])
    else:
        feature.type = _TYPES[part.kind]
        stats = feature.num_stats
        stats.common_stats.CopyFrom(common)
        if part.values:
            mean = part.total / part.values
            stats.mean, stats.min, stats.max, stats.num_zeros = mean, part.minimum, part.maximum, part.zeros
            stats.std_dev = math.sqrt(max(part.squares / part.values - mean * mean, 0.0))
            points = part.quantiles.GetQuantiles(QUANTILES).to_pylist()[0]
            stats.median = points[len(points) // 2]
            stats.histograms.append(_equal_width_histogram(points, part.values))
            stats.histograms.append(_quantiles_histogram(part.quantiles, part.values))
    return feature


def _quantiles_histogram(sketch: sketches.QuantilesSketch, count: int) -> statistics_pb2.Histogram:
    points = sketch.GetQuantiles(HISTOGRAM_BUCKETS).to_pylist()[0]
    histogram = statistics_pb2.Histogram(type=statistics_pb2.Histogram.QUANTILES)
    for low, high in zip(points, points[1:]):
        histogram.buckets.add(low_value=low, high_value=high, sample_count=count / HISTOGRAM_BUCKETS)
    return histogram


def _counts_histogram(counts: collections.Counter) -> statistics_pb2.Histogram:
    """The exact QUANTILES histogram of small integers kept as counts (values per example): bucket ``i`` spans the
    values from the ``i``-th to the ``i+1``-th tenth of the examples in order."""
    ordered, total = sorted(counts.items()), sum(counts.values())

    def value_at(rank: int) -> int:
        seen = 0
        for value, n in ordered:
            seen += n
            if rank < seen:
                return value
        return ordered[-1][0]

    histogram = statistics_pb2.Histogram(type=statistics_pb2.Histogram.QUANTILES)
    for bucket in range(HISTOGRAM_BUCKETS):
        low = value_at(bucket * total // HISTOGRAM_BUCKETS)
        high = value_at(min((bucket + 1) * total // HISTOGRAM_BUCKETS, total - 1))
        histogram.buckets.add(low_value=low, high_value=high, sample_count=total / HISTOGRAM_BUCKETS)
    return histogram


def _equal_width_histogram(points: list[float], count: int) -> statistics_pb2.Histogram:
    """Equal-width buckets over [min, max] from quantile points: each of the ``len(points) - 1`` intervals holds
    an equal share of the values, spread evenly over it (a point mass when both ends are equal), as TFDV does."""
    low, high = points[0], points[-1]
    histogram = statistics_pb2.Histogram(type=statistics_pb2.Histogram.STANDARD)
    if high == low:
        histogram.buckets.add(low_value=low, high_value=high, sample_count=count)
        return histogram
    width = (high - low) / HISTOGRAM_BUCKETS
    counts = [0.0] * HISTOGRAM_BUCKETS
    share = count / (len(points) - 1)
    for start, end in zip(points, points[1:]):
        if end == start:
            counts[min(int((start - low) / width), HISTOGRAM_BUCKETS - 1)] += share
            continue
        for bucket in range(HISTOGRAM_BUCKETS):
            left, right = low + bucket * width, low + (bucket + 1) * width
            overlap = min(end, right) - max(start, left)
            if overlap > 0:
                counts[bucket] += share * overlap / (end - start)
    for bucket, n in enumerate(counts):
        histogram.buckets.add(low_value=low + bucket * width, high_value=low + (bucket + 1) * width, sample_count=n)
    return histogram


def statistics_list(datasets) -> statistics_pb2.DatasetFeatureStatisticsList:
    """The run's datasets, ``input`` first, in one list."""
    order = {INPUT: 0, OUTPUT: 1}
    return statistics_pb2.DatasetFeatureStatisticsList(datasets=sorted(datasets, key=lambda d: order.get(d.name, 2)))


def write(directory: str, datasets) -> str:
    path = storage.join(directory, STATISTICS)
    storage.write_bytes(path, statistics_list(datasets).SerializeToString())
    return path


def read(directory: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    data = storage.read_bytes(storage.join(directory, STATISTICS))
    return statistics_pb2.DatasetFeatureStatisticsList.FromString(data)
