"""The augmentation job end to end on the DirectRunner: real shards, real model, real files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter

from aeops import codec, schema, storage, tfrecord
from aeops import model as aeops_model
from aeops.inference import bucket_shape
from aeops.ops import replay
from aeops.errors import AeopsError
from aeops.publish import Publisher, Status
from pipelines import augment
from tests import shards

OPS = "augment.ops=[{op: hflip, p: 0.5}, {op: rotate, p: 0.5, angle: [-20, 20]}, {op: gaussian_noise, p: 0.7, sigma: [5, 20]}]"


# mixed_input is mostly bad records on purpose: raise the publish gate's bar above its share of dead letters.
LENIENT = ("--set", "publish.max_dead_fraction=0.8")


def run(input_glob, root, *flags, config="configs/local.yaml"):
    argv = ["--config", config, "--input", str(input_glob), "--output", str(root), "--set", OPS, *LENIENT, *flags]
    return augment.run(argv)


def read_version(root, version=None):
    """(name, manifest, output records, dead-letter records) of ``version``, by default the one LATEST names."""
    root = str(root)
    version = version or storage.read_bytes(storage.join(root, "LATEST")).decode().strip()
    directory = storage.join(root, version)
    manifest = json.loads(storage.read_bytes(storage.join(directory, "manifest.json")))
    outputs, dead = [], []
    for path, _ in storage.match(storage.join(directory, "*.tfrecord*")):
        with storage.open_read(path) as stream:
            records = list(tfrecord.read_records(stream, tfrecord.is_gzip(path)))
        (dead if "/dead_letter-" in path else outputs).extend(records)
    return version, manifest, outputs, dead


@pytest.fixture
def mixed_input(tmp_path):
    """shard A: 3 good images and one record per decode failure; shard B: damaged (bad CRC, cut short)."""
    good = shards.good_images()
    bad = shards.bad_records()
    shards.write(tmp_path / "in-a.tfrecord", [shards.example(good[0], image__class__label=7), *bad.values(), shards.example(good[1])])
    more = [shards.example(good[2], image__key=b"gray"), shards.example(good[0], image__key=b"k2"),
            shards.example(good[1], image__key=b"bad-crc"), shards.example(good[1], image__key=b"k3"),
            shards.example(good[0], image__key=b"cut")]
    shards.write_damaged(tmp_path / "in-b.tfrecord", more, bad_crc_at=2)
    return tmp_path / "in-*.tfrecord", bad


def test_bad_records_land_in_the_dead_letter_and_counts_reconcile(mixed_input, tmp_path, capsys):
    pattern, bad = mixed_input
    root = tmp_path / "out"
    assert run(pattern, root, "--set", "inference.enabled=false", "--set", "encode.format=png") == 0
    version, manifest, outputs, dead = read_version(root)
    per_record = 3  # variants: 2 + the original
    assert manifest["records_in"] == 8 + 5 and manifest["variants"] == per_record
    assert manifest["records_out"] == (2 + 3) * per_record == len(outputs)
    assert manifest["records_in"] * per_record == manifest["records_out"] + manifest["dead_letter"]["variants"]
    entries = [schema.parse_dead_letter(d) for d in dead]
    assert len(entries) == manifest["dead_letter"]["entries"] == len(bad) + 2
    reasons = sorted((e["stage"], e["reason"].split(":")[0]) for e in entries)
    expected = sorted([("decode", r) for r in bad] + [("read", "damaged_shard")] * 2)
    if ("decode", "corrupt") in reasons:  # a PNG cut in half may fail as corrupt rather than truncated
        expected[expected.index(("decode", "truncated"))] = ("decode", "corrupt")
    assert reasons == expected
    decode_dead = {e["reason"].split(":")[0]: e for e in entries if e["stage"] == "decode"}
    for reason, record in bad.items():
        entry = decode_dead.get(reason) or decode_dead["corrupt"]
        assert entry["record"] == record and entry["source"].endswith("in-a.tfrecord")
        assert entry["variants"] == per_record
    read_dead = [e for e in entries if e["stage"] == "read"]
    assert {"bad data CRC" in e["reason"] for e in read_dead} == {True, False}
    assert all("at byte" in e["reason"] and e["source"].endswith("in-b.tfrecord") for e in read_dead)
    assert "13 in x 3 variants" in capsys.readouterr().out


@pytest.mark.parametrize("suffix", [".tfrecord", ".tfrecord.gz"])
def test_a_length_header_claiming_2_to_the_60_bytes_is_a_read_dead_letter_and_the_job_goes_on(tmp_path, suffix):
    from tests.test_tfrecord import shard_with_a_lying_header

    offset = shard_with_a_lying_header(tmp_path / f"in-0{suffix}", 2**60, suffix.endswith(".gz"))
    shards.write(tmp_path / "in-1.tfrecord", [shards.example(image) for image in shards.good_images()])
    root = tmp_path / "out"
    assert run(tmp_path / "in-*", root, "--set", "inference.enabled=false", "--set", "augment.variants=1") == 0
    _, manifest, outputs, dead = read_version(root)
    (entry,) = [schema.parse_dead_letter(d) for d in dead]
    assert entry["stage"] == "read" and entry["source"].endswith(f"in-0{suffix}")
    assert entry["reason"].startswith("damaged_shard: record length 1152921504606846976 exceeds")
    assert entry["reason"].endswith(f"at byte {offset}")
    assert manifest["records_in"] == 2 + 3 + 1 and len(outputs) == (2 + 3) * 2


def test_float_tiffs_keep_their_brightness_and_library_warnings_are_counted_not_printed(tmp_path):
    from tests.images import float_tiff, gradient, jpeg_with_corrupt_exif, tiff

    gray = gradient(40, 48)[:, :, 1]
    rgb = gradient(40, 48)  # float RGB: Pillow cannot open it, OpenCV decodes it
    shards.write(tmp_path / "in.tfrecord", [shards.example(float_tiff(gray / 255.0), image__key=b"float"),
                                            shards.example(tiff((rgb / 255.0).astype(np.float32), photometric="rgb"),
                                                           image__key=b"float-rgb"),
                                            shards.example(jpeg_with_corrupt_exif(gradient(40, 48)), image__key=b"exif")])
    root = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "aeops", "augment", "--config", "configs/local.yaml", "--input", str(tmp_path / "in.tfrecord"),
         "--output", str(root), "--set", "inference.enabled=false", "--set", "encode.format=png"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr and "warnings.warn" not in result.stderr, result.stderr
    assert "warnings  1 UserWarning from the image libraries while decoding" in result.stdout
    _, _, outputs, dead = read_version(root)
    originals = {schema.feature_value(schema.parse(o).example, schema.SOURCE_KEY): schema.parse(o) for o in outputs
                 if schema.feature_value(schema.parse(o).example, schema.VARIANT) == 0}
    np.testing.assert_array_equal(codec.decode(originals[b"float"].image)[:, :, 0], gray)
    np.testing.assert_array_equal(codec.decode(originals[b"float-rgb"].image), rgb)
    assert dead == []


def test_an_input_folder_is_the_shards_in_it(tmp_path):
    """Beam's MatchFiles matched the folder itself and reading it raised IsADirectoryError."""
    folder = tmp_path / "shards"
    folder.mkdir()
    shards.write(folder / "part-00000-of-00001.tfrecord", [shards.example(image) for image in shards.good_images()])
    (folder / "NOTES.txt").write_text("not a shard")
    root = tmp_path / "out"
    assert run(folder, root, "--set", "inference.enabled=false", "--set", "augment.variants=1") == 0
    _, manifest, outputs, dead = read_version(root)
    assert [i["name"] for i in manifest["inputs"]] == [str(folder / "part-00000-of-00001.tfrecord")]
    assert len(outputs) == 6 and dead == []


