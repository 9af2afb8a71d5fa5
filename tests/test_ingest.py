import numpy as np
import pytest
from PIL import Image

from aeops import codec, schema, storage, tfrecord
from aeops.errors import UsageError
from aeops.sample import sample_paths
from pipelines import ingest
from tests.images import gradient, pil_bytes


def read_shards(pattern):
    records = []
    for path, _ in storage.match(pattern):
        with storage.open_read(path) as stream:
            records += [schema.parse(r) for r in tfrecord.read_records(stream, tfrecord.is_gzip(path))]
    return records


@pytest.fixture
def image_tree(tmp_path):
    root = tmp_path / "images"
    for label, shade in (("cats", 0), ("dogs", 100)):
        (root / label).mkdir(parents=True)
        for i in range(3):
            array = np.clip(gradient(20 + i, 30) + shade + i, 0, 255).astype(np.uint8)
            (root / label / f"{i}.png").write_bytes(pil_bytes(Image.fromarray(array), "PNG"))
    (root / "notes.txt").write_text("not an image")
    (root / "cats" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def test_ingest_folder_with_labels_round_trips(image_tree, tmp_path, capsys):
    prefix = str(tmp_path / "out" / "ds")
    assert ingest.run([str(image_tree), "--output", prefix, "--num-shards", "3", "--label-from-dir"]) == 0
    captured = capsys.readouterr()
    assert "6 images -> 3 shard(s)" in captured.out and "1 skipped" in captured.out
    assert "broken.jpg" in captured.err
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [f"ds-0000{i}-of-00003.tfrecord" for i in range(3)]
    records = read_shards(prefix + "-*")
    assert len(records) == 6
    labels = {schema.feature_value(r.example, schema.LABEL_TEXT): schema.feature_value(r.example, schema.LABEL)
              for r in records}
    assert labels == {b"cats": 0, b"dogs": 1}
    for record in records:
        assert record.key == schema.image_key(record.image)
        array = codec.decode(record.image)
        assert schema.feature_value(record.example, schema.HEIGHT) == array.shape[0]


def test_keys_and_shards_are_stable_across_runs(image_tree, tmp_path):
    for name in ("a", "b"):
        ingest.run([str(image_tree / "*" / "*.png"), "--output", str(tmp_path / name / "ds"), "--num-shards", "2"])
    for shard in ("ds-00000-of-00002.tfrecord", "ds-00001-of-00002.tfrecord"):
        assert (tmp_path / "a" / shard).read_bytes() == (tmp_path / "b" / shard).read_bytes()


def test_output_reads_back_with_plain_tensorflow(tmp_path):
    import tensorflow as tf

    prefix = str(tmp_path / "sample")
    assert ingest.run(["--sample", "--output", prefix, "--gzip", "--num-shards", "2"]) == 0
    files = tf.io.gfile.glob(prefix + "-*-of-00002.tfrecord.gz")
    assert len(files) == 2
    spec = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/key": tf.io.FixedLenFeature([], tf.string),
        "image/height": tf.io.FixedLenFeature([], tf.int64),
        "image/width": tf.io.FixedLenFeature([], tf.int64),
    }
    count = 0
    for raw in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.io.parse_single_example(raw, spec)
        image = tf.io.decode_image(example["image/encoded"], channels=3, expand_animations=False)
        assert image.shape[0] == example["image/height"].numpy() and image.shape[1] == example["image/width"].numpy()
        count += 1
    assert count == len(sample_paths()) >= 15


def test_missing_source_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="matches no image file"):
        ingest.run([str(tmp_path / "nope" / "*.jpg"), "--output", str(tmp_path / "x")])


def test_gcs_ingest_round_trip(gcs_emulator, image_tree):
    bucket = gcs_emulator
    for path in sorted(image_tree.rglob("*.png")):
        storage.write_bytes(f"gs://{bucket}/raw/{path.parent.name}/{path.name}", path.read_bytes())
    prefix = f"gs://{bucket}/shards/ds"
    assert ingest.run([f"gs://{bucket}/raw", "--output", prefix, "--num-shards", "2", "--label-from-dir"]) == 0
    records = read_shards(prefix + "-*")
    assert len(records) == 6
    assert {schema.feature_value(r.example, schema.LABEL_TEXT) for r in records} == {b"cats", b"dogs"}


