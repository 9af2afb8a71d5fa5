"""Publishing versions under an output ROOT (CONTRACT §4): ``LATEST`` moves only to complete versions.

A run of fingerprint ``v-<fp12>`` writes one *attempt* folder: ``ROOT/v-<fp12>/`` the first time,
``ROOT/v-<fp12>-2/``, ``-3``, ... when a folder of that fingerprint must be kept (a ``--force`` rerun of a
complete version, above all the one ``LATEST`` names). A run never rewrites a complete folder nor the one
``LATEST`` names, so a rerun that is killed leaves ``ROOT/$(cat ROOT/LATEST)`` as it was.

A folder is *complete* when its ``manifest.json`` (the last file a run writes, atomically) parses and every
file it lists is there with the size it lists; it is *publishable* when its run also passed the publish
gates (``manifest["gate"]["passed"]``). ``LATEST`` is one small text file naming a publishable folder, and
it is the only thing readers follow.

Moving ``LATEST`` is a compare-and-swap against what the run read before it started (its *token*):

* ``gs://`` — a single-object write is atomic (an upload, one request or resumable, creates the object
  only when it completes); ``if_generation_match=<generation read>`` (0 = "must not exist yet") makes it
  conditional. Beam's ``FileSystems`` cannot pass preconditions and renames by copy then delete, so this
  module uses google-cloud-storage directly there.
* local — an exclusive ``fcntl.flock`` on ``ROOT/.LATEST.lock`` serialises writers; under it the token
  (inode and mtime of ``LATEST``, so A→B→A is still seen as a change) is compared, then a temp file in the
  same folder is ``os.replace``-d over ``LATEST``. The manifest is written the same way (temp, rename).

The loser of a race gets :class:`PublishRaceError` (exit 1) and its version stays unnamed.
"""

from __future__ import annotations

import enum
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from typing import NamedTuple

from aeops import storage
from aeops.errors import AeopsError, UsageError
from aeops.fingerprint import VERSION_PREFIX

LATEST = "LATEST"
MANIFEST = "manifest.json"
_ATTEMPT = re.compile(rf"^(?P<version>{VERSION_PREFIX}[^-]{{12}})-(?P<attempt>[1-9][0-9]*)$")
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


class Status(enum.Enum):
    INCOMPLETE = "incomplete"  # no manifest, or one that does not parse or does not match the folder's files
    UNPUBLISHED = "unpublished"  # complete, but its run failed a publish gate: never named by LATEST
    COMPLETE = "complete"


@dataclass(frozen=True)
class Version:
    name: str
    finished: float  # manifest.json's modification time, seconds since the epoch
    status: Status


def attempt_folder(version: str, attempt: int) -> str:
    """``v-<fp12>`` for the first attempt, ``v-<fp12>-<n>`` for the n-th."""
    return version if attempt == 1 else f"{version}-{attempt}"


def split_attempt(folder: str) -> tuple[str, int]:
    """``v-<fp12>-3`` -> (``v-<fp12>``, 3); ``v-<fp12>`` (or any other name) -> (itself, 1)."""
    match = _ATTEMPT.match(folder)
    return (match["version"], int(match["attempt"])) if match else (folder, 1)


