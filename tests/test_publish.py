"""Versioned publishing (CONTRACT §4) locally and on gs://, and the fingerprint that names versions.

gs:// cases run on fake-gcs-server, the test server that enforces generation preconditions; Beam's own
gs:// IO is checked on gcp-storage-emulator (see tests/gcs_servers.py for which proves what).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import google_crc32c
import pytest

from aeops import storage
from aeops.errors import AeopsError, UsageError
from aeops.fingerprint import fingerprint, list_inputs, model_sha256, version_name
from aeops.publish import MANIFEST, Publisher, PublishRaceError, Status, VersionBusyError


@pytest.fixture(params=["local", "gs"])
def root(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "out")
    return f"gs://{request.getfixturevalue('fake_gcs')}/datasets/out"


def write_version(publisher: Publisher, version: str, complete: bool = True, passed: bool = True) -> None:
    """What the pipeline leaves: shards, then manifest.json last, listing them with their sizes."""
    folder = publisher.version_dir(version)
    storage.write_bytes(storage.join(folder, "data-00000-of-00001.tfrecord"), b"records of " + version.encode())
    if complete:
        time.sleep(0.01)  # distinct manifest times, which order versions
        seal(publisher, version, passed)


def seal(publisher: Publisher, version: str, passed: bool = True) -> None:
    gate = {"passed": passed, "reason": None if passed else "no output: the input files hold no records"}
    publisher.write_manifest(version, {"files": {"data": publisher.inventory(version)}, "gate": gate})


def latest_text(root: str) -> str | None:
    path = storage.join(root, "LATEST")
    return storage.read_bytes(path).decode() if storage.exists(path) else None


def test_latest_is_written_last_and_names_only_complete_versions(root):
    with Publisher(root) as publisher:
        name, token = publisher.latest()
        assert name is None and token in (0, "0")
        folder, token = publisher.prepare("v-aaaaaaaaaaaa", token)
        assert folder == "v-aaaaaaaaaaaa"
        write_version(publisher, "v-aaaaaaaaaaaa", complete=False)
        assert not publisher.is_complete("v-aaaaaaaaaaaa")
        with pytest.raises(AeopsError, match="incomplete: only a complete version"):
            publisher.publish("v-aaaaaaaaaaaa", token)
        assert latest_text(root) is None
        seal(publisher, "v-aaaaaaaaaaaa")
        publisher.publish("v-aaaaaaaaaaaa", token)
    assert latest_text(root) == "v-aaaaaaaaaaaa\n"
    fresh = Publisher(root)
    assert fresh.latest().name == "v-aaaaaaaaaaaa"
    assert fresh.up_to_date("v-aaaaaaaaaaaa") == "v-aaaaaaaaaaaa"  # the same fingerprint again: nothing runs
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
    folder, token = publisher.prepare("v-bbbbbbbbbbbb", publisher.latest().token)
    assert folder == "v-bbbbbbbbbbbb"  # not a complete folder: cleared and written again, not a new attempt
    assert storage.match(storage.join(publisher.version_dir("v-bbbbbbbbbbbb"), "*")) == []
    assert latest_text(root) == "v-aaaaaaaaaaaa\n"
    write_version(publisher, "v-bbbbbbbbbbbb")
    publisher.publish("v-bbbbbbbbbbbb", token)
    assert latest_text(root) == "v-bbbbbbbbbbbb\n"


def snapshot(publisher: Publisher, version: str) -> dict[str, bytes]:
    return {path: storage.read_bytes(path) for path, _ in storage.match(storage.join(publisher.version_dir(version), "*"))}


def test_a_forced_rerun_writes_a_new_attempt_and_never_touches_the_one_latest_names(root):
    publisher = Publisher(root)
    for version in ("v-aaaaaaaaaaaa", "v-bbbbbbbbbbbb"):
        write_version(publisher, version)
        publisher.publish(version, publisher.latest().token)
    published = snapshot(publisher, "v-bbbbbbbbbbbb")
    folder, token = publisher.prepare("v-bbbbbbbbbbbb", publisher.latest().token)
    assert folder == "v-bbbbbbbbbbbb-2"
    write_version(publisher, folder, complete=False)  # the rerun is killed here
    assert latest_text(root) == "v-bbbbbbbbbbbb\n" and snapshot(publisher, "v-bbbbbbbbbbbb") == published
    assert publisher.up_to_date("v-bbbbbbbbbbbb") == "v-bbbbbbbbbbbb"  # the killed attempt does not count

    folder, token = publisher.prepare("v-bbbbbbbbbbbb", publisher.latest().token)  # --force again
    assert folder == "v-bbbbbbbbbbbb-2" and storage.match(storage.join(publisher.version_dir(folder), "*")) == []
    write_version(publisher, folder)
    assert latest_text(root) == "v-bbbbbbbbbbbb\n"  # LATEST switches only when the new attempt is published
    publisher.publish(folder, token)
    assert latest_text(root) == "v-bbbbbbbbbbbb-2\n" and snapshot(publisher, "v-bbbbbbbbbbbb") == published
    assert publisher.up_to_date("v-bbbbbbbbbbbb") == "v-bbbbbbbbbbbb-2"
    assert publisher.next_folder("v-bbbbbbbbbbbb") == "v-bbbbbbbbbbbb-3"

    # Retention counts a fingerprint once: the attempt LATEST names is kept, the one it replaced goes.
    assert publisher.retain(2) == ["v-bbbbbbbbbbbb"]
    assert [v.name for v in publisher.versions()] == ["v-aaaaaaaaaaaa", "v-bbbbbbbbbbbb-2"]


def test_up_to_date_prefers_the_attempt_latest_names(root):
    publisher = Publisher(root)
    for folder in ("v-aaaaaaaaaaaa", "v-aaaaaaaaaaaa-2", "v-aaaaaaaaaaaa-3"):
        write_version(publisher, folder)
    write_version(publisher, "v-aaaaaaaaaaaa-4", complete=False)
    assert publisher.up_to_date("v-aaaaaaaaaaaa") == "v-aaaaaaaaaaaa-3"
    publisher.publish("v-aaaaaaaaaaaa-2", publisher.latest().token)  # e.g. the -3 run lost a publish race
    assert publisher.up_to_date("v-aaaaaaaaaaaa") == "v-aaaaaaaaaaaa-2"
    assert publisher.retain(1) == ["v-aaaaaaaaaaaa-3", "v-aaaaaaaaaaaa"]
    assert publisher.attempts("v-aaaaaaaaaaaa") == ["v-aaaaaaaaaaaa-2", "v-aaaaaaaaaaaa-4"]  # -4: maybe in progress
    assert publisher.up_to_date("v-aaaaaaaaaaaa0") is None  # another fingerprint that merely shares a prefix


def test_complete_means_the_manifest_parses_and_matches_the_files(root):
    publisher = Publisher(root)
    write_version(publisher, "v-aaaaaaaaaaaa")
    manifest_path = storage.join(publisher.version_dir("v-aaaaaaaaaaaa"), MANIFEST)
    shard = storage.join(publisher.version_dir("v-aaaaaaaaaaaa"), "data-00000-of-00001.tfrecord")
    manifest, data = storage.read_bytes(manifest_path), storage.read_bytes(shard)
    assert publisher.status("v-aaaaaaaaaaaa") is Status.COMPLETE
    damage = {
        "0-byte manifest": (manifest_path, b""),
        "partial manifest": (manifest_path, manifest[: len(manifest) // 2]),
        "a manifest without files": (manifest_path, b'{"records_out": 3}'),
        "a shard of another size": (shard, data[:-1]),
        "a listed shard missing": (manifest_path, manifest.replace(b'"data": {', b'"data": {"data-x": 1, ')),
    }
    for what, (path, damaged) in damage.items():
        storage.write_bytes(path, damaged)
        assert publisher.status("v-aaaaaaaaaaaa") is Status.INCOMPLETE, what
        assert publisher.up_to_date("v-aaaaaaaaaaaa") is None and publisher.versions() == [], what
        storage.write_bytes(manifest_path, manifest)
        storage.write_bytes(shard, data)
    assert publisher.status("v-aaaaaaaaaaaa") is Status.COMPLETE


def test_a_version_that_failed_a_publish_gate_is_never_published_nor_up_to_date(root):
    publisher = Publisher(root)
    write_version(publisher, "v-aaaaaaaaaaaa")
    publisher.publish("v-aaaaaaaaaaaa", publisher.latest().token)
    write_version(publisher, "v-bbbbbbbbbbbb", passed=False)
    assert publisher.status("v-bbbbbbbbbbbb") is Status.UNPUBLISHED
    assert publisher.up_to_date("v-bbbbbbbbbbbb") is None
    with pytest.raises(AeopsError, match="unpublished"):
        publisher.publish("v-bbbbbbbbbbbb", publisher.latest().token)
    assert publisher.retain(1) == [] and publisher.status("v-bbbbbbbbbbbb") is Status.UNPUBLISHED
    assert publisher.prepare("v-bbbbbbbbbbbb", publisher.latest().token)[0] == "v-bbbbbbbbbbbb"  # rerun in its place
    assert storage.match(storage.join(publisher.version_dir("v-bbbbbbbbbbbb"), "*")) == []
    assert latest_text(root) == "v-aaaaaaaaaaaa\n"


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
    folder, token = publisher.prepare("v-killed000000", publisher.latest().token)
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
        _, token = next_run.prepare("v-killed000000", next_run.latest().token)
        write_version(next_run, "v-killed000000")
        next_run.publish("v-killed000000", token)
    assert latest_text(root) == "v-killed000000\n"
    assert [os.path.basename(p) for p, _ in storage.match(str(tmp_path / "out" / "v-killed000000" / "*"))] == [
        "data-00000-of-00001.tfrecord", MANIFEST]


MANIFEST_WRITER = textwrap.dedent("""
    import sys
    from aeops.publish import Publisher
    manifest = {"files": {}, "padding": "x" * (96 << 20)}  # big enough to be killed halfway through
    print("writing", flush=True)
    Publisher(sys.argv[1]).write_manifest("v-aaaaaaaaaaaa", manifest)
    print("written", flush=True)
