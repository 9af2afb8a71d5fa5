"""Regenerating a dataset under one ROOT at the command level (CONTRACT §4): a killed run, a rerun, ``--force``
and two runs racing, each with the real ``aeops augment`` on the DirectRunner and real files.

Readers only follow ``ROOT/LATEST``; these tests watch it while runs are killed, rewritten and raced.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aeops.publish import MANIFEST
from pipelines import augment
from tests import shards
from tests.test_augment import read_version

REPO = Path(__file__).resolve().parent.parent
OFF = ("--set", "inference.enabled=false")
RECORDS = 300  # enough that the run writes its shards for a few seconds after the first file appears


def argv(pattern, root, *flags) -> list[str]:
    return ["--config", "configs/local.yaml", "--input", str(pattern), "--output", str(root), *OFF, *flags]


def command(pattern, root, *flags) -> list[str]:
    return [sys.executable, "-m", "aeops", "augment", *argv(pattern, root, *flags)]


def start(cmd) -> subprocess.Popen:
    """A run in its own process group, so that killing it kills everything it started."""
    return subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def finish(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def latest(root: Path) -> str:
    return (root / "LATEST").read_text().strip()


def files(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``directory``: relative path -> (size, mtime_ns)."""
    return {p.relative_to(directory).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in directory.rglob("*") if p.is_file()}


def check_reconciled(root: Path, version: str) -> dict:
    name, manifest, outputs, dead = read_version(root)
    assert name == version and manifest["version"] == version
    assert manifest["records_out"] == len(outputs) and manifest["dead_letter"]["entries"] == len(dead)
    assert manifest["records_in"] * manifest["variants"] == manifest["records_out"] + manifest["dead_letter"]["variants"]
    return manifest


@pytest.fixture
def many(tmp_path) -> Path:
    good = shards.good_images()
    shards.write(tmp_path / "in-0.tfrecord",
                 [shards.example(good[i % 3], image__key=f"k{i}".encode()) for i in range(RECORDS)])
    return tmp_path / "in-*.tfrecord"


