"""Versioned publishing (CONTRACT §4) locally and on gs://, and the fingerprint that names versions.

gs:// cases run on fake-gcs-server, the test server that enforces generation preconditions; Beam's own
gs:// IO is checked on gcp-storage-emulator (see tests/gcs_servers.py for which proves what).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import google_crc32c
import pytest
from apache_beam.io.filesystems import FileSystems

from aeops import storage
from aeops.errors import AeopsError, UsageError
from aeops.fingerprint import fingerprint, list_inputs, model_sha256, version_name
from aeops.publish import MANIFEST, Publisher, PublishRaceError, VersionBusyError


@pytest.fixture(params=["local", "gs"])
def root(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "out")
    return f"gs://{request.getfixturevalue('fake_gcs')}/datasets/out"


def write_version(publisher: Publisher, version: str, complete: bool = True) -> None:
    """What the pipeline leaves: shards, then manifest.json last."""
    folder = publisher.version_dir(version)
    storage.write_bytes(storage.join(folder, "data-00000-of-00001.tfrecord"), b"records of " + version.encode())
    if complete:
        time.sleep(0.01)  # distinct manifest times, which order versions
        storage.write_bytes(storage.join(folder, MANIFEST), b"{}")


def latest_text(root: str) -> str | None:
    path = storage.join(root, "LATEST")
    return storage.read_bytes(path).decode() if storage.exists(path) else None


def test_latest_is_written_last_and_names_only_complete_versions(root):
    with Publisher(root) as publisher:
        name, token = publisher.latest()
        assert name is None and token in (0, "0")
        token = publisher.prepare("v-aaaaaaaaaaaa", token)
        write_version(publisher, "v-aaaaaaaaaaaa", complete=False)
        assert not publisher.is_complete("v-aaaaaaaaaaaa")
        with pytest.raises(AeopsError, match="never published"):
            publisher.publish("v-aaaaaaaaaaaa", token)
        assert latest_text(root) is None
        storage.write_bytes(storage.join(publisher.version_dir("v-aaaaaaaaaaaa"), MANIFEST), b"{}")
        publisher.publish("v-aaaaaaaaaaaa", token)
    assert latest_text(root) == "v-aaaaaaaaaaaa\n"
    fresh = Publisher(root)
    assert fresh.latest().name == "v-aaaaaaaaaaaa"
    assert fresh.is_complete("v-aaaaaaaaaaaa")  # the same fingerprint again: "up to date", nothing runs
    assert [v.name for v in fresh.versions()] == ["v-aaaaaaaaaaaa"]


def test_racing_publishers_exactly_one_wins(root):
    versions = [f"v-{i:012d}" for i in range(6)]
    setup = Publisher(root)
    for version in versions:
        write_version(setup, version)
    token = setup.latest().token
    barrier = threading.Barrier(len(versions))
    outcomes: dict[str, object] = {}

    def run(version: str) -> None:
        publisher = Publisher(root)
        barrier.wait()
        try:
            publisher.publish(version, token)
            outcomes[version] = "won"
        except PublishRaceError as exc:
            outcomes[version] = exc

    threads = [threading.Thread(target=run, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [v for v, outcome in outcomes.items() if outcome == "won"]
    assert len(outcomes) == len(versions) and len(winners) == 1
    assert latest_text(root) == f"{winners[0]}\n"
    loser = next(o for o in outcomes.values() if isinstance(o, PublishRaceError))
    assert loser.exit_code == 1 and "\n" not in str(loser)
    assert str(loser).startswith("another run published first")


def test_a_stale_token_loses_even_when_latest_came_back(root):
    publisher = Publisher(root)
    for version in ("v-aaaaaaaaaaaa", "v-bbbbbbbbbbbb", "v-cccccccccccc"):
        write_version(publisher, version)
    publisher.publish("v-aaaaaaaaaaaa", publisher.latest().token)
    stale = publisher.latest().token
    publisher.publish("v-bbbbbbbbbbbb", stale)
    publisher.publish("v-aaaaaaaaaaaa", publisher.latest().token)  # A -> B -> A: same name, new write
    with pytest.raises(PublishRaceError):
        publisher.publish("v-cccccccccccc", stale)
    assert latest_text(root) == "v-aaaaaaaaaaaa\n"


def test_publishing_again_is_a_no_op_not_a_race(root):
    """Beam retries a bundle whose first attempt may already have published."""
    publisher = Publisher(root)
    write_version(publisher, "v-aaaaaaaaaaaa")
    token = publisher.latest().token
    publisher.publish("v-aaaaaaaaaaaa", token)
    publisher.publish("v-aaaaaaaaaaaa", token)
    assert latest_text(root) == "v-aaaaaaaaaaaa\n"


def test_retain_keeps_the_newest_and_never_latest(root):
    publisher = Publisher(root)
    names = [f"v-{i:012d}" for i in range(5)]
    for name in names:
        write_version(publisher, name)
    write_version(publisher, "v-inprogress00", complete=False)
    publisher.publish(names[0], publisher.latest().token)  # LATEST on the oldest, e.g. after a rollback
    assert publisher.retain(3) == [names[2], names[1]]
    assert [v.name for v in publisher.versions()] == [names[0], names[3], names[4]]
    assert storage.exists(storage.join(publisher.version_dir("v-inprogress00"), "data-00000-of-00001.tfrecord"))
    assert publisher.retain(1) == [names[4], names[3]]
    assert [v.name for v in publisher.versions()] == [names[0]]
    with pytest.raises(UsageError):
        publisher.retain(0)


def test_prepare_clears_leftovers_of_a_crashed_run(root):
    publisher = Publisher(root)
    write_version(publisher, "v-aaaaaaaaaaaa")
    publisher.publish("v-aaaaaaaaaaaa", publisher.latest().token)
    write_version(publisher, "v-bbbbbbbbbbbb", complete=False)  # a run that died before its manifest
    assert not publisher.is_complete("v-bbbbbbbbbbbb")
    token = publisher.prepare("v-bbbbbbbbbbbb", publisher.latest().token)
    assert storage.match(storage.join(publisher.version_dir("v-bbbbbbbbbbbb"), "*")) == []
    assert latest_text(root) == "v-aaaaaaaaaaaa\n"
    write_version(publisher, "v-bbbbbbbbbbbb")
    publisher.publish("v-bbbbbbbbbbbb", token)
    assert latest_text(root) == "v-bbbbbbbbbbbb\n"


def test_forced_rerun_of_latest_moves_latest_back_meanwhile(root):
    publisher = Publisher(root)
    for version in ("v-aaaaaaaaaaaa", "v-bbbbbbbbbbbb"):
        write_version(publisher, version)
        publisher.publish(version, publisher.latest().token)
    token = publisher.prepare("v-bbbbbbbbbbbb", publisher.latest().token)
    assert latest_text(root) == "v-aaaaaaaaaaaa\n"  # never a version being rewritten
    assert not publisher.is_complete("v-bbbbbbbbbbbb")
    write_version(publisher, "v-bbbbbbbbbbbb")
    publisher.publish("v-bbbbbbbbbbbb", token)
    assert latest_text(root) == "v-bbbbbbbbbbbb\n"


def test_a_second_live_run_of_the_same_version_is_refused_locally(tmp_path):
    root = str(tmp_path / "out")
    with Publisher(root) as first:
        first.prepare("v-aaaaaaaaaaaa", first.latest().token)
        with pytest.raises(VersionBusyError, match="producing"):
            Publisher(root).prepare("v-aaaaaaaaaaaa", first.latest().token)
    with Publisher(root) as again:
        again.prepare("v-aaaaaaaaaaaa", again.latest().token)


KILLED_RUN = textwrap.dedent("""
    import sys, time
    from aeops import storage
    from aeops.publish import Publisher
    publisher = Publisher(sys.argv[1])
    token = publisher.prepare("v-killed000000", publisher.latest().token)
    for shard in range(1000):
        storage.write_bytes(storage.join(publisher.version_dir("v-killed000000"), f"data-{shard:05d}"), b"x")
        print(shard, flush=True)
        time.sleep(0.05)