def test_outputs_carry_lineage_that_replays_exactly(mixed_input, tmp_path):
    pattern, _ = mixed_input
    root = tmp_path / "out"
    run(pattern, root, "--set", "inference.enabled=false", "--set", "encode.format=png")
    _, _, outputs, _ = read_version(root)
    sources = {}
    for path in sorted(tmp_path.glob("in-*.tfrecord")):
        with open(path, "rb") as stream:
            for frame in tfrecord.read_frames(stream):
                if not frame.error:
                    try:
                        record = schema.parse(frame.data)
                        sources[record.key] = (record, codec.decode(record.image))
                    except Exception:  # noqa: BLE001 - the bad records of the fixture
                        continue
    variants_seen = set()
    for data in outputs:
        out = schema.parse(data).example
        key = schema.feature_value(out, schema.SOURCE_KEY)
        variant = schema.feature_value(out, schema.VARIANT)
        ops = json.loads(schema.feature_value(out, schema.OPS))
        record, source = sources[key]
        variants_seen.add(variant)
        pixels = codec.decode(schema.feature_value(out, schema.IMAGE))
        np.testing.assert_array_equal(pixels, replay(source, ops))
        assert schema.feature_value(out, schema.MODEL) == b"" and schema.feature_value(out, schema.SEED) == 1234
        assert (schema.feature_value(out, schema.HEIGHT), schema.feature_value(out, schema.WIDTH)) == pixels.shape[:2]
        if variant == 0:
            assert ops == []
        if schema.feature_value(record.example, schema.LABEL) is not None:
            assert schema.feature_value(out, schema.LABEL) == 7
    assert variants_seen == {0, 1, 2}


