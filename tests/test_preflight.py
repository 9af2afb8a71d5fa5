"""A wrong model or a wrong schema stops ``aeops augment`` before the pipeline, with one line (exit 2)."""

from __future__ import annotations

import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from aeops import cli, preflight, schema, tfrecord
from aeops.errors import UsageError
from aeops.model import PRETRAINED
from pipelines import augment
from tests import shards

ANY_IMAGES = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")


def save(path, serve) -> str:
    """A real SavedModel whose ``serving_default`` is ``serve`` (a ``tf.function`` with an input signature)."""
    module = tf.Module()
    module.serve = serve
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})
    return str(path)


@tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="pixels")])
def other_input(pixels):
    return {"reconstruction": pixels}


@tf.function(input_signature=[ANY_IMAGES])
def other_key(images):
    return {"output_0": images}


@tf.function(input_signature=[ANY_IMAGES])
def float_output(images):
    return {"reconstruction": tf.cast(images, tf.float32) / 255.0}


@tf.function(input_signature=[ANY_IMAGES])
def other_shape(images):
    return {"reconstruction": images[:, ::2, ::2, :]}  # a model that forgot to crop back (or upsample)


@tf.function(input_signature=[tf.TensorSpec([None, 64, 64, 3], tf.uint8, name="images")])
def fixed_size(images):
    return {"reconstruction": images}


WRONG = {
    "other_input": (other_input, "takes pixels uint8 [?, ?, ?, 3]"),
    "other_key": (other_key, "returns output_0 uint8"),
    "float_output": (float_output, "returns float32 [2, 9, 13, 3]"),
    "other_shape": (other_shape, "returns uint8 [2, 5, 7, 3] for a [2, 9, 13, 3] probe"),
    "fixed_size": (fixed_size, "takes images uint8 [?, 64, 64, 3]"),
}


@pytest.fixture
def good_shard(tmp_path):
    path = tmp_path / "in-00000-of-00001.tfrecord"
    shards.write(path, [shards.example(image) for image in shards.good_images()])
    return path


@pytest.mark.parametrize("name", sorted(WRONG))
def test_a_model_with_another_signature_is_refused_naming_what_it_has(tmp_path, good_shard, name):
    serve, found = WRONG[name]
    model_dir = save(tmp_path / name, serve)
    root = tmp_path / "out"
    with pytest.raises(UsageError) as caught:
        augment.run(["--config", "configs/local.yaml", "--input", str(good_shard), "--output", str(root),
                     "--model-dir", model_dir])
    message = str(caught.value)
    assert model_dir in message and found in message and "images uint8 [batch, height, width, 3]" in message, message
    assert not root.exists()  # nothing prepared, nothing published


@pytest.mark.parametrize("flags, here", [
    ([], True), (["--direct_running_mode=multi_threading"], True), (["--runner=DirectRunner"], True),
    (["--direct_running_mode=multi_processing", "--direct_num_workers=2"], False),
    (["--runner=DataflowRunner"], False), (["--runner=PrismRunner"], False),
])
def test_the_checked_model_is_handed_on_only_where_the_pipeline_runs_in_this_process(flags, here):
    """The model preflight loaded is worth keeping only for a runner whose model handler runs in this process."""
    assert augment.runs_in_this_process(PipelineOptions(flags)) is here


def test_the_shipped_and_the_trained_model_pass(tiny_model_dir):
    preflight.check_model(tiny_model_dir)
    preflight.check_model(str(PRETRAINED))


def test_records_without_the_image_feature_are_one_line_exit_2_listing_their_features(tmp_path, capsys):
    """TFDS writes the image under ``image``: every record would be a dead letter and the version empty."""
    path = tmp_path / "tfds-00000-of-00001.tfrecord.gz"
    records = [schema.serialize({"image": schema.bytes_feature(image), "label": schema.int_feature(i)})
               for i, image in enumerate(shards.good_images())]
    with open(path, "wb") as stream:
        tfrecord.write_records(stream, records, gzipped=True)
    root = tmp_path / "out"
    code = cli.main(["augment", "--config", "configs/local.yaml", "--input", str(path), "--output", str(root),
                     "--set", "inference.enabled=false"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "'image/encoded'" in err and "they have: image, label" in err and str(path) in err
    assert not root.exists()


def test_only_records_that_parse_decide_and_the_feature_name_is_a_parameter(tmp_path):
    path = tmp_path / "mixed.tfrecord"
    not_an_example, good = shards.bad_records()["not_an_example"], shards.example(shards.good_images()[0])
    shards.write(path, [not_an_example, good])
    preflight.check_schema(str(path))  # the second record has the feature
    shards.write(path, [not_an_example])
    preflight.check_schema(str(path))  # nothing parses: the decode stage dead-letters it, as before
    shards.write(path, [good])
    with pytest.raises(UsageError, match="none of the first 1 records .* 'pixels'; they have: image/encoded"):
        preflight.check_schema(str(path), "pixels")