""")


class StallingProxy:
    """A loopback TCP relay to the GCS test server that stops relaying a client's bytes after ``limit`` of them,
    so that an upload is deterministically in flight, halfway through, when the test kills its process."""

    def __init__(self, target: str, limit: int):
        self.target = target.removeprefix("http://").split(":")
        self.limit = limit
        self.relayed = 0
        self.stalled = threading.Event()
        self.released = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection((self.target[0], int(self.target[1])))
            threading.Thread(target=self._relay, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._relay, args=(upstream, client, False), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while chunk := source.recv(1 << 16):
                if counted:
                    if self.relayed >= self.limit:
                        self.stalled.set()  # the client stays blocked in send(), mid-request...
                        self.released.wait()
                        return  # ...until close(): then the server sees the request end halfway
                    self.relayed += len(chunk)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            sink.close()

    def close(self) -> None:
        self.released.set()
        self.server.close()


def test_a_manifest_write_killed_halfway_leaves_no_manifest(root, tmp_path):
    """A real kill -9 in the middle of writing manifest.json: locally the temp file is what is cut short (the
    rename never happens); on gs:// the upload is cut short and GCS never shows the partial object."""
    publisher = Publisher(root)
    write_version(publisher, "v-aaaaaaaaaaaa", complete=False)
    folder = tmp_path / "out" / "v-aaaaaaaaaaaa"
    env = dict(os.environ)
    proxy = None
    if root.startswith("gs://"):
        proxy = StallingProxy(os.environ["STORAGE_EMULATOR_HOST"], limit=16 << 20)
        env["STORAGE_EMULATOR_HOST"] = proxy.url
    writer = subprocess.Popen([sys.executable, "-c", MANIFEST_WRITER, root], stdout=subprocess.PIPE, text=True, env=env)
    assert writer.stdout.readline() == "writing\n"
    deadline = time.monotonic() + 60
    while True:  # until it is halfway through writing the manifest's bytes
        assert writer.poll() is None and time.monotonic() < deadline, "the write ended before it could be killed"
        if proxy:
            halfway = proxy.stalled.is_set()
        else:
            halfway = any(0 < p.stat().st_size < 96 << 20 for p in folder.iterdir() if not p.name.startswith("data-"))
        if halfway:
            break
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    writer.stdout.close()
    if proxy:
        proxy.close()
    for _ in range(10):  # and it stays so while the server handles the broken request
        assert not storage.exists(storage.join(publisher.version_dir("v-aaaaaaaaaaaa"), MANIFEST))
        assert publisher.status("v-aaaaaaaaaaaa") is Status.INCOMPLETE
        time.sleep(0.1)
    if not proxy:
        (leftover,) = [p for p in folder.iterdir() if not p.name.startswith("data-")]  # what the kill cut short
        assert leftover.name.startswith(".manifest.json.") and leftover.stat().st_size < 96 << 20
    folder_name, _ = publisher.prepare("v-aaaaaaaaaaaa", publisher.latest().token)  # the next run clears it
    assert storage.match(storage.join(publisher.version_dir(folder_name), "*")) == []


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
