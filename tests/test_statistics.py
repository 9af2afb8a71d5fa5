"""statistics.pb and the manifest's summary, checked against the records a real DirectRunner run wrote."""

from __future__ import annotations

import collections
import json

import pyarrow as pa
import pytest
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder

from aeops import cli, codec, dataset_summary, schema, storage, tfrecord
from aeops.config import SchemaConfig
from aeops.statistics import FeatureStatisticsCombine, categorical_features, with_image_header
from pipelines import augment
from tests import shards

LABELS = [7, 3, 7, 7, 3, 5]
OD_API = SchemaConfig.model_validate({})  # the default schema


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Six labelled images (one of them not an image: a dead letter, label 5) and one record that is no Example."""
    folder = tmp_path_factory.mktemp("stats")
    good = shards.good_images()
    records = [shards.example(good[i % 3], image__class__label=label, image__key=f"k{i}".encode())
               for i, label in enumerate(LABELS[:-1])]
    records += [shards.example(b"not an image at all", image__class__label=LABELS[-1]), b"\x08\x96 not an example"]
    shards.write(folder / "in.tfrecord", records)
    root = str(folder / "out")
    argv = ["--config", "configs/local.yaml", "--input", str(folder / "in.tfrecord"), "--output", root,
            "--set", "inference.enabled=false", "--set", "augment.ops=[{op: crop, size: [0.3, 0.9]}]"]
    assert augment.run(argv) == 0
    directory = storage.join(root, storage.read_bytes(storage.join(root, "LATEST")).decode().strip())
    with storage.open_read(storage.match(storage.join(directory, "data-*"))[0][0]) as stream:
        outputs = [schema.parse(r) for r in tfrecord.read_records(stream, False)]
    proto = statistics_pb2.DatasetFeatureStatisticsList.FromString(
        storage.read_bytes(storage.join(directory, "statistics.pb")))
    manifest = json.loads(storage.read_bytes(storage.join(directory, "manifest.json")))
    return {"good": good, "outputs": outputs, "proto": proto, "manifest": manifest, "directory": directory,
            "root": root}


def feature(dataset, name):
    return next(f for f in dataset.features if list(f.path.step) == [name])


def test_statistics_pb_has_the_input_and_output_counts(run):
    datasets = {d.name: d for d in run["proto"].datasets}
    assert list(datasets) == ["input", "output"]
    assert datasets["input"].num_examples == len(LABELS)  # every record that parsed, the undecodable image too
    assert datasets["output"].num_examples == run["manifest"]["records_out"] == len(run["outputs"])


def test_label_histogram_equals_the_labels_written(run):
    datasets = {d.name: d for d in run["proto"].datasets}
    written = collections.Counter(str(schema.feature_value(r.example, "image/class/label")) for r in run["outputs"])
    label = feature(datasets["output"], "image/class/label")
    assert label.type == statistics_pb2.FeatureNameStatistics.INT
    assert {b.label: b.sample_count for b in label.string_stats.rank_histogram.buckets} == written
    read = collections.Counter(map(str, LABELS))
    assert {b.label: b.sample_count for b in feature(datasets["input"], "image/class/label")
            .string_stats.rank_histogram.buckets} == read
    assert run["manifest"]["summary"]["output"]["labels"]["counts"] == written


def test_size_range_equals_the_images(run):
    datasets = {d.name: d for d in run["proto"].datasets}
    shapes = [codec.decode(r.image).shape for r in run["outputs"]]
    for side, axis in (("aeops/image_height", 0), ("aeops/image_width", 1)):
        stats = feature(datasets["output"], side).num_stats
        assert (stats.min, stats.max) == (min(s[axis] for s in shapes), max(s[axis] for s in shapes))
        assert stats.common_stats.num_non_missing == len(shapes)
        assert sum(b.sample_count for b in stats.histograms[0].buckets) == pytest.approx(len(shapes))
    inputs = [codec.decode(image).shape for image in run["good"]]
    height = feature(datasets["input"], "aeops/image_height").num_stats
    assert (height.min, height.max) == (min(s[0] for s in inputs), max(s[0] for s in inputs))
    assert height.common_stats.num_missing == 1  # the record whose bytes are not an image
    sizes = run["manifest"]["summary"]["output"]["sizes"]
    assert sizes["width"]["max"] == max(s[1] for s in shapes)


def test_bytes_features_get_unique_counts_and_formats(run):
    datasets = {d.name: d for d in run["proto"].datasets}
    keys = feature(datasets["output"], "aeops/source_key").string_stats
    assert keys.unique == len(LABELS) - 1
    image = feature(datasets["output"], "image/encoded")
    assert image.type == statistics_pb2.FeatureNameStatistics.BYTES and image.bytes_stats.min_num_bytes > 0
    assert run["manifest"]["summary"]["output"]["formats"] == {"jpeg": len(run["outputs"])}
    assert run["manifest"]["summary"]["input"]["formats"] == {"png": len(LABELS) - 1}


def test_a_dead_letter_that_removes_a_label_is_flagged(run):
    shift = run["manifest"]["summary"]["label_shift"]
    # in: 7 x3, 3 x2, 5 x1 of 6; out: 7 x3, 3 x2 of 5 (per variant): |0.6-0.5| + |0.4-0.333| + |0-0.167| = 0.333 / 2
    assert shift["distance"] == pytest.approx(1 / 6, abs=1e-6)
    assert shift["skewed"] and shift["largest"]["label"] == "5" and shift["largest"]["output"] == 0
    text = dataset_summary.describe(run["manifest"]["summary"])
    assert "SKEWED by the dead letter: label 5 went from 16.7% to 0.0%" in text


def test_accumulators_merge_to_the_same_statistics_as_one_pass():
    """Workers summarise their share and Beam merges the parts: the merge must not change the answer."""
    good = shards.good_images()
    records = [shards.example(good[i % 3], image__class__label=i % 4) for i in range(12)]
    decoder = ExamplesToRecordBatchDecoder()
    batches = [with_image_header(decoder.DecodeBatch(records[i:i + 4]), schema.IMAGE) for i in range(0, 12, 4)]
    combine = FeatureStatisticsCombine("input", categorical_features(OD_API))
    whole = combine.add_input(combine.create_accumulator(), pa.concat_tables(
        [pa.Table.from_batches([b]) for b in batches]).combine_chunks().to_batches()[0])
    parts = [combine.add_input(combine.create_accumulator(), batch) for batch in batches]
    merged = combine.merge_accumulators(parts)
    one, many = combine.extract_output(whole), combine.extract_output(merged)
    assert one == many and one.num_examples == 12
    label = feature(one, "image/class/label").string_stats
    assert {b.label: b.sample_count for b in label.rank_histogram.buckets} == {"0": 3, "1": 3, "2": 3, "3": 3}


def test_stats_command_prints_the_summary_of_latest_or_of_a_version(run, capsys, tmp_path):
    assert cli.main(["stats", run["root"]]) == 0
    printed = capsys.readouterr().out
    assert dataset_summary.describe(run["manifest"]["summary"]) in printed
    assert "records   7 in x 3 variants" in printed and "label 5 went from 16.7% to 0.0%" in printed
    assert cli.main(["stats", run["directory"]]) == 0
    assert capsys.readouterr().out == printed
    assert cli.main(["stats", str(tmp_path)]) == 2
    assert "neither a version folder" in capsys.readouterr().err


def test_objects_per_image_come_from_the_box_lists():
    good = shards.good_images()
    boxes = [[], [0.1], [0.1, 0.2, 0.5]]
    records = [schema.serialize({schema.IMAGE: schema.bytes_feature(good[0]),
                                 **({"image/object/bbox/xmin": schema.float_feature(*xs)} if xs else {})})
               for xs in boxes]
    combine = FeatureStatisticsCombine("output", categorical_features(OD_API))
    batch = with_image_header(ExamplesToRecordBatchDecoder().DecodeBatch(records), schema.IMAGE)
    dataset = combine.extract_output(combine.add_input(combine.create_accumulator(), batch))
    summary = dataset_summary.summarize(statistics_pb2.DatasetFeatureStatisticsList(datasets=[dataset]), {})
    objects = summary["output"]["objects_per_image"]
    assert objects == {"feature": "image/object/bbox/xmin", "min": 0, "max": 3, "mean": 4 / 3, "total": 4}
    assert "objects   -  ->  0-3 per image, mean 1.33" in dataset_summary.describe(summary)


def test_the_schema_names_the_label_and_the_boxes():
    """TFDS keeps the label under ``label`` and 4 box values per object in ``objects/bbox``: its preset reads them."""
    from tests import targets_scene as scene

    tfds = SchemaConfig.model_validate({"preset": "tfds"})
    records = [scene.tfds_record(i % 2) for i in range(3)]
    combine = FeatureStatisticsCombine("input", categorical_features(tfds))
    batch = with_image_header(ExamplesToRecordBatchDecoder().DecodeBatch(records), tfds.image)
    dataset = combine.extract_output(combine.add_input(combine.create_accumulator(), batch))
    summary = dataset_summary.summarize(statistics_pb2.DatasetFeatureStatisticsList(datasets=[dataset]),
                                        {"schema": {"preset": "tfds"}})["input"]
    assert summary["labels"] == {"feature": "label", "counts": {"0": 2, "1": 1}, "unlabelled": 0}
    assert summary["objects_per_image"] == {"feature": "objects/bbox", "min": 4, "max": 4, "mean": 4.0, "total": 12}
    assert summary["sizes"]["height"]["min"] > 0 and summary["formats"] == {"png": 3}
    per_object = feature(dataset, "objects/label").string_stats  # a per-object class is a category too
    assert {b.label: b.sample_count for b in per_object.rank_histogram.buckets} == {"0": 3, "1": 3, "2": 3, "3": 3}
