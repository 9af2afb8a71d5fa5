"""``aeops stats ROOT|VERSION``: the dataset summary of a version (the one ``LATEST`` names, or the folder given).

The same lines a run prints at its end, read back from the version's ``statistics.pb`` (the summary is computed
again from it with the run's ``schema`` and ``report.label_shift_warning``) and ``manifest.json``.
"""

from __future__ import annotations

import json
import sys

from aeops import dataset_summary, statistics, storage
from aeops.accounting import records_line
from aeops.cli import ArgumentParser
from aeops.errors import UsageError
from aeops.publish import MANIFEST


def parse_args(argv: list[str] | None):
    parser = ArgumentParser(prog="aeops stats", description="Print what a dataset version holds, input vs output.")
    parser.add_argument("path", metavar="ROOT|VERSION", help="an output root (its LATEST is read) or a version folder")
    return parser.parse_args(argv)


def version_folder(path: str) -> str:
    """``path`` itself when it holds a manifest, else the version its ``LATEST`` names."""
    path = path.rstrip("/")
    if storage.exists(storage.join(path, MANIFEST)):
        return path
    latest = storage.join(path, "LATEST")
    if storage.exists(latest):
        return storage.join(path, storage.read_bytes(latest).decode().strip())
    raise UsageError(f"stats: {path!r} is neither a version folder (no {MANIFEST}) nor an output root (no LATEST); "
                     "pass the --output ROOT of 'aeops augment' or one of its v-* folders")


def run(argv: list[str] | None = None) -> int:
    directory = version_folder(parse_args(argv).path)
    manifest = json.loads(storage.read_bytes(storage.join(directory, MANIFEST)))
    summary = manifest.get("summary")
    if storage.exists(storage.join(directory, statistics.STATISTICS)):
        summary = dataset_summary.summarize(statistics.read(directory), manifest.get("config") or {})
    print(directory)
    print(records_line(manifest))
    print(dataset_summary.describe(summary))
    print(f"  stats     {storage.join(directory, statistics.STATISTICS)}")
    return 0


if __name__ == "__main__":
    from aeops.cli import guarded

    sys.exit(guarded(run, sys.argv[1:]))
