"""The ``aeops`` command: one sub-command per job, each implemented by a module's ``run(argv)``.

Errors end as one line on stderr with exit status 2 (usage, config) or 1 (run time); ``--verbose``
shows the traceback too. Modules are imported only for the command that runs, so ``aeops --help``
does not pay for TensorFlow.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

from aeops import __version__
from aeops.errors import AeopsError

COMMANDS = {
    "ingest": ("pipelines.ingest", "image files, folders or globs -> TFRecord shards"),
    "train": ("pipelines.train", "train the denoising autoencoder and export a SavedModel"),
    "augment": ("pipelines.augment", "the Beam pipeline: augment, restore, write a versioned dataset"),
    "preview": ("aeops.preview", "a captioned grid of images and their augmented variants"),
    "evaluate": ("aeops.evaluate", "restoration quality of a model against classical baselines"),
}

USAGE = "usage: aeops [--verbose] {" + ",".join(COMMANDS) + "} ...\n\n" + "\n".join(
    f"  {name:<9} {summary}" for name, (_, summary) in COMMANDS.items()
) + "\n\nRun 'aeops COMMAND --help' for a command's options."


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"aeops {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"aeops: unknown command {command!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return run_command(COMMANDS[command][0], rest, verbose)


def run_command(module_name: str, argv: list[str], verbose: bool) -> int:
    """Run ``module.run(argv)``, turning every expected failure into one line and an exit code."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        logging.getLogger().setLevel(logging.WARNING)
    try:
        module = importlib.import_module(module_name)
        result = module.run(argv)
    except AeopsError as exc:
        if verbose:
            raise
        print(f"aeops: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("aeops: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except Exception as exc:  # noqa: BLE001 - the one place that turns surprises into one line
        if verbose:
            raise
        print(f"aeops: {type(exc).__name__}: {exc} (run with --verbose for the traceback)", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0