def test_a_killed_run_leaves_the_previous_dataset_published_and_a_rerun_and_force_finish_it(many, tmp_path):
    root = tmp_path / "out"
    assert augment.run(argv(many, root)) == 0
    version_a = latest(root)
    a_files = files(root / version_a)

    # B: another seed, another version. Kill its whole process group once its version folder holds a file.
    b_command = command(many, root, "--set", "seed=2")
    process = start(b_command)
    deadline = time.monotonic() + 180
    written = []
    while not written:
        assert process.poll() is None, f"run B ended before it could be killed: {finish(process)}"
        assert time.monotonic() < deadline, "run B wrote nothing in 180 s"
        written = [p for p in root.glob("v-*/**/*") if p.is_file() and not p.is_relative_to(root / version_a)]
        time.sleep(0.02)
    os.killpg(os.getpgid(process.pid), signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    (version_b,) = {p.relative_to(root).parts[0] for p in written}

    assert latest(root) == version_a, "a killed run must not move LATEST"
    check_reconciled(root, version_a)
    assert files(root / version_a) == a_files, "the published version was touched"
    leftovers = files(root / version_b)
    assert MANIFEST not in leftovers and leftovers, leftovers
    assert all(name.startswith("beam-temp-") or name.endswith(".tfrecord") for name in leftovers), leftovers

    # The same command again: it clears what the killed run left and publishes B.
    code, out, err = finish(start(b_command))
    assert code == 0, err
    assert latest(root) == version_b and f"LATEST -> {version_b}" in out
    manifest_b = check_reconciled(root, version_b)
    assert sorted(files(root / version_b)) == sorted(
        [MANIFEST, "statistics.pb", "report.html", "contact_sheet.png", *manifest_b["files"]["data"],
         *manifest_b["files"]["dead_letter"]]
    ), "the rerun left files of the killed run behind"
    assert not any(p.name.startswith("beam-temp-") for p in root.rglob("*"))
    assert files(root / version_a) == a_files
    _, _, records_b, _ = read_version(root)

    # --force on the version LATEST names, killed -9 halfway: it wrote a new attempt folder, never B's files.
    b_files = files(root / version_b)
    process = start(command(many, root, "--set", "seed=2", "--force"))
    attempt = root / f"{version_b}-2"
    kill_once_it_writes(process, attempt)
    assert latest(root) == version_b and files(root / version_b) == b_files
    check_reconciled(root, version_b)
    assert MANIFEST not in files(attempt)

    # --force to the end: LATEST goes from B straight to the complete new attempt, never at an incomplete one.
    seen, violations, stop = [], [], threading.Event()

    def watch():
        while not stop.is_set():
            try:
                with open(root / "LATEST", "rb") as stream:
                    before = os.fstat(stream.fileno())
                    name = stream.read().decode().strip()
            except FileNotFoundError:
                name, before = None, None
            if not seen or seen[-1] != name:
                seen.append(name)
            if name is None or not (root / name / MANIFEST).exists():
                try:
                    now = os.stat(root / "LATEST")
                    unchanged = before is not None and (now.st_ino, now.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
                except FileNotFoundError:
                    unchanged = before is None
                if unchanged:  # LATEST named it (or nothing) all along while it had no manifest
                    violations.append(name)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    while not seen:
        time.sleep(0.01)
    try:
        assert augment.run(argv(many, root, "--set", "seed=2", "--force")) == 0
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert violations == []
    assert seen == [version_b, attempt.name]
    manifest_forced = check_reconciled(root, attempt.name)
    assert manifest_forced["started"] != manifest_b["started"] and manifest_forced["fingerprint"] == version_b[2:]
    _, _, records_forced, _ = read_version(root)
    assert sorted(records_forced) == sorted(records_b)  # the very same records
    assert files(root / version_b) == b_files and files(root / version_a) == a_files
    assert not any(p.name.endswith(".tmp") for p in root.rglob("*"))  # no temp file of LATEST or a manifest left

    # The same fingerprint again is up to date on the attempt LATEST names; --keep counts it once.
    assert augment.run(argv(many, root, "--set", "seed=2", "--keep", "2")) == 0
    assert augment.run(argv(many, root, "--set", "seed=3", "--keep", "2")) == 0
    version_c = latest(root)
    assert sorted(p.name for p in root.glob("v-*")) == sorted([attempt.name, version_c])


def kill_once_it_writes(process: subprocess.Popen, folder: Path) -> None:
    """Kill -9 the run's whole process group as soon as ``folder`` holds a file."""
    deadline = time.monotonic() + 180
    while not (folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))):
        assert process.poll() is None, f"the run ended before it could be killed: {finish(process)}"
        assert time.monotonic() < deadline, f"the run wrote nothing into {folder} in 180 s"
        time.sleep(0.02)
    os.killpg(os.getpgid(process.pid), signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def test_two_runs_racing_to_publish_exactly_one_moves_latest(tmp_path):
    """Two versions started at once on one local ROOT. The test holds ``ROOT/.LATEST.lock`` (the lock every
    writer of LATEST takes) until both runs have written their whole version, so both have read LATEST before
    either can move it: the race is forced, not left to timing."""
    good = shards.good_images()
    shards.write(tmp_path / "in-0.tfrecord", [shards.example(image) for image in good])
    pattern, root = tmp_path / "in-*.tfrecord", tmp_path / "out"
    root.mkdir()
    with open(root / ".LATEST.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs = [start(command(pattern, root, "--set", f"seed={seed}")) for seed in (11, 12)]
        deadline = time.monotonic() + 180
        while len(list(root.glob(f"v-*/{MANIFEST}"))) < 2:
            for run in runs:
                assert run.poll() is None, f"a run ended while LATEST was locked: {finish(run)}"
            assert time.monotonic() < deadline, "the two runs did not complete their versions in 180 s"
            time.sleep(0.05)
        assert not (root / "LATEST").exists()
    results = [finish(run) for run in runs]  # the lock is released: both try to publish now

    assert sorted(code for code, _, _ in results) == [0, 1], results
    (winner,) = [out for code, out, _ in results if code == 0]
    (loser,) = [err for code, _, err in results if code == 1]
    # One line, no traceback (CONTRACT §2): Beam's log of the failed Finalize bundle stays quiet.
    lines = [line for line in loser.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("aeops: another run published first:"), loser
    last = lines[0]
    versions = sorted(p.parent.name for p in root.glob(f"v-*/{MANIFEST}"))
    assert len(versions) == 2
    named = latest(root)
    assert named in versions and f"LATEST -> {named}" in winner
    (unnamed,) = set(versions) - {named}
    assert unnamed in last and named in last  # what LATEST names, and which version is left unnamed
    check_reconciled(root, named)
    manifest = json.loads((root / unnamed / MANIFEST).read_text())  # the loser's files are complete, just not named
    assert manifest["records_out"] == 3 * 3


def test_a_killed_force_rerun_on_gcs_leaves_the_published_version_untouched(many, gcs_emulator):
    """The same on gs:// (gcp-storage-emulator, which serves Beam's sinks): a --force rerun killed -9 halfway has
    written only under its new attempt prefix; LATEST and every object of the version it names are unchanged."""
    from google.cloud import storage as gcs

    bucket = gcs.Client().bucket(gcs_emulator)
    root = f"gs://{gcs_emulator}/datasets/out"

    def objects(prefix: str) -> dict[str, tuple[int, str]]:
        return {b.name: (b.size, b.md5_hash) for b in bucket.client.list_blobs(bucket, prefix=f"datasets/out/{prefix}")}

    assert augment.run(argv(many, root)) == 0
    version = bucket.blob("datasets/out/LATEST").download_as_text().strip()
    published = objects(f"{version}/")
    assert f"datasets/out/{version}/{MANIFEST}" in published

    # Beam's own gs:// IO in the child: the emulator's address, and no probe of the GCE metadata server.
    env = {**os.environ, "NO_GCE_CHECK": "true"}
    process = subprocess.Popen(command(many, root, "--force"), cwd=REPO, start_new_session=True, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not objects(f"{version}-2/"):
        assert process.poll() is None, f"the run ended before it could be killed: {finish(process)}"
        assert time.monotonic() < deadline, "the --force run wrote nothing in 180 s"
        time.sleep(0.05)
    os.killpg(os.getpgid(process.pid), signal.SIGKILL)
    process.wait(timeout=30)

    assert bucket.blob("datasets/out/LATEST").download_as_text().strip() == version
    assert objects(f"{version}/") == published
    assert f"datasets/out/{version}-2/{MANIFEST}" not in objects(f"{version}-2/")
    assert augment.run(argv(many, root, "--force")) == 0  # clears the killed attempt and publishes a new one
    assert bucket.blob("datasets/out/LATEST").download_as_text().strip() == f"{version}-2"
    assert objects(f"{version}/") == published
    check_reconciled(root, f"{version}-2")