def test_model_stage_restores_and_stamps_outputs(mixed_input, tmp_path, tiny_model_dir):
    pattern, _ = mixed_input
    root = tmp_path / "out"
    assert run(pattern, root, "--model-dir", tiny_model_dir, "--set", "inference.fraction=0.5") == 0
    version, manifest, outputs, _ = read_version(root)
    sha = manifest["model"]["sha256"]
    stamps = [schema.feature_value(schema.parse(o).example, schema.MODEL) for o in outputs]
    assert set(stamps) == {sha.encode(), b""}  # half the variants restored, the others not
    metrics = manifest["metrics"]
    assert metrics["restored"] == stamps.count(sha.encode()) > 0
    assert 10 < metrics["psnr"]["mean"] < 99 and 0 < metrics["ssim"]["mean"] <= 1
    restored = [(schema.feature_value(e, schema.HEIGHT), schema.feature_value(e, schema.WIDTH))
                for e in (schema.parse(o).example for o in outputs) if schema.feature_value(e, schema.MODEL)]
    padded = sum(np.prod(bucket_shape(shape, 32)) for shape in restored)  # configs/local.yaml: pad_multiple 32
    assert metrics["padding_overhead"] == pytest.approx(padded / sum(h * w for h, w in restored) - 1)
    assert metrics["padding_overhead"] > 0  # the fixture's 30x40 and 47x33 images ride as 32x64 and 64x64
    directory = root / version
    assert (directory / "report.html").stat().st_size > 1000
    assert (directory / "contact_sheet.png").read_bytes()[:4] == b"\x89PNG"


def test_in_process_the_model_loads_once_and_overlapping_its_calls_changes_no_byte(mixed_input, tmp_path, tiny_model_dir):
    """The in-memory DirectRunner runs the handler in the launching process: it takes the model the preflight
    check loaded (one real load per run). Model calls overlapped with the other stages or in series: the same
    batches, the same records, and the same version (overlap does not enter the fingerprint)."""
    pattern, _ = mixed_input
    written = {}
    for overlap in ("true", "false"):
        loads = aeops_model.loads
        assert run(pattern, tmp_path / overlap, "--model-dir", tiny_model_dir, "--set", f"inference.overlap={overlap}",
                   "--set", "inference.max_batch_size=4") == 0
        assert aeops_model.loads == loads + 1
        written[overlap] = read_version(tmp_path / overlap)
    (version, manifest, overlapped, dead), (in_series_version, _, in_series, in_series_dead) = written.values()
    assert manifest["metrics"]["restored"] == len(overlapped) == manifest["records_out"] == 15
    assert sorted(overlapped) == sorted(in_series) and sorted(dead) == sorted(in_series_dead)
    assert version == in_series_version


