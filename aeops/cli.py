"""The ``aeops`` command: one sub-command per job, each implemented by a module's ``run(argv)``.

Errors end as one line on stderr with exit status 2 (usage, config) or 1 (run time); ``--verbose``
shows the traceback too. Without it, the warnings of Beam and TensorFlow are not shown but kept in a log
file (:func:`kept_log`), which a run's summary names. Modules are imported only for the command that runs,
so ``aeops --help`` does not pay for TensorFlow.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import tempfile
import time
import uuid
from typing import Callable

from aeops import __version__
from aeops.errors import AeopsError, UsageError

COMMANDS = {
    "ingest": ("pipelines.ingest", "image files, folders or globs -> TFRecord shards"),
    "train": ("pipelines.train", "train the denoising autoencoder and export a SavedModel"),
    "augment": ("pipelines.augment", "the Beam pipeline: augment, restore, write a versioned dataset"),
    "preview": ("aeops.preview", "a captioned grid of images and their augmented variants"),
    "evaluate": ("aeops.evaluate", "restoration quality of a model against classical baselines"),
    "stats": ("aeops.stats_command", "what a dataset version holds: labels, sizes, formats, in vs out"),
}

USAGE = "usage: aeops [--verbose] {" + ",".join(COMMANDS) + "} ...\n\n" + "\n".join(
    f"  {name:<9} {summary}" for name, (_, summary) in COMMANDS.items()
) + "\n\nRun 'aeops COMMAND --help' for a command's options."


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes are one line (a :class:`UsageError`, exit 2) instead of usage plus error."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    words = [a for a in argv if a != "--verbose"]
    if not words or words[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if words else 2
    if words[0] == "--version":
        print(f"aeops {__version__}")
        return 0
    command = words[0]
    if command not in COMMANDS:
        print(f"aeops: unknown command {command!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    rest = argv[argv.index(command) + 1 :] + (["--verbose"] if "--verbose" in argv[: argv.index(command)] else [])
    return guarded(lambda args: importlib.import_module(COMMANDS[command][0]).run(args), rest)


def guarded(run: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """Call ``run(argv)``, turning every expected failure into one line on stderr and an exit code.

    Used by the ``aeops`` command and by each ``python -m pipelines.X`` entry point alike. Unless
    ``--verbose``, what native libraries write straight to file descriptor 2 (TensorFlow's absl start-up
    and CUDA probing lines) and Beam's logs are kept off the terminal, so that a failure reads as one line.
    """
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    if verbose:
        return _report_errors(run, argv, verbose)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Beam logs a failing step's traceback at ERROR before re-raising it; the re-raised error becomes
    # the one line a user sees, so without --verbose that log (and Beam's warnings) go to a file instead.
    _log_to_file()
    with native_stderr_muted():
        return _report_errors(run, argv, verbose)


_log_handler: logging.FileHandler | None = None


def _log_to_file() -> None:
    global _log_handler
    root = logging.getLogger()
    if _log_handler is not None:  # a second command in the same process (tests) starts its own file
        root.removeHandler(_log_handler)
        _log_handler.close()
    path = os.path.join(tempfile.gettempdir(), f"aeops-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.log")
    _log_handler = logging.FileHandler(path, delay=True)  # no file unless something is logged
    _log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(_log_handler)  # with a handler on the root, Python's last-resort handler prints nothing
    root.setLevel(logging.WARNING)


def kept_log() -> str | None:
    """The file this command's warnings went to instead of the terminal, when there were any."""
    if _log_handler is None:
        return None
    _log_handler.flush()
    path = _log_handler.baseFilename
    return path if os.path.exists(path) and os.path.getsize(path) else None


def _report_errors(run: Callable[[list[str]], int | None], argv: list[str], verbose: bool) -> int:
    try:
        result = run(argv)
    except AeopsError as exc:
        if verbose:
            raise
        print(f"aeops: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("aeops: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except Exception as exc:  # noqa: BLE001 - the one place that turns surprises into one line
        if verbose:
            raise
        print(f"aeops: {type(exc).__name__}: {_one_line(exc)} (run with --verbose for the traceback)", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


@contextlib.contextmanager
def native_stderr_muted():
    """Point file descriptor 2 at /dev/null while Python's ``sys.stderr`` keeps writing to the terminal.

    absl and CUDA write from C++ straight to the descriptor, below anything ``sys.stderr`` or a logging
    level can silence; Python's own messages (progress, the one-line error) still get through.
    """
    sys.stderr.flush()
    terminal = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    python_stderr = sys.stderr
    if _writes_to_fd2(python_stderr):  # else (a test's capture) it needs no new home
        sys.stderr = os.fdopen(os.dup(terminal), "w", buffering=1, encoding=python_stderr.encoding,
                               errors="backslashreplace")
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(terminal, 2)
        if sys.stderr is not python_stderr:
            sys.stderr.close()
            sys.stderr = python_stderr
        os.close(terminal)
        os.close(devnull)


def _writes_to_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False
