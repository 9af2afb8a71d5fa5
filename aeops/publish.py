"""Publishing versions under an output ROOT (CONTRACT §4): ``LATEST`` moves only to complete versions.

A version ``ROOT/v-<fp12>/`` is complete when its ``manifest.json`` exists: the pipeline writes it as the
version's last file. ``LATEST`` is one small text file naming the newest complete version, and it is the
only thing readers follow, so a run that crashes or is killed leaves ``LATEST`` where it was.

Moving ``LATEST`` is a compare-and-swap against what the run read before it started (its *token*):

* ``gs://`` — a single-object write is atomic; ``if_generation_match=<generation read>`` (0 = "must not
  exist yet") makes it conditional. Beam's ``FileSystems`` cannot pass preconditions and renames by copy
  then delete, so this module uses google-cloud-storage directly there.
* local — an exclusive ``fcntl.flock`` on ``ROOT/.LATEST.lock`` serialises writers; under it the token
  (inode and mtime of ``LATEST``, so A→B→A is still seen as a change) is compared, then a temp file in the
  same folder is ``os.replace``-d over ``LATEST``.

The loser of a race gets :class:`PublishRaceError` (exit 1) and its version stays unnamed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import NamedTuple

from aeops import storage
from aeops.errors import AeopsError, UsageError
from aeops.fingerprint import VERSION_PREFIX

LATEST = "LATEST"
MANIFEST = "manifest.json"
_LOG = logging.getLogger(__name__)

Token = int | str
"""What ``LATEST`` was when read: its GCS generation (0 = absent), or locally ``"inode:mtime_ns"`` ("0" = absent)."""


class PublishRaceError(AeopsError):
    """Another run moved ``LATEST`` after this run read it."""

    reason = "publish_race"


class VersionBusyError(AeopsError):
    """Another live run on this machine is producing the same version right now."""

    reason = "version_busy"


class Latest(NamedTuple):
    name: str | None
    token: Token


@dataclass(frozen=True)
class Version:
    name: str
    finished: float  # manifest.json's modification time, seconds since the epoch


class Publisher:
    """Versions and ``LATEST`` under one output ROOT, local or ``gs://``.

    The pipeline's order: ``latest()`` before it starts; ``is_complete(v)`` → "up to date" (publish ``v``
    if ``LATEST`` names another version, so reverting a config moves ``LATEST`` back without work);
    otherwise ``token = prepare(v, token)``, write the version with ``manifest.json`` last,
    ``publish(v, token)``, ``retain(keep)``. A local ``Publisher`` holds a lock on the version from
    ``prepare`` until ``close()``: use it as a context manager.
    """

    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self._store = _GcsStore(self.root) if storage.is_remote(self.root) else _LocalStore(self.root)

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._store.release_version()

    def version_dir(self, version: str) -> str:
        return storage.join(self.root, version)

    def latest(self) -> Latest:
        """What ``LATEST`` names now and the token to publish against; (None, 0 or "0") when absent."""
        return self._store.read_latest()

    def is_complete(self, version: str) -> bool:
        return storage.exists(storage.join(self.version_dir(version), MANIFEST))

    def versions(self) -> list[Version]:
        """Complete versions, oldest first (by when their manifest was written)."""
        return sorted(self._store.complete_versions(), key=lambda v: (v.finished, v.name))

    def prepare(self, version: str, token: Token) -> Token:
        """Make ``ROOT/version/`` empty for a run of ``version``; return the token to publish against.

        Removes the leftovers of a crashed or killed run of the same version. With ``--force`` the
        version may be complete and even be the one ``LATEST`` names: then ``LATEST`` first moves back to
        the newest other complete version (or is removed when there is none), by the same
        compare-and-swap as ``publish``, so readers never follow it into a version being rewritten.
        Locally, a second live run of the same version fails here with :class:`VersionBusyError`; on
        ``gs://`` nothing tells a live run from a dead one, so overlapping runs must be prevented by the
        scheduler (Airflow ``max_active_runs=1``; see the README).
        """
        self._store.claim_version(version)
        current = self.latest()
        if current.token != token:
            raise self._race(version, current)
        if current.name == version:
            previous = [v.name for v in self.versions() if v.name != version]
            fallback = previous[-1] if previous else None
            _LOG.warning("%s: LATEST names %s, which this run rewrites; LATEST -> %s meanwhile",
                         self.root, version, fallback or "(removed)")
            token = self._swap(version, fallback, token)
        self._store.delete_version(version)
        return token

    def publish(self, version: str, token: Token) -> None:
        """Point ``LATEST`` at the complete ``version`` if it still is what was read as ``token``.

        Idempotent: when ``LATEST`` already names ``version`` (a retried bundle whose first attempt published,
        or a racer that made the very same version) there is nothing to do and no error.
        """
        if not self.is_complete(version):
            raise AeopsError(f"{self.version_dir(version)} has no {MANIFEST}: an incomplete version is never published")
        try:
            self._swap(version, version, token)
        except PublishRaceError:
            if self.latest().name != version:
                raise

    def retain(self, keep: int) -> list[str]:
        """Delete the oldest complete versions beyond ``keep``; return their names.

        The version ``LATEST`` names always counts among the ``keep``. Incomplete version folders are left
        alone: one may belong to a run still in progress, and ``prepare`` clears it when that fingerprint
        runs again (an abandoned one is listed in a warning, for deleting by hand).
        """
        if keep < 1:
            raise UsageError(f"--keep {keep}: keep at least 1 version (the one LATEST names)")
        latest = self.latest().name
        newest_first = [v.name for v in reversed(self.versions())]
        kept = [latest] if latest in newest_first else []
        kept += [name for name in newest_first if name != latest][: keep - len(kept)]
        doomed = [name for name in newest_first if name not in kept]
        for name in doomed:
            self._store.delete_version(name)
        incomplete = sorted(set(self._store.version_names()) - set(newest_first))
        if incomplete:
            _LOG.warning("%s: incomplete versions left in place (a run in progress, or leftovers): %s",
                         self.root, ", ".join(incomplete))
        return doomed

    def _swap(self, version: str, new_name: str | None, token: Token) -> Token:
        try:
            return self._store.write_latest(new_name, token)
        except _Conflict:
            raise self._race(version, self.latest()) from None

    def _race(self, version: str, current: Latest) -> PublishRaceError:
        return PublishRaceError(
            f"another run published first: {self.root}/{LATEST} now names {current.name or '(nothing)'}; "
            f"this run's {version} is left unnamed (rerun to publish it)")


class _Conflict(Exception):
    """``LATEST`` no longer matches the token."""


class _LocalStore:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.latest_path = os.path.join(self.root, LATEST)
        self._version_lock: int | None = None

    def read_latest(self) -> Latest:
        try:
            with open(self.latest_path, "rb") as stream:
                info = os.fstat(stream.fileno())
                return Latest(stream.read().decode("utf-8").strip() or None, f"{info.st_ino}:{info.st_mtime_ns}")
        except FileNotFoundError:
            return Latest(None, "0")

    def write_latest(self, name: str | None, token: Token) -> Token:
        os.makedirs(self.root, exist_ok=True)
        with open(os.path.join(self.root, ".LATEST.lock"), "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
            if self.read_latest().token != token:
                raise _Conflict
            if name is None:
                os.remove(self.latest_path)
            else:
                fd, tmp = tempfile.mkstemp(prefix=".LATEST.", dir=self.root)
                try:
                    with os.fdopen(fd, "wb") as stream:
                        stream.write(f"{name}\n".encode("utf-8"))
                        stream.flush()
                        os.fsync(stream.fileno())
                    os.replace(tmp, self.latest_path)
                except BaseException:
                    if os.path.exists(tmp):
                        os.remove(tmp)
                    raise
            _fsync_dir(self.root)
            return self.read_latest().token

    def claim_version(self, version: str) -> None:
        """Hold an exclusive lock on ``ROOT/.<version>.lock`` until ``release_version``; the kernel drops
        it when the process dies, so a killed run never blocks the next one."""
        self.release_version()
        os.makedirs(self.root, exist_ok=True)
        fd = os.open(os.path.join(self.root, f".{version}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise VersionBusyError(
                f"another run on this machine is producing {self.root}/{version} right now: "
                "wait for it, or stop it and rerun") from None
        self._version_lock = fd

    def release_version(self) -> None:
        if self._version_lock is not None:
            os.close(self._version_lock)
            self._version_lock = None

    def version_names(self) -> list[str]:
        if not os.path.isdir(self.root):
            return []
        return sorted(e.name for e in os.scandir(self.root) if e.is_dir() and e.name.startswith(VERSION_PREFIX))

    def complete_versions(self) -> list[Version]:
        found = []
        for name in self.version_names():
            try:
                found.append(Version(name, os.stat(os.path.join(self.root, name, MANIFEST)).st_mtime))
            except FileNotFoundError:
                pass
        return found

    def delete_version(self, version: str) -> None:
        """Manifest first, so a half-deleted version never looks complete."""
        folder = os.path.join(self.root, version)
        try:
            os.remove(os.path.join(folder, MANIFEST))
        except FileNotFoundError:
            pass
        shutil.rmtree(folder, ignore_errors=True)


def _fsync_dir(path: str) -> None:
    """Make the rename itself durable: a power cut must not bring back the old ``LATEST``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _GcsStore:
    def __init__(self, root: str):
        if not root.startswith("gs://"):
            raise UsageError(f"output {root!r}: only local paths and gs:// are supported")
        bucket, _, prefix = root[len("gs://"):].partition("/")
        self.bucket_name = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self._bucket = None

    @property
    def bucket(self):
        if self._bucket is None:
            from google.cloud import storage as gcs

            self._bucket = gcs.Client().bucket(self.bucket_name)
        return self._bucket

    def read_latest(self) -> Latest:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        blob = self.bucket.get_blob(self.prefix + LATEST)
        if blob is None:
            return Latest(None, 0)
        try:
            text = blob.download_as_text(if_generation_match=blob.generation)
        except (NotFound, PreconditionFailed):  # replaced or removed between the two requests: read again
            return self.read_latest()
        return Latest(text.strip() or None, blob.generation)

    def write_latest(self, name: str | None, token: Token) -> Token:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        blob = self.bucket.blob(self.prefix + LATEST)
        try:
            if name is None:
                blob.delete(if_generation_match=token)
                return 0
            # Readers over HTTP must not get a cached LATEST (public objects cache for an hour by default).
            blob.cache_control = "no-store"
            blob.upload_from_string(f"{name}\n", content_type="text/plain", if_generation_match=token)
        except (PreconditionFailed, NotFound):
            raise _Conflict from None
        return blob.generation

    def claim_version(self, version: str) -> None:
        """Nothing on GCS tells a live run from a dead one: see ``Publisher.prepare``."""

    def release_version(self) -> None:
        pass

    def version_names(self) -> list[str]:
        pages = self.bucket.client.list_blobs(self.bucket, prefix=self.prefix + VERSION_PREFIX, delimiter="/")
        for _ in pages:  # the prefixes fill in as the pages are read
            pass
        return sorted(p[len(self.prefix):].rstrip("/") for p in pages.prefixes)

    def complete_versions(self) -> list[Version]:
        found = []
        for name in self.version_names():
            blob = self.bucket.get_blob(f"{self.prefix}{name}/{MANIFEST}")
            if blob is not None:
                found.append(Version(name, blob.updated.timestamp()))
        return found

    def delete_version(self, version: str) -> None:
        """Manifest first, so a half-deleted version never looks complete. One request per object, as
        the batch API is what not every GCS test server has."""
        folder = f"{self.prefix}{version}/"
        self.bucket.delete_blobs([self.bucket.blob(folder + MANIFEST)], on_error=lambda blob: None)
        blobs = list(self.bucket.client.list_blobs(self.bucket, prefix=folder))
        self.bucket.delete_blobs(blobs, on_error=lambda blob: None)