def test_same_inputs_are_up_to_date_and_changes_make_new_versions(mixed_input, tmp_path, capsys):
    pattern, _ = mixed_input
    root = tmp_path / "out"
    off = ("--set", "inference.enabled=false")
    assert run(pattern, root, *off) == 0
    first = (root / "LATEST").read_text().strip()
    data_before = sorted(p.stat().st_mtime_ns for p in (root / first).iterdir())
    capsys.readouterr()
    assert run(pattern, root, *off) == 0
    assert "up to date" in capsys.readouterr().out
    assert sorted(p.stat().st_mtime_ns for p in (root / first).iterdir()) == data_before
    assert run(pattern, root, *off, "--set", "augment.variants=1") == 0
    second = (root / "LATEST").read_text().strip()
    assert second != first and {p.name for p in root.iterdir()} >= {first, second}
    assert run(pattern, root, *off, "--set", "augment.variants=3", "--keep", "1") == 0
    third = (root / "LATEST").read_text().strip()
    assert sorted(v.name for v in Publisher(str(root)).versions()) == [third]


def test_a_run_dead_lettering_more_than_the_bound_is_written_but_not_published(mixed_input, tmp_path):
    pattern, _ = mixed_input
    root = tmp_path / "out"
    off = ("--set", "inference.enabled=false")
    reason = "24 of 39 outputs dead-lettered (61.5%), above publish.max_dead_fraction = 0.5"
    with pytest.raises(AeopsError, match=re.escape(f"not published: {reason}")) as failure:
        run(pattern, root, *off, "--set", "publish.max_dead_fraction=0.5")
    assert failure.value.exit_code == 1 and "\n" not in str(failure.value)
    assert not (root / "LATEST").exists()
    (version,) = [p.name for p in root.glob("v-*")]
    manifest = json.loads((root / version / "manifest.json").read_text())
    assert manifest["gate"] == {"passed": False, "reason": reason, "dead_fraction": 24 / 39, "max_dead_fraction": 0.5}
    assert manifest["records_out"] == 15
    assert f"not published: {reason}" in (root / version / "report.html").read_text()
    assert Publisher(str(root)).status(version) is Status.UNPUBLISHED
    # A higher bar is the same fingerprint, yet not "up to date": the version runs again and is published.
    assert run(pattern, root, *off, "--set", "publish.max_dead_fraction=0.7") == 0
    assert (root / "LATEST").read_text().strip() == version
    assert json.loads((root / version / "manifest.json").read_text())["gate"]["passed"] is True
    page = (root / version / "report.html").read_text()
    assert "publish gates passed: 61.5% of the outputs dead-lettered, at most 70.0% allowed" in page
    assert "not published" not in page


def test_input_files_without_records_are_not_published_one_line_exit_1(tmp_path):
    shards.write(tmp_path / "good.tfrecord", [shards.example(image) for image in shards.good_images()])
    root = tmp_path / "out"
    assert run(tmp_path / "good.tfrecord", root, "--set", "inference.enabled=false") == 0
    published = (root / "LATEST").read_text()
    for shard in ("empty-0.tfrecord", "empty-1.tfrecord"):
        (tmp_path / shard).write_bytes(b"")
    command = [sys.executable, "-m", "aeops", "augment", "--config", "configs/local.yaml", "--input",
               str(tmp_path / "empty-*.tfrecord"), "--output", str(root), "--set", "inference.enabled=false"]
    for _ in range(2):  # never "up to date": the unpublished version runs again, and fails again
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 1, result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("aeops: not published: no output: the input files hold no records; ") and "LATEST is unchanged" in line
    assert (root / "LATEST").read_text() == published
    (unpublished,) = [p.name for p in root.glob("v-*") if p.name != published.strip()]
    manifest = json.loads((root / unpublished / "manifest.json").read_text())
    assert manifest["records_in"] == 0 and manifest["gate"]["passed"] is False
    assert Publisher(str(root)).status(unpublished) is Status.UNPUBLISHED


