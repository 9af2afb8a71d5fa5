"""What a dataset version is made of, as one hash: inputs, resolved config, model and aeops version.

The hash names the version directory (``v-`` + its first 12 hex digits, CONTRACT §4), so a scheduled run
can see that nothing changed and stop before Beam starts. Inputs are identified without reading them
where the store already knows their checksum: on ``gs://`` an object's generation and CRC32C come with
its listing; locally the CRC32C of the content is computed, streamed (no timestamp is trusted: a copy
or a checkout changes mtimes but not bytes).
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import google_crc32c

from aeops import storage
from aeops.config import canonical_json
from aeops.errors import UsageError

_CHUNK = 1 << 20
VERSION_PREFIX = "v-"


def list_inputs(pattern: str) -> list[dict[str, Any]]:
    """Every file ``pattern`` matches, sorted by name, as ``{name, size, crc32c[, generation]}``.

    Matching goes through :func:`aeops.storage.match`, the same matcher the pipeline reads with, so the
    fingerprint covers exactly the files the run reads. Local names are absolute, so the fingerprint
    does not depend on the working directory.
    """
    matched = storage.match(pattern)
    if not matched:
        raise UsageError(f"input {pattern!r} matches no file: pass an existing TFRecord glob, e.g. 'data/*.tfrecord'")
    if storage.is_remote(pattern):
        return _gcs_inputs(pattern, [path for path, _ in matched])
    return [{"name": os.path.abspath(path), "size": size, "crc32c": _file_crc32c(path)} for path, size in matched]


def _file_crc32c(path: str) -> str:
    checksum = google_crc32c.Checksum()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            checksum.update(chunk)
    return checksum.hexdigest().decode("ascii")


def _gcs_inputs(pattern: str, paths: list[str]) -> list[dict[str, Any]]:
    """Generation and CRC32C of each matched object, from one listing of their common prefix."""
    if not pattern.startswith("gs://"):
        raise UsageError(f"input {pattern!r}: only local paths and gs:// are supported")
    from google.cloud import storage as gcs

    bucket, _, blob_pattern = pattern[len("gs://"):].partition("/")
    prefix = blob_pattern[: min((blob_pattern.find(c) for c in "*?[" if c in blob_pattern), default=None)]
    wanted = set(paths)
    found = {}
    for blob in gcs.Client().list_blobs(bucket, prefix=prefix):
        name = f"gs://{bucket}/{blob.name}"
        if name in wanted:
            found[name] = {"name": name, "size": blob.size, "generation": blob.generation,
                           "crc32c": base64.b64decode(blob.crc32c).hex() if blob.crc32c else None}
    missing = wanted - found.keys()
    if missing:
        raise UsageError(f"input {sorted(missing)[0]!r} vanished while it was being listed: is another job rewriting it?")
    return [found[path] for path in sorted(found)]


# Not fingerprint.pb: TensorFlow writes a fresh random UUID into it on every save, so the same graph and weights,
# exported twice, would hash as two models, and a regeneration job would publish a new version for nothing.
# It is derived from the files that do count.
SAVED_MODEL_PARTS = ("saved_model.pb", "variables", "assets")


def model_sha256(model_dir: str) -> str:
    """SHA-256 over the SavedModel's own files: each one's path relative to the directory and its content's SHA-256.

    Sorted by relative path with ``/`` separators, so a local copy and its ``gs://`` upload hash the same.
    Only the SavedModel counts (:data:`SAVED_MODEL_PARTS`): not ``aeops_model.json``, which records this
    very hash, nor training checkpoints beside it. This is the hash stamped as ``aeops/model`` on outputs.
    """
    base = model_dir.rstrip("/")
    files = storage.match(base if not storage.is_remote(base) else base + "/**")
    parts = sorted((_relative(base, path), path) for path, _ in files)
    parts = [(rel, path) for rel, path in parts if rel.split("/", 1)[0] in SAVED_MODEL_PARTS]
    if not parts:
        raise UsageError(f"model directory {model_dir!r} holds no SavedModel: pass a directory written by 'aeops train'")
    digest = hashlib.sha256()
    for rel, path in parts:
        content = hashlib.sha256()
        with storage.open_read(path) as stream:
            while chunk := stream.read(_CHUNK):
                content.update(chunk)
        digest.update(rel.encode("utf-8") + b"\0" + content.digest())
    return digest.hexdigest()


def _relative(base: str, path: str) -> str:
    if storage.is_remote(base):
        return path[len(base) + 1:]
    return os.path.relpath(path, base).replace(os.sep, "/")


def fingerprint(inputs: list[dict[str, Any]], config_content: dict[str, Any], model_sha256: str, version: str) -> str:
    """Hex SHA-256 of the canonical JSON of everything that decides the output bytes (CONTRACT §4).

    ``config_content`` is :meth:`aeops.config.PipelineConfig.content` (no runner, input or output
    location: moving a job to Dataflow or renaming the output root is the same dataset).
    """
    document = {
        "inputs": sorted(inputs, key=lambda item: item["name"]),
        "config": config_content,
        "model": model_sha256,
        "aeops_version": version,
    }
    return hashlib.sha256(canonical_json(document).encode("ascii")).hexdigest()


def version_name(fingerprint_hex: str) -> str:
    """The version directory's name: ``v-`` + the first 12 hex digits of the fingerprint."""
    return VERSION_PREFIX + fingerprint_hex[:12]