def test_boxes_from_a_csv_become_od_api_objects_that_augment_moves(tmp_path):
    """One CSV row per box (the OD-API tutorial layout): normalised boxes, class text and 1-based ids; the
    resulting shard goes through augment with the boxes moved."""
    from aeops import config, spatial
    from tests import targets_scene as scene

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "scene.png").write_bytes(scene.png(scene.image()))
    (folder / "empty.png").write_bytes(scene.png(np.zeros((20, 30, 3), np.uint8)))
    rows = ["filename,width,height,class,xmin,ymin,xmax,ymax"]
    rows += [f"scene.png,{scene.WIDTH},{scene.HEIGHT},{name.decode()},{x0},{y0},{x1},{y1}"
             for name, (x0, y0, x1, y1) in zip(scene.NAMES, scene.RECTS)]
    (tmp_path / "boxes.csv").write_text("\n".join(rows) + "\n")
    prefix = str(tmp_path / "od")
    assert ingest.run([str(folder), "--output", prefix, "--num-shards", "1", "--boxes", str(tmp_path / "boxes.csv")]) == 0
    records = {schema.feature_value(r.example, schema.FILENAME): r for r in read_shards(prefix + "-*")}
    layout = config.SchemaConfig()
    targets = spatial.read(records[b"scene.png"].example, layout, (scene.HEIGHT, scene.WIDTH))
    np.testing.assert_allclose(targets.boxes, scene.boxes(), atol=1e-6)
    feature = records[b"scene.png"].example.features.feature
    assert list(feature["image/object/class/text"].bytes_list.value) == scene.NAMES
    ids = {b"blue": 1, b"green": 2, b"red": 3, b"yellow": 4}  # sorted names, from 1 as an OD-API label map
    assert list(feature["image/object/class/label"].int64_list.value) == [ids[n] for n in scene.NAMES]
    assert len(records[b"empty.png"].example.features.feature["image/object/bbox/xmin"].float_list.value) == 0

    from pipelines import augment
    from tests.test_augment import read_version

    root = tmp_path / "out"
    assert augment.run(["--input", prefix + "-*", "--output", str(root), "--set", "inference.enabled=false",
                        "--set", "encode.format=png", "--set", "augment.ops=[{op: hflip, p: 1.0}]"]) == 0
    _, _, outputs, dead = read_version(root)
    flipped = [schema.parse(o).example for o in outputs if schema.feature_value(schema.parse(o).example, schema.VARIANT)]
    assert dead == [] and flipped
    for example in flipped:
        if schema.feature_value(example, schema.FILENAME) == b"scene.png":
            moved = spatial.read(example, layout, (scene.HEIGHT, scene.WIDTH))
            np.testing.assert_allclose(moved.boxes[:, [0, 2]], 1 - scene.boxes()[:, [2, 0]], atol=1e-6)


@pytest.mark.parametrize("csv_text, message", [
    ("filename,xmin,ymin,xmax,ymax\nscene.png,1,2,3,4\n", "no column 'class'"),
    ("filename,class,xmin,ymin,xmax,ymax\nscene.png,cat,5,2,3,4\n", "line 2: needs a class and xmin <= xmax"),
    ("filename,class,xmin,ymin,xmax,ymax\nother.png,cat,1,2,3,4\n", "'other.png', which is not among the images"),
    ("filename,class,xmin,ymin,xmax,ymax\nscene.png,cat,1,2,300,4\n", "line 2: box (1, 2, 300, 4) lies outside"),
])
def test_bad_box_files_are_one_line_usage_errors(tmp_path, csv_text, message):
    (tmp_path / "scene.png").write_bytes(pil_bytes(Image.fromarray(gradient(20, 30)), "PNG"))
    (tmp_path / "boxes.csv").write_text(csv_text)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ingest.run([str(tmp_path / "scene.png"), "--output", str(tmp_path / "o"), "--boxes", str(tmp_path / "boxes.csv")])