def test_every_output_file_respects_the_umask(tmp_path):
    """LATEST and the manifest are written through temp files: they must be created like every other output
    file (0666 less the umask), not with the temp file's 0600, or readers under another account are locked out."""
    shards.write(tmp_path / "in.tfrecord", [shards.example(image) for image in shards.good_images()])
    root = tmp_path / "out"
    command = [sys.executable, "-m", "aeops", "augment", "--config", "configs/local.yaml", "--input",
               str(tmp_path / "in.tfrecord"), "--output", str(root), "--set", "inference.enabled=false"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, preexec_fn=lambda: os.umask(0o027))
    assert result.returncode == 0, result.stderr
    modes = {p.relative_to(root).as_posix(): oct(p.stat().st_mode & 0o777) for p in root.rglob("*") if p.is_file()}
    assert {"LATEST", f"{(root / 'LATEST').read_text().strip()}/manifest.json"} <= modes.keys()
    assert set(modes.values()) == {oct(0o640)}, modes


def test_a_version_with_a_cut_short_manifest_is_not_up_to_date(tmp_path, capsys):
    """What a kill during a non-atomic manifest write would leave: a 0-byte manifest in a version LATEST does
    not name. The same run again must redo that version, not call it "up to date" and publish it."""
    shards.write(tmp_path / "in.tfrecord", [shards.example(image) for image in shards.good_images()])
    root = tmp_path / "out"
    off = ("--set", "inference.enabled=false")
    assert run(tmp_path / "in.tfrecord", root, *off) == 0
    first = (root / "LATEST").read_text().strip()
    assert run(tmp_path / "in.tfrecord", root, *off, "--set", "seed=5") == 0
    second = (root / "LATEST").read_text().strip()
    (root / second / "manifest.json").write_bytes(b"")
    publisher = Publisher(str(root))
    publisher.publish(first, publisher.latest().token)
    capsys.readouterr()
    assert run(tmp_path / "in.tfrecord", root, *off, "--set", "seed=5") == 0
    assert "up to date" not in capsys.readouterr().out
    assert (root / "LATEST").read_text().strip() == second  # rewritten in place: LATEST did not name it
    assert json.loads((root / second / "manifest.json").read_text())["records_out"] == 9
    assert publisher.status(second) is Status.COMPLETE


def test_gcs_in_and_out(gcs_emulator, tmp_path):
    bucket = gcs_emulator
    for i, image in enumerate(shards.good_images()):
        storage.write_bytes(f"gs://{bucket}/in/part-{i}.tfrecord", tfrecord.frame(shards.example(image)))
    root = f"gs://{bucket}/datasets/demo"
    assert run(f"gs://{bucket}/in/part-*.tfrecord", root, "--set", "inference.enabled=false") == 0
    version, manifest, outputs, dead = read_version(root)
    assert manifest["records_in"] == 3 and len(outputs) == 9 and dead == []
    assert storage.exists(f"{root}/{version}/report.html")


