import hashlib
import io

import pytest

from aeops import schema, tfrecord
from aeops.errors import RecordError


def make(features):
    return schema.serialize(features)


def test_parse_uses_image_key_or_sha256():
    with_key = make({schema.IMAGE: schema.bytes_feature(b"img"), schema.KEY: schema.bytes_feature(b"k1")})
    assert schema.parse(with_key).key == b"k1"
    without = make({schema.IMAGE: schema.bytes_feature(b"img")})
    assert schema.parse(without).key == hashlib.sha256(b"img").hexdigest().encode()


@pytest.mark.parametrize(
    "data, reason",
    [
        (make({"other": schema.int_feature(1)}), "missing_image"),
        (make({schema.IMAGE: schema.bytes_feature(b"a", b"b")}), "missing_image"),
        (b"\xff\xff\xff\xff garbage", "not_an_example"),
    ],
)
def test_bad_records_raise_with_reason(data, reason):
    with pytest.raises(RecordError) as info:
        schema.parse(data)
    assert info.value.reason == reason


def test_output_example_passes_features_through_and_adds_lineage():
    source = make(
        {
            schema.IMAGE: schema.bytes_feature(b"old"),
            schema.HEIGHT: schema.int_feature(99),
            schema.LABEL: schema.int_feature(7),
            "image/object/bbox/xmin": schema.float_feature(0.25, 0.5),
        }
    )
    record = schema.parse(source)
    out = schema.parse(
        schema.output_example(record, b"new", "png", 4, 5, 2, [{"op": "hflip", "params": {}}], 42, "abc")
    ).example
    value = lambda name: schema.feature_value(out, name)  # noqa: E731
    assert value(schema.IMAGE) == b"new" and value(schema.FORMAT) == b"png"
    assert (value(schema.HEIGHT), value(schema.WIDTH), value(schema.CHANNELS)) == (4, 5, 3)
    assert value(schema.LABEL) == 7
    assert list(out.features.feature["image/object/bbox/xmin"].float_list.value) == [0.25, 0.5]
    assert value(schema.SOURCE_KEY) == record.key and value(schema.VARIANT) == 2
    assert value(schema.OPS) == b'[{"op":"hflip","params":{}}]'
    assert value(schema.SEED) == 42 and value(schema.MODEL) == b"abc"


def test_serialization_is_deterministic_and_tensorflow_compatible():
    import tensorflow as tf

    features = {name: schema.bytes_feature(name.encode()) for name in ("z", "a", "m", schema.IMAGE)}
    features["n"] = schema.int_feature(1, 2, 3)
    data = make(features)
    assert data == make(dict(reversed(list(features.items()))))
    parsed = tf.io.parse_single_example(data, {"n": tf.io.FixedLenFeature([3], tf.int64)})
    assert parsed["n"].numpy().tolist() == [1, 2, 3]
    assert tf.train.Example.FromString(data).SerializeToString(deterministic=True) == data


def test_dead_letter_example():
    entry = schema.parse_dead_letter(schema.dead_letter_example(b"raw", "f.tfrecord", "decode", "truncated: x", 3))
    assert entry == {"record": b"raw", "source": "f.tfrecord", "stage": "decode", "reason": "truncated: x", "variants": 3}


def test_tfrecord_round_trip_plain_and_gzip():
    records = [b"", b"a", b"x" * 100_000]
    for gzipped in (False, True):
        buffer = io.BytesIO()
        assert tfrecord.write_records(buffer, records, gzipped) == 3
        buffer.seek(0)
        assert list(tfrecord.read_records(buffer, gzipped)) == records


def test_tfrecord_damage_is_reported_with_offsets():
    good = [tfrecord.frame(b"one"), tfrecord.frame(b"two"), tfrecord.frame(b"three")]
    corrupt_data = bytearray(b"".join(good))
    corrupt_data[len(good[0]) + 12] ^= 0xFF  # a byte inside record two's data
    frames = list(tfrecord.read_frames(io.BytesIO(bytes(corrupt_data))))
    assert [f.error is None for f in frames] == [True, False, True]
    assert frames[1].offset == len(good[0]) and frames[2].data == b"three"

    truncated = b"".join(good)[:-5]
    frames = list(tfrecord.read_frames(io.BytesIO(truncated)))
    assert [f.data for f in frames[:2]] == [b"one", b"two"]
    assert "truncated" in frames[2].error and frames[2].offset == len(good[0]) + len(good[1])

    bad_length = bytearray(b"".join(good))
    bad_length[len(good[0]) + 9] ^= 0xFF  # record two's length CRC
    frames = list(tfrecord.read_frames(io.BytesIO(bytes(bad_length))))
    assert len(frames) == 2 and "length CRC" in frames[1].error


def test_tfrecord_files_are_readable_by_tensorflow(tmp_path):
    import tensorflow as tf

    path = tmp_path / "x.tfrecord.gz"
    with open(path, "wb") as stream:
        tfrecord.write_records(stream, [b"a", b"bc"], gzipped=True)
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type="GZIP")] == [b"a", b"bc"]


def test_an_empty_image_key_falls_back_to_the_sha256_even_with_more_values():
    data = make({schema.IMAGE: schema.bytes_feature(b"img"), schema.KEY: schema.bytes_feature(b"", b"second")})
    assert schema.parse(data).key == hashlib.sha256(b"img").hexdigest().encode()


def test_the_first_value_of_a_multi_valued_key_or_feature_counts():
    example = schema.serialize({schema.IMAGE: schema.bytes_feature(b"img"),
                                schema.KEY: schema.bytes_feature(b"first", b"second")})
    record = schema.parse(example)
    assert record.key == b"first"
    assert schema.feature_value(record.example, schema.KEY) == b"first"