class Publisher:
    """Versions and ``LATEST`` under one output ROOT, local or ``gs://``.

    The pipeline's order: ``latest()`` before it starts; ``up_to_date(v)`` → the publishable folder of
    ``v`` if there is one (publish it if ``LATEST`` names another, so reverting a config moves ``LATEST``
    back without work); otherwise ``folder, token = prepare(v, token)``, write the folder, then
    ``write_manifest`` last, ``publish(folder, token)``, ``retain(keep)``. A local ``Publisher`` holds a lock
    on the version from ``prepare`` until ``close()``: use it as a context manager.
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

    def status(self, folder: str) -> Status:
        return self._inspect(folder).status

    def is_complete(self, folder: str) -> bool:
        """Complete and publishable: what ``LATEST`` may name and "up to date" may stop at."""
        return self.status(folder) is Status.COMPLETE

    def versions(self) -> list[Version]:
        """Publishable folders, oldest first (by when their manifest was written)."""
        found = [self._inspect(name) for name in self._store.version_names()]
        return sorted((v for v in found if v.status is Status.COMPLETE), key=lambda v: (v.finished, v.name))

    def attempts(self, version: str) -> list[str]:
        """Every folder of ``version``'s fingerprint, by attempt number."""
        mine = [name for name in self._store.version_names() if split_attempt(name)[0] == version]
        return sorted(mine, key=lambda name: split_attempt(name)[1])

    def up_to_date(self, version: str) -> str | None:
        """The publishable folder of ``version``: the one ``LATEST`` names if it names one, else the newest."""
        complete = [name for name in self.attempts(version) if self.is_complete(name)]
        latest = self.latest().name
        return latest if latest in complete else (complete[-1] if complete else None)

    def prepare(self, version: str, token: Token) -> tuple[str, Token]:
        """Choose and clear the folder this run of ``version`` writes; return it and the token to publish against.

        Folders of ``version`` that are incomplete or unpublished (leftovers of a killed or failed run) are
        deleted, unless ``LATEST`` names one; complete ones are kept. The run then writes ``version``
        itself when no folder of it is left, else the attempt after the highest one left: a ``--force``
        rerun never touches a complete folder, so ``LATEST`` keeps naming an intact one until the new
        attempt is published. Locally, a second live run of the same version fails here with
        :class:`VersionBusyError`; on ``gs://`` nothing tells a live run from a dead one, so overlapping
        runs must be prevented by the scheduler (Airflow ``max_active_runs=1``; see the README).
        """
        self._store.claim_version(version)
        current = self.latest()
        if current.token != token:
            raise self._race(version, current)
        for folder in self.attempts(version):
            if folder != current.name and not self.is_complete(folder):
                self._store.delete_version(folder)
        return self.next_folder(version), token

    def next_folder(self, version: str) -> str:
        """The folder a run of ``version`` writes once ``prepare`` has cleared the leftovers."""
        left = [split_attempt(name)[1] for name in self.attempts(version)]
        return attempt_folder(version, max(left) + 1) if left else version

    def inventory(self, folder: str) -> dict[str, int]:
        """Name -> size of every file directly in ``folder`` (what a manifest's ``files`` lists)."""
        return {name: size for name, (size, _) in self._store.list_files(folder).items()}

    def write_manifest(self, folder: str, manifest: dict) -> None:
        """The folder's last file, atomically: a killed write leaves no manifest rather than a partial one."""
        self._store.write_atomic(f"{folder}/{MANIFEST}", json.dumps(manifest, indent=2, sort_keys=True).encode())

    def publish(self, folder: str, token: Token) -> None:
        """Point ``LATEST`` at the complete ``folder`` if it still is what was read as ``token``.

        Idempotent: when ``LATEST`` already names ``folder`` (a retried bundle whose first attempt published,
        or a racer that made the very same folder) there is nothing to do and no error.
        """
        status = self.status(folder)
        if status is not Status.COMPLETE:
            raise AeopsError(f"{self.version_dir(folder)} is {status.value}: only a complete version that passed "
                             "the publish gates is ever published")
        try:
            self._swap(folder, token)
        except PublishRaceError:
            if self.latest().name != folder:
                raise

    def retain(self, keep: int) -> list[str]:
        """Delete the oldest publishable versions beyond ``keep``, and superseded attempts; return their names.

        One fingerprint counts once: its current folder is the one ``LATEST`` names, else its newest
        attempt; its other complete attempts are superseded (a ``--force`` rerun replaced them). The version
        ``LATEST`` names always counts among the ``keep``. Incomplete and unpublished folders are left
        alone: one may belong to a run still in progress, and ``prepare`` clears it when that fingerprint
        runs again (an abandoned one is listed in a warning, for deleting by hand).
        """
        if keep < 1:
            raise UsageError(f"--keep {keep}: keep at least 1 version (the one LATEST names)")
        latest = self.latest().name
        complete = self.versions()
        current: dict[str, Version] = {}
        for candidate in complete:  # oldest first, so the newest attempt of a fingerprint wins...
            version = split_attempt(candidate.name)[0]
            if version not in current or current[version].name != latest:  # ...unless LATEST names an older one
                current[version] = candidate
        newest_first = [v.name for v in sorted(current.values(), key=lambda v: (v.finished, v.name), reverse=True)]
        kept = [latest] if latest in newest_first else []
        kept += [name for name in newest_first if name != latest][: keep - len(kept)]
        doomed = [v.name for v in reversed(complete) if v.name not in kept]
        for name in doomed:
            self._store.delete_version(name)
        others = sorted(set(self._store.version_names()) - {v.name for v in complete})
        if others:
            _LOG.warning("%s: incomplete or unpublished versions left in place (a run in progress, or leftovers): %s",
                         self.root, ", ".join(others))
        return doomed

    def _inspect(self, folder: str) -> Version:
        """Read ``folder``'s manifest and list its files: one read and one listing."""
        listed = self._store.list_files(folder)
        if MANIFEST not in listed:
            return Version(folder, 0.0, Status.INCOMPLETE)
        finished = listed[MANIFEST][1]
        try:
            manifest = json.loads(self._store.read(f"{folder}/{MANIFEST}"))
            expected = {name: size for group in manifest["files"].values() for name, size in group.items()}
            passed = (manifest.get("gate") or {}).get("passed", True)
        except (ValueError, KeyError, TypeError, AttributeError, FileNotFoundError):
            return Version(folder, finished, Status.INCOMPLETE)
        if any(listed.get(name, (None,))[0] != size for name, size in expected.items()):
            return Version(folder, finished, Status.INCOMPLETE)
        return Version(folder, finished, Status.COMPLETE if passed else Status.UNPUBLISHED)

    def _swap(self, folder: str, token: Token) -> Token:
        try:
            return self._store.write_latest(folder, token)
        except _Conflict:
            raise self._race(folder, self.latest()) from None

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

    def write_latest(self, name: str, token: Token) -> Token:
        os.makedirs(self.root, exist_ok=True)
        with open(os.path.join(self.root, ".LATEST.lock"), "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
            if self.read_latest().token != token:
                raise _Conflict
            self.write_atomic(LATEST, f"{name}\n".encode("utf-8"))
            return self.read_latest().token

    def write_atomic(self, relative: str, data: bytes) -> None:
        """A temp file in the same folder, synced, then ``os.replace``-d: readers see the old file or the new one.

        The temp file is created like any file the user writes (mode 0666 less the umask), not with
        ``tempfile``'s 0600, since it becomes the published file.
        """
        path = os.path.join(self.root, relative)
        folder, name = os.path.split(path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        _fsync_dir(folder)

    def read(self, relative: str) -> bytes:
        with open(os.path.join(self.root, relative), "rb") as stream:
            return stream.read()

    def list_files(self, folder: str) -> dict[str, tuple[int, float]]:
        """Name -> (size, mtime) of the files directly in ``folder``; {} when it does not exist."""
        try:
            entries = list(os.scandir(os.path.join(self.root, folder)))
        except FileNotFoundError:
            return {}
        found = {}
        for entry in entries:
            try:
                if entry.is_file():
                    info = entry.stat()
                    found[entry.name] = (info.st_size, info.st_mtime)
            except FileNotFoundError:  # deleted while listed
                pass
        return found

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

    def delete_version(self, version: str) -> None:
        """Manifest first, so a half-deleted version never looks complete."""
        folder = os.path.join(self.root, version)
        try:
            os.remove(os.path.join(folder, MANIFEST))
        except FileNotFoundError:
            pass
        shutil.rmtree(folder, ignore_errors=True)


def _fsync_dir(path: str) -> None:
    """Make the rename itself durable: a power cut must not bring back the old file."""
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

    def write_latest(self, name: str, token: Token) -> Token:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        blob = self.bucket.blob(self.prefix + LATEST)
        # Readers over HTTP must not get a cached LATEST (public objects cache for an hour by default).
        blob.cache_control = "no-store"
        try:
            blob.upload_from_string(f"{name}\n", content_type="text/plain", if_generation_match=token)
        except (PreconditionFailed, NotFound):
            raise _Conflict from None
        return blob.generation

    def write_atomic(self, relative: str, data: bytes) -> None:
        """One upload: the object exists only once it is complete (GCS never shows a partial object)."""
        self.bucket.blob(self.prefix + relative).upload_from_string(data, content_type="application/json")

    def read(self, relative: str) -> bytes:
        from google.api_core.exceptions import NotFound

        try:
            return self.bucket.blob(self.prefix + relative).download_as_bytes()
        except NotFound:
            raise FileNotFoundError(relative) from None

    def list_files(self, folder: str) -> dict[str, tuple[int, float]]:
        """Name -> (size, update time) of the objects directly under ``folder/``."""
        prefix = f"{self.prefix}{folder}/"
        blobs = self.bucket.client.list_blobs(self.bucket, prefix=prefix, delimiter="/")
        return {blob.name[len(prefix):]: (blob.size, blob.updated.timestamp()) for blob in blobs}

    def claim_version(self, version: str) -> None:
        """Nothing on GCS tells a live run from a dead one: see ``Publisher.prepare``."""

    def release_version(self) -> None:
        pass

    def version_names(self) -> list[str]:
        pages = self.bucket.client.list_blobs(self.bucket, prefix=self.prefix + VERSION_PREFIX, delimiter="/")
        for _ in pages:  # the prefixes fill in as the pages are read
            pass
        return sorted(p[len(self.prefix):].rstrip("/") for p in pages.prefixes)

    def delete_version(self, version: str) -> None:
        """Manifest first, so a half-deleted version never looks complete. One request per object, as
        the batch API is what not every GCS test server has."""
        folder = f"{self.prefix}{version}/"
        self.bucket.delete_blobs([self.bucket.blob(folder + MANIFEST)], on_error=lambda blob: None)
        blobs = list(self.bucket.client.list_blobs(self.bucket, prefix=folder))
        self.bucket.delete_blobs(blobs, on_error=lambda blob: None)