def test_a_missing_model_is_one_line_exit_2(tmp_path, mixed_input):
    pattern, _ = mixed_input
    result = subprocess.run(
        [sys.executable, "-m", "aeops", "augment", "--config", "configs/local.yaml", "--input", str(pattern),
         "--output", str(tmp_path / "o"), "--model-dir", str(tmp_path / "no-model")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no-model" in result.stderr


def test_the_stages_import_neither_tensorflow_nor_scipy():
    """Each worker process imports aeops.stages to unpickle the stages, at its start-up: TensorFlow (loaded by
    the model handler when there is a model stage) and SciPy (through scikit-image, half a second) stay out."""
    heavy = ["matplotlib", "scipy", "skimage", "tensorflow"]
    code = f"import sys, aeops.stages; print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(heavy)}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("with_model", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["ops", "ops+model"])
def test_in_process_and_multi_process_runners_write_identical_records(mixed_input, tmp_path, request, with_model):
    """The ops alone by default; with the model (each worker process starting TensorFlow: ~50 s more) under -m slow."""
    pattern, _ = mixed_input
    if with_model:
        stage = ("--model-dir", request.getfixturevalue("tiny_model_dir"), "--set", "inference.deterministic=true")
    else:
        stage = ("--set", "inference.enabled=false")
    common = (*stage, "--set", "augment.variants=1")
    assert run(pattern, tmp_path / "one", *common) == 0
    assert run(pattern, tmp_path / "two", *common, "--direct_running_mode=multi_processing", "--direct_num_workers=2") == 0
    _, first, one, dead_one = read_version(tmp_path / "one")
    _, second, two, dead_two = read_version(tmp_path / "two")
    assert len(one) == first["records_out"] > 0
    assert sorted(one) == sorted(two) and sorted(dead_one) == sorted(dead_two)
    assert first["fingerprint"] == second["fingerprint"] and first["runner"] == second["runner"] == "DirectRunner"


def test_stateful_shape_bucketing_path(mixed_input, tmp_path, tiny_model_dir):
    """``max_batch_duration_secs`` switches RunInference to Beam's length-bucketed stateful batching."""
    pattern, _ = mixed_input
    flags = ("--model-dir", tiny_model_dir, "--set", "inference.max_batch_duration_secs=0.05",
             "--set", "inference.min_batch_size=2", "--set", "augment.variants=1")
    argv = ["--config", "configs/local.yaml", "--input", str(pattern), "--output", str(tmp_path / "out"),
            "--set", OPS, *LENIENT, *flags, "--set", "inference.max_batch_size=4"]
    result = augment.launch(argv)
    _, manifest, outputs, _ = read_version(tmp_path / "out")
    assert manifest["metrics"]["restored"] == len(outputs) == manifest["records_out"] == 10
    # One model call per RunInference batch: no batch mixed the 32x64 bucket with the 64x64 one (without
    # bucketing, batches of 4 from one shard mix them and the handler splits them: more calls than batches).
    batches, calls = (_distribution(result, name) for name in ("inference_request_batch_size", "inference_batch_size"))
    assert batches.count == calls.count > 0 and batches.sum == calls.sum


def test_the_configured_pixel_budget_bounds_every_model_call(mixed_input, tmp_path, tiny_model_dir):
    """``inference.max_batch_pixels`` reaches the handler: 2,048 padded pixels is one 32x64 or 64x64 image a call."""
    pattern, _ = mixed_input
    argv = ["--config", "configs/local.yaml", "--input", str(pattern), "--output", str(tmp_path / "out"),
            "--set", OPS, *LENIENT, "--model-dir", tiny_model_dir, "--set", "augment.variants=1",
            "--set", "inference.max_batch_size=4", "--set", "inference.max_batch_pixels=2048"]
    result = augment.launch(argv)
    _, manifest, outputs, _ = read_version(tmp_path / "out")
    assert manifest["metrics"]["restored"] == len(outputs) == 10
    batches, calls = (_distribution(result, name) for name in ("inference_request_batch_size", "inference_batch_size"))
    assert batches.max > 1 and calls.max == 1 and calls.sum == 10


def _distribution(result, name: str):
    [found] = result.metrics().query(MetricsFilter().with_name(name))["distributions"]
    return found.committed


def test_a_failed_batch_dead_letters_only_the_image_the_model_rejects(mixed_input, tmp_path, one_size_rejecting_model):
    """Batches mix 30x40 images (padded to 32 high: rejected) with 47x33 and 64x64 ones (padded to 64x64)."""
    pattern, _ = mixed_input
    root = tmp_path / "out"
    assert run(pattern, root, "--model-dir", one_size_rejecting_model, "--set", "augment.variants=1",
               "--set", "inference.min_batch_size=8", "--set", "inference.max_batch_size=16") == 0
    _, manifest, outputs, dead = read_version(root)
    infer = [schema.parse_dead_letter(d) for d in dead if schema.parse_dead_letter(d)["stage"] == "infer"]
    sizes = [codec.decode(schema.parse(e["record"]).image).shape[:2] for e in infer]
    assert sizes == [(30, 40)] * 4  # two 30x40 records x (original + 1 variant); nothing else
    assert len(outputs) == manifest["records_out"] == 6 and manifest["metrics"]["restored"] == 6
    assert all(e["reason"].startswith("InvalidArgumentError: ") and "rejects images 32 pixels high" in e["reason"]
               and "\n" not in e["reason"] for e in infer), infer[0]["reason"]


def test_the_configured_pixel_limit_dead_letters_larger_images(mixed_input, tmp_path):
    """``decode.max_pixels`` from the config reaches the decode stage; an image of exactly the limit passes."""
    pattern, _ = mixed_input
    root = tmp_path / "out"
    assert run(pattern, root, "--set", "inference.enabled=false", "--set", "decode.max_pixels=1551") == 0  # 47 x 33
    _, manifest, outputs, dead = read_version(root)
    too_large = [e for e in map(schema.parse_dead_letter, dead) if e["reason"].startswith("too_many_pixels")]
    assert sorted((e["reason"].split(": ", 1)[1], os.path.basename(e["source"])) for e in too_large) == [
        ("30000x30000 = 900000000 pixels exceeds the limit of 1551", "in-a.tfrecord"),
        ("64x64 = 4096 pixels exceeds the limit of 1551", "in-a.tfrecord"),  # the truncated one: header first
        ("64x64 = 4096 pixels exceeds the limit of 1551", "in-b.tfrecord"),  # the grayscale image
    ]
    sizes = {(schema.feature_value(e, schema.HEIGHT), schema.feature_value(e, schema.WIDTH))
             for e in (schema.parse(o).example for o in outputs)}
    assert sizes == {(30, 40), (47, 33)} and manifest["records_out"] == len(outputs) == 4 * 3


def test_bfloat16_inference_is_a_new_version_a_grey_level_from_float32(tmp_path, tiny_model_dir):
    """``inference.precision=bfloat16`` serves the same model through the bfloat16 rewrite (in processes of
    their own: the rewrite is a process-wide option): another version, the same records, pixels within a few
    grey levels - and on a CPU with bfloat16 units, really computed differently."""
    from aeops.metrics import psnr
    from aeops.model import cpu_has_bfloat16
    from tests.images import gradient

    rng = np.random.default_rng(3)
    noisy = [np.clip(gradient(48, 64) + rng.normal(0, 20, (48, 64, 3)), 0, 255).astype(np.uint8) for _ in range(3)]
    shards.write(tmp_path / "in.tfrecord", [shards.example(codec.encode(image, "png"), image__key=f"k{i}".encode())
                                            for i, image in enumerate(noisy)])
    images = {}
    for precision in ("float32", "bfloat16"):
        result = subprocess.run(
            [sys.executable, "-m", "aeops", "augment", "--config", "configs/local.yaml", "--input",
             str(tmp_path / "in.tfrecord"), "--output", str(tmp_path / precision), "--model-dir", tiny_model_dir,
             "--set", f"inference.precision={precision}", "--set", "encode.format=png"],
            capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        version, manifest, outputs, dead = read_version(tmp_path / precision)
        assert dead == [] and manifest["metrics"]["restored"] == len(outputs) > 0
        images[precision] = (version, {(schema.feature_value(schema.parse(o).example, schema.SOURCE_KEY),
                                        schema.feature_value(schema.parse(o).example, schema.VARIANT)):
                                       codec.decode(schema.parse(o).image) for o in outputs})
    (version32, float32), (version16, bfloat16) = images.values()
    assert version16 != version32 and float32.keys() == bfloat16.keys()
    assert min(psnr(float32[k], bfloat16[k]) for k in float32) > 40
    if cpu_has_bfloat16():
        assert any(not np.array_equal(float32[k], bfloat16[k]) for k in float32)
