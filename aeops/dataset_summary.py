"""What a person wants from ``statistics.pb`` at a glance: labels, image sizes, formats, objects per image, in vs out.

:func:`summarize` reads the run's ``DatasetFeatureStatisticsList`` into the manifest's ``summary`` (plain JSON, which
the report draws and ``aeops stats`` prints with :func:`describe`); the run's ``schema:`` says which feature is the
label and which holds the boxes. It also says whether the dead letter skewed the
label distribution: the *label shift* is the total variation distance between the input's and the output's label
shares (half the sum of the absolute differences: 0 = the same distribution, 1 = disjoint); above
``report.label_shift_warning`` (default 0.05: five percent of the labels' mass moved) the run is flagged.
"""

from __future__ import annotations

from tensorflow_metadata.proto.v0 import statistics_pb2

from aeops.config import ReportConfig, SchemaConfig
from aeops.statistics import DERIVED_FORMAT, DERIVED_HEIGHT, DERIVED_WIDTH, INPUT, OUTPUT

SHOWN_LABELS = 12  # on the terminal; the report and the manifest keep every label statistics.pb has


def summarize(statistics: statistics_pb2.DatasetFeatureStatisticsList, config: dict) -> dict:
    """``config``: the run's resolved config as the manifest keeps it (its ``schema`` and ``report`` sections)."""
    layout = SchemaConfig.model_validate(config.get("schema") or {})
    warning = ReportConfig.model_validate(config.get("report") or {}).label_shift_warning
    datasets = {dataset.name: _dataset(dataset, layout) for dataset in statistics.datasets}
    return {**datasets, "label_shift": label_shift(datasets.get(INPUT), datasets.get(OUTPUT), warning)}


def box_feature(layout: SchemaConfig) -> tuple[str, int] | None:
    """(the feature with one list entry per box, values per box): od-api's ``PREFIX/xmin``, TFDS's 4 per box."""
    if not layout.boxes:
        return None
    return (f"{layout.boxes}/xmin", 1) if layout.box_format == "od-api" else (layout.boxes, 4)


def _features(dataset: statistics_pb2.DatasetFeatureStatistics) -> dict:
    return {".".join(feature.path.step) or feature.name: feature for feature in dataset.features}


def _common(feature: statistics_pb2.FeatureNameStatistics) -> statistics_pb2.CommonStatistics:
    return getattr(feature, feature.WhichOneof("stats")).common_stats


def _dataset(dataset: statistics_pb2.DatasetFeatureStatistics, layout: SchemaConfig) -> dict:
    features = _features(dataset)
    return {
        "examples": dataset.num_examples,
        "labels": _labels(features.get(layout.label), layout.label),
        "formats": _counts(features.get(DERIVED_FORMAT)),
        "sizes": {side: _numeric(features.get(name)) for side, name in (("height", DERIVED_HEIGHT),
                                                                       ("width", DERIVED_WIDTH))},
        "objects_per_image": _objects(features, box_feature(layout), dataset.num_examples),
    }


def _counts(feature) -> dict[str, int]:
    if feature is None or feature.WhichOneof("stats") != "string_stats":
        return {}
    return {bucket.label: round(bucket.sample_count) for bucket in feature.string_stats.rank_histogram.buckets}


def _labels(feature, name: str | None) -> dict | None:
    if feature is None:
        return None
    return {"feature": name, "counts": _counts(feature), "unlabelled": int(_common(feature).num_missing)}


def _numeric(feature) -> dict | None:
    if feature is None or feature.WhichOneof("stats") != "num_stats":
        return None
    if not feature.num_stats.common_stats.tot_num_values:
        return None
    stats = feature.num_stats
    standard = [h for h in stats.histograms if h.type == statistics_pb2.Histogram.STANDARD]
    buckets = [[b.low_value, b.high_value, round(b.sample_count, 3)] for b in (standard[0].buckets if standard else [])]
    return {"min": stats.min, "max": stats.max, "mean": stats.mean, "histogram": buckets}


def _objects(features: dict, boxes: tuple[str, int] | None, examples: int) -> dict | None:
    if boxes is None or boxes[0] not in features:
        return None
    name, per_object = boxes
    common = _common(features[name])
    return {
        "feature": name,
        "min": 0 if common.num_missing else common.min_num_values // per_object,
        "max": common.max_num_values // per_object,
        "mean": common.tot_num_values / per_object / examples if examples else 0.0,
        "total": common.tot_num_values // per_object,
    }


