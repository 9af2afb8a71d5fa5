"""aeops.storage, the one door to files, behaves the same on a local folder and on gs:// (the GCS emulator)."""

from __future__ import annotations

import pytest

from aeops import storage


@pytest.fixture(params=["local", "gs"])
def base(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "store")
    return f"gs://{request.getfixturevalue('gcs_emulator')}/store"


def test_write_match_read_and_exists(base):
    files = {"a/one.tfrecord": b"1", "a/two.tfrecord": b"22", "a/notes.txt": b"333", "b/deep/three.tfrecord": b"4444"}
    for rel, data in files.items():
        storage.write_bytes(storage.join(base, *rel.split("/")), data)
    assert storage.match(storage.join(base, "a", "*.tfrecord")) == [
        (storage.join(base, "a", "one.tfrecord"), 1), (storage.join(base, "a", "two.tfrecord"), 2)]
    assert [size for _, size in storage.match(storage.join(base, "**"))] == [3, 1, 2, 4]  # sorted by path: notes, one, two, deep
    assert storage.match(storage.join(base, "a", "*.nothing")) == []
    assert storage.read_bytes(storage.join(base, "b", "deep", "three.tfrecord")) == b"4444"
    with storage.open_read(storage.join(base, "a", "two.tfrecord")) as stream:
        assert stream.read(1) == b"2" and stream.read() == b"2"
    assert storage.exists(storage.join(base, "a", "notes.txt"))
    assert not storage.exists(storage.join(base, "a", "missing.txt"))
    storage.write_bytes(storage.join(base, "a", "one.tfrecord"), b"rewritten")
    assert storage.read_bytes(storage.join(base, "a", "one.tfrecord")) == b"rewritten"


def test_a_local_folder_matches_every_file_under_it(tmp_path):
    for rel in ("x/1.png", "x/y/2.png", "x/y/z/3.png"):
        storage.write_bytes(str(tmp_path / rel), rel.encode())
    assert [path for path, _ in storage.match(str(tmp_path / "x"))] == [
        str(tmp_path / "x" / "1.png"), str(tmp_path / "x" / "y" / "2.png"), str(tmp_path / "x" / "y" / "z" / "3.png")]
    assert storage.is_remote("gs://b/x") and not storage.is_remote(str(tmp_path))