""")


def test_a_killed_run_leaves_latest_and_the_next_run_completes(tmp_path):
    root = str(tmp_path / "out")
    publisher = Publisher(root)
    write_version(publisher, "v-aaaaaaaaaaaa")
    publisher.publish("v-aaaaaaaaaaaa", publisher.latest().token)
    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN, root], stdout=subprocess.PIPE, text=True)
    for _ in range(3):  # some shards written: mid-run
        run.stdout.readline()
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    run.stdout.close()
    assert latest_text(root) == "v-aaaaaaaaaaaa\n"
    assert not publisher.is_complete("v-killed000000")
    with Publisher(root) as next_run:  # the kernel dropped the killed run's lock
        token = next_run.prepare("v-killed000000", next_run.latest().token)
        write_version(next_run, "v-killed000000")
        next_run.publish("v-killed000000", token)
    assert latest_text(root) == "v-killed000000\n"
    assert [os.path.basename(p) for p, _ in storage.match(str(tmp_path / "out" / "v-killed000000" / "*"))] == [
        "data-00000-of-00001.tfrecord", MANIFEST]


# --- the fingerprint ------------------------------------------------------------------------------


def test_fingerprint_changes_with_each_part_and_nothing_else(tmp_path):
    inputs = [{"name": "/d/a.tfrecord", "size": 3, "crc32c": "01"}, {"name": "/d/b.tfrecord", "size": 4, "crc32c": "02"}]
    config = {"seed": 1, "augment": {"variants": 2, "ops": []}}
    base = fingerprint(inputs, config, "m" * 64, "0.1.0")
    assert len(base) == 64 and version_name(base) == "v-" + base[:12]
    assert fingerprint(list(reversed(inputs)), dict(reversed(config.items())), "m" * 64, "0.1.0") == base
    changed = [
        fingerprint([inputs[0], {**inputs[1], "crc32c": "03"}], config, "m" * 64, "0.1.0"),
        fingerprint(inputs[:1], config, "m" * 64, "0.1.0"),
        fingerprint(inputs, {**config, "seed": 2}, "m" * 64, "0.1.0"),
        fingerprint(inputs, config, "n" * 64, "0.1.0"),
        fingerprint(inputs, config, "m" * 64, "0.1.1"),
    ]
    assert len({base, *changed}) == 6


def test_list_inputs_local_checksums_content(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.tfrecord").write_bytes(b"abc")
    (tmp_path / "d" / "b.tfrecord").write_bytes(b"defg")
    monkeypatch.chdir(tmp_path)
    listed = list_inputs("d/*.tfrecord")
    assert listed == [
        {"name": str(tmp_path / "d" / "a.tfrecord"), "size": 3, "crc32c": f"{google_crc32c.value(b'abc'):08x}"},
        {"name": str(tmp_path / "d" / "b.tfrecord"), "size": 4, "crc32c": f"{google_crc32c.value(b'defg'):08x}"},
    ]
    os.utime(tmp_path / "d" / "a.tfrecord", (0, 0))  # a copy or checkout: new mtime, same bytes
    assert list_inputs(str(tmp_path / "d" / "*.tfrecord")) == listed
    (tmp_path / "d" / "a.tfrecord").write_bytes(b"abd")
    assert list_inputs("d/*.tfrecord")[0]["crc32c"] != listed[0]["crc32c"]
    with pytest.raises(UsageError, match="matches no file"):
        list_inputs("d/*.nothing")


@pytest.mark.parametrize("server", ["gcs_emulator", "fake_gcs"])
def test_list_inputs_on_gcs_uses_generation_and_crc32c(server, request):
    bucket = request.getfixturevalue(server)
    for name, data in (("in/a.tfrecord", b"abc"), ("in/b.tfrecord", b"defg"), ("in/notes.txt", b"x")):
        storage.write_bytes(f"gs://{bucket}/{name}", data)
    listed = list_inputs(f"gs://{bucket}/in/*.tfrecord")
    assert [(i["name"], i["size"], i["crc32c"]) for i in listed] == [
        (f"gs://{bucket}/in/a.tfrecord", 3, f"{google_crc32c.value(b'abc'):08x}"),
        (f"gs://{bucket}/in/b.tfrecord", 4, f"{google_crc32c.value(b'defg'):08x}"),
    ]
    storage.write_bytes(f"gs://{bucket}/in/a.tfrecord", b"abc")  # same bytes, a new object generation
    again = list_inputs(f"gs://{bucket}/in/*.tfrecord")
    assert again[0]["generation"] != listed[0]["generation"] and again[1] == listed[1]


def test_model_sha256_same_local_and_on_gcs_and_sensitive_to_paths_and_bytes(tmp_path, gcs_emulator):
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    files = {"saved_model.pb": b"graph", "variables/variables.index": b"idx", "aeops_model.json": b"{}"}
    for rel, data in files.items():
        (model / rel).write_bytes(data)
        storage.write_bytes(f"gs://{gcs_emulator}/models/m1/{rel}", data)
    local = model_sha256(str(model))
    assert model_sha256(str(model) + "/") == local
    assert model_sha256(f"gs://{gcs_emulator}/models/m1") == local
    (model / "variables" / "variables.index").rename(model / "variables" / "other.index")
    renamed = model_sha256(str(model))
    (model / "saved_model.pb").write_bytes(b"grapH")
    assert len({local, renamed, model_sha256(str(model))}) == 3
    changed = model_sha256(str(model))
    (model / "aeops_model.json").write_bytes(b'{"sha256": "..."}')  # metadata and checkpoints are not the model
    (model / "checkpoints").mkdir()
    (model / "checkpoints" / "ckpt-1.index").write_bytes(b"step 1")
    assert model_sha256(str(model)) == changed
    with pytest.raises(UsageError, match="model directory"):
        model_sha256(str(tmp_path / "missing"))


def test_beam_filesystems_work_on_the_emulator(gcs_emulator):
    """The fixture is usable by Beam's own gs:// IO (create, match, read, rename, delete)."""
    path = f"gs://{gcs_emulator}/beam/a.bin"
    with FileSystems.create(path) as stream:
        stream.write(b"hello beam")
    assert [m.size_in_bytes for m in FileSystems.match([f"gs://{gcs_emulator}/beam/*"])[0].metadata_list] == [10]
    with FileSystems.open(path) as stream:
        assert stream.read() == b"hello beam"
    FileSystems.rename([path], [f"gs://{gcs_emulator}/beam/b.bin"])
    FileSystems.delete([f"gs://{gcs_emulator}/beam/b.bin"])
    assert not FileSystems.exists(path)