def _shares(labels: dict | None) -> dict[str, float]:
    counts = (labels or {}).get("counts") or {}
    total = sum(counts.values())
    return {label: n / total for label, n in counts.items()} if total else {}


def label_rows(before: dict | None, after: dict | None) -> list[tuple[str, int, float, int, float]]:
    """(label, input count, input share, output count, output share), most frequent in the input first."""
    counts_in = before.get("counts") or {} if isinstance(before, dict) else {}
    counts_out = after.get("counts") or {} if isinstance(after, dict) else {}
    total_in, total_out = sum(counts_in.values()) or 1, sum(counts_out.values()) or 1
    order = sorted(counts_in.keys() | counts_out.keys(), key=lambda k: (-counts_in.get(k, 0), -counts_out.get(k, 0), k))
    return [(label, counts_in.get(label, 0), counts_in.get(label, 0) / total_in,
             counts_out.get(label, 0), counts_out.get(label, 0) / total_out) for label in order]


def label_shift(input_summary: dict | None, output_summary: dict | None, warning: float) -> dict | None:
    """Total variation distance between the input's and the output's label shares, and the label that moved most."""
    before, after = _shares((input_summary or {}).get("labels")), _shares((output_summary or {}).get("labels"))
    if not before or not after:
        return None
    changes = {label: after.get(label, 0.0) - before.get(label, 0.0) for label in before.keys() | after.keys()}
    distance = sum(abs(change) for change in changes.values()) / 2
    label = max(changes, key=lambda name: (abs(changes[name]), name))
    largest = {"label": label, "input": round(before.get(label, 0.0), 6), "output": round(after.get(label, 0.0), 6)}
    return {"distance": round(distance, 6), "warning": warning, "skewed": distance > warning, "largest": largest}


# ---------------------------------------------------------------------------------------------- the terminal


def describe(summary: dict | None) -> str:
    """The summary as aligned lines, for the end of a run and ``aeops stats``."""
    if not summary:
        return "  statistics none in this manifest (written by an aeops before statistics.pb)"
    source, result = summary.get(INPUT) or {}, summary.get(OUTPUT) or {}
    lines = [f"  dataset   input: {source.get('examples', 0):,} records parsed; "
             f"output: {result.get('examples', 0):,} variants written"]
    lines += _label_lines(source.get("labels"), result.get("labels"))
    lines.append(f"  sizes     {_sizes(source.get('sizes'))}  ->  {_sizes(result.get('sizes'))}")
    lines.append(f"  formats   {_formats(source.get('formats'))}  ->  {_formats(result.get('formats'))}")
    if source.get("objects_per_image") or result.get("objects_per_image"):
        lines.append(f"  objects   {_objects_text(source.get('objects_per_image'))}  ->  "
                     f"{_objects_text(result.get('objects_per_image'))}")
    shift = summary.get("label_shift")
    if shift:
        largest = shift["largest"]
        verdict = (f"SKEWED by the dead letter: label {largest['label']} went from {largest['input']:.1%} to "
                   f"{largest['output']:.1%}" if shift["skewed"] else "ok")
        lines.append(f"  shift     {shift['distance']:.3f} (total variation; flagged above {shift['warning']:g}): "
                     + verdict)
    return "\n".join(lines)


def _label_lines(before: dict | None, after: dict | None) -> list[str]:
    if not before and not after:
        return ["  labels    none (the schema's label feature is in no record)"]
    rows = label_rows(before, after)
    lines = [f"  labels    {(before or after)['feature']}, {len(rows)} values",
             f"            {'':<20} {'in':>14}  {'out':>14}"]
    for label, n_in, share_in, n_out, share_out in rows[:SHOWN_LABELS]:
        lines.append(f"            {label[:20]:<20} {n_in:>7,} {share_in:>6.1%}  {n_out:>7,} {share_out:>6.1%}")
    if len(rows) > SHOWN_LABELS:
        lines.append(f"            ... {len(rows) - SHOWN_LABELS} more (report.html, statistics.pb)")
    return lines


def _sizes(sizes: dict | None) -> str:
    height, width = (sizes or {}).get("height"), (sizes or {}).get("width")
    if not height or not width:
        return "-"
    return f"{width['min']:.0f}-{width['max']:.0f} x {height['min']:.0f}-{height['max']:.0f} px (w x h)"


def _formats(formats: dict | None) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in sorted((formats or {}).items(), key=lambda kv: -kv[1])) or "-"


def _objects_text(objects: dict | None) -> str:
    if not objects:
        return "-"
    return f"{objects['min']}-{objects['max']} per image, mean {objects['mean']:.2f}"
